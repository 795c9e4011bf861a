"""The engine's side of signals: sending one (idempotently), storing what ``decide`` says
about it, and the timers of steps that wait with a ``timeout_sec``."""

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec

from flowyard.actors.execution_records import ExecutionActor
from flowyard.actors.timers import Timers
from flowyard.errors import Conflict, FlowyardError
from flowyard.ids import new_id
from flowyard.storage import signals as store
from flowyard.storage.intents import Intent
from flowyard.storage.port import Store
from flowyard.workflows.blueprint import Graph
from flowyard.workflows.state import (
    ArmSignalTimeout,
    ConsumeSignal,
    Effect,
    ExecutionState,
    Message,
    RecordSignal,
    SendSignal,
    SignalTimedOut,
    StepStatus,
)


class SignalTimer(msgspec.Struct, frozen=True, gc=False):
    """A timer key: ``step_id`` has waited ``timeout_sec`` in ``attempt`` at ``at``."""

    execution_id: str
    step_id: str
    attempt: int
    at: int


class Sent(msgspec.Struct, frozen=True):
    """The answer to a signal."""

    signal_id: str
    execution_id: str
    name: str
    consumed_by: str | None


Ask = Callable[[ExecutionActor, Message], Awaitable[Any]]


class Signals:
    """Signals of every execution of one engine."""

    def __init__(self, db: Store, timers: Timers, charge: Callable[[str], None]) -> None:
        self.db = db
        self.timers = timers
        self._charge = charge  # a replayed answer pays for the call like a new one
        self._sending: set[tuple[str, str]] = set()

    async def send(
        self, actor: ExecutionActor, ask: Ask, name: str, data: Any, key: str | None
    ) -> tuple[Sent, bool]:
        """Send a signal to ``actor``'s execution; with a key seen before, the first answer
        (and True).

        Raises:
            Conflict: the execution has ended, keeps too many signals, or the key was used
                with another name or other data.
        """
        execution_id = actor.state.id
        guard = (execution_id, key) if key else None
        if guard is not None:
            while guard in self._sending:
                await anyio.sleep(0.001)  # the same key is being sent right now
            self._sending.add(guard)
        try:
            if key is not None:
                first = await store.find_signal_by_key(self.db, execution_id, key)
                if first is not None:
                    if first.name != name or bytes(first.data) != msgspec.json.encode(data):
                        raise Conflict("idempotency_key was used with a different name or data")
                    self._charge(actor.state.project_id)
                    sent = Sent(first.id, execution_id, first.name, first.first_consumed_by)
                    return sent, True
            signal_id = new_id("wfsig")
            state: ExecutionState = await ask(actor, SendSignal(signal_id, name, data, key))
            taker = next(
                (s.step_id for s in state.steps.values() if s.signal_id == signal_id), None
            )
            return Sent(signal_id, execution_id, name, taker), False
        finally:
            if guard is not None:
                self._sending.discard(guard)

    def writes(self, execution_id: str, effects: list[Effect], now: int) -> list[Intent]:
        """The rows of the signals a transition accepted or handed to a step."""
        ops: list[Intent] = []
        for effect in effects:
            match effect:
                case RecordSignal():
                    signal = store.Signal(
                        id=effect.signal_id,
                        execution_id=execution_id,
                        seq=effect.seq,
                        name=effect.name,
                        idempotency_key=effect.idempotency_key,
                        data=msgspec.Raw(msgspec.json.encode(effect.data)),
                        consumed_by=effect.consumed_by,
                        buffered=effect.consumed_by is None,
                        created_at=now,
                    )
                    ops.append(store.insert_signal(signal))
                case ConsumeSignal():
                    ops.append(store.take_signal(execution_id, effect.signal_id, effect.step_id))
        return ops

    def arm(self, execution_id: str, effects: list[Effect]) -> None:
        """Arm the timeouts of steps that started waiting (after the commit)."""
        for effect in effects:
            if isinstance(effect, ArmSignalTimeout):
                key = SignalTimer(execution_id, effect.step_id, effect.attempt, effect.at)
                self.timers.arm(effect.at, key)

    def rearm(self, state: ExecutionState, graph: Graph) -> None:
        """Arm again the timeouts of the steps that wait (at rehydration)."""
        for step_id, step in state.steps.items():
            wait = graph.steps[step_id].wait_for_signal
            if step.status is not StepStatus.WAITING or wait is None or wait.timeout_sec is None:
                continue
            at = (step.started_at or 0) + wait.timeout_sec * 1000
            self.timers.arm(at, SignalTimer(state.id, step_id, step.attempt, at))

    def fired(
        self, actor: ExecutionActor | None, key: SignalTimer, tell: Callable[..., None], now: int
    ) -> None:
        """A timeout came: tell the actor, unless its step no longer waits in that attempt."""
        if actor is None:
            return
        step = actor.state.steps.get(key.step_id)
        if step is None or step.status is not StepStatus.WAITING or step.attempt != key.attempt:
            return  # stale: it took a signal, was cancelled, overridden or waits again
        try:
            tell(actor, SignalTimedOut(key.step_id, key.attempt))
        except FlowyardError:
            self.timers.arm(now + 1000, key)  # busy: try again shortly
