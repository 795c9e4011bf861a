"""Signal rows: the write intents and the reads.

A signal's row commits with the transition of the execution that accepted it. The row of a
kept signal (``consumed_by`` null) is what brings the execution's buffer back when its state
is loaded: the state's own row does not carry the buffer, so that a transition of an
execution holding many kept signals writes only what changed.
"""

import msgspec

from flowyard.storage.intents import InsertSignal, TakeSignal
from flowyard.storage.port import Store
from flowyard.workflows.state import BufferedSignal, ExecutionState

replace = msgspec.structs.replace


class Signal(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A stored signal."""

    id: str
    execution_id: str
    seq: int  # arrival order in its execution, from 1
    name: str
    idempotency_key: str | None = None
    data: msgspec.Raw  # as JSON
    consumed_by: str | None = None
    buffered: bool = False  # kept when it arrived: its first answer said consumed_by null
    created_at: int = 0

    @property
    def first_consumed_by(self) -> str | None:
        """``consumed_by`` as the signal's first answer gave it."""
        return None if self.buffered else self.consumed_by


def insert_signal(signal: Signal) -> InsertSignal:
    """Insert a signal."""
    return InsertSignal(signal)


def take_signal(execution_id: str, signal_id: str, step_id: str) -> TakeSignal:
    """A kept signal taken by ``step_id``."""
    return TakeSignal(execution_id, signal_id, step_id)


_COLUMNS = "id, execution_id, seq, name, idempotency_key, data, consumed_by, buffered, created_at"


def _signal(row: tuple[object, ...]) -> Signal:
    sid, execution_id, seq, name, key, data, consumed_by, buffered, created_at = row
    return Signal(
        id=str(sid),
        execution_id=str(execution_id),
        seq=int(str(seq)),
        name=str(name),
        idempotency_key=None if key is None else str(key),
        data=msgspec.Raw(bytes(data)),  # type: ignore[call-overload]
        consumed_by=None if consumed_by is None else str(consumed_by),
        buffered=bool(buffered),
        created_at=int(str(created_at)),
    )


async def find_signal_by_key(db: Store, execution_id: str, key: str) -> Signal | None:
    """The signal sent to the execution earlier with this idempotency key, or None."""
    row = await db.fetchone(
        f"SELECT {_COLUMNS} FROM signals WHERE execution_id = ? AND idempotency_key = ?",
        (execution_id, key),
    )
    return _signal(row) if row else None


async def with_kept_signals(db: Store, state: ExecutionState) -> ExecutionState:
    """The state with its buffer of kept signals read back, oldest first."""
    if state.signal_seq == 0:
        return state
    rows = await db.fetchall(
        "SELECT id, seq, name, data FROM signals"
        " WHERE execution_id = ? AND consumed_by IS NULL ORDER BY seq",
        (state.id,),
    )
    kept = [
        BufferedSignal(str(sid), int(seq), str(name), msgspec.json.decode(bytes(data)))
        for sid, seq, name, data in rows
    ]
    return replace(state, signals=kept)


async def list_signals(db: Store, execution_id: str) -> list[Signal]:
    """Every signal of an execution, in arrival order (for tests and tools)."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM signals WHERE execution_id = ? ORDER BY seq", (execution_id,)
    )
    return [_signal(row) for row in rows]
