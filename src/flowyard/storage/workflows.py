"""Blueprint, execution and event rows: the write intents and the reads."""

from collections.abc import Iterable

import msgspec

from flowyard.storage.intents import (
    ArchiveBlueprint,
    PutBlueprint,
    PutEvents,
    PutExecution,
    PutItem,
)
from flowyard.storage.pages import Sharer, chunked, decode_cursor, encode_cursor, newest_first, page
from flowyard.storage.port import Store
from flowyard.workflows.blueprint import Step
from flowyard.workflows.state import LIVE, OPEN, Event, ExecutionState, ItemState

replace = msgspec.structs.replace


class Blueprint(msgspec.Struct, frozen=True, kw_only=True):
    """A stored blueprint (immutable once created)."""

    id: str
    project_id: str
    name: str
    description: str | None = None
    steps: list[Step]
    max_duration_sec: int = 86_400
    created_at: int = 0
    archived_at: int | None = None


_blueprint_decoder = msgspec.json.Decoder(Blueprint)
_execution_decoder = msgspec.json.Decoder(ExecutionState)
_event_decoder = msgspec.json.Decoder(Event)
_item_decoder = msgspec.json.Decoder(ItemState)


def put_blueprint(blueprint: Blueprint) -> PutBlueprint:
    """Insert a blueprint."""
    return PutBlueprint(blueprint)


def archive_blueprint(blueprint: Blueprint) -> ArchiveBlueprint:
    """Record that a blueprint was archived (``archived_at`` set): lists leave it out."""
    return ArchiveBlueprint(blueprint)


def is_active(state: ExecutionState) -> bool:
    """Whether the execution needs an actor after a restart: live, or a step still open."""
    return state.status in LIVE or any(s.status in OPEN for s in state.steps.values())


def put_execution(state: ExecutionState) -> PutExecution:
    """Insert or update an execution row (without its kept signals: their rows hold them)."""
    stored = replace(state, signals=[]) if state.signals else state
    return PutExecution(stored, is_active(state))


def put_events(execution_id: str, first_seq: int, events: list[Event]) -> PutEvents:
    """Append events numbered from ``first_seq``."""
    return PutEvents(execution_id, first_seq, events)


def put_items(execution_id: str, step_id: str, items: Iterable[ItemState]) -> list[PutItem]:
    """Insert or update items of a for_each step: one intent (one row) per item."""
    return [PutItem(execution_id, step_id, item) for item in items]


async def get_blueprint_by_id(db: Store, blueprint_id: str) -> Blueprint | None:
    """A blueprint whatever its project (for rehydration)."""
    row = await db.fetchone("SELECT doc FROM blueprints WHERE id = ?", (blueprint_id,))
    return _blueprint_decoder.decode(row[0]) if row else None


async def list_blueprints(
    db: Store,
    project_id: str,
    *,
    name: str | None = None,
    archived: bool = False,
    cursor: str | None,
    limit: int,
) -> tuple[list[Blueprint], str | None]:
    """A page of the project's blueprints, newest first: only live ones unless ``archived``,
    only those called ``name`` when given."""
    before = decode_cursor(db.cursor_key, "blueprints", cursor)
    where = ["project_id = ?", "seq < ?"]
    params: list[object] = [project_id, before if before is not None else 2**62]
    if name is not None:
        where.append("name = ?")
        params.append(name)
    if not archived:
        where.append("archived_at IS NULL")
    rows = await db.fetchall(
        f"SELECT seq, doc FROM blueprints WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
        (*params, limit + 1),
    )
    return page(db.cursor_key, "blueprints", rows, limit, _blueprint_decoder.decode)


async def get_execution(
    db: Store, execution_id: str, project_id: str | None = None
) -> ExecutionState | None:
    """An execution (of the project, when given), or None."""
    if project_id is None:
        row = await db.fetchone("SELECT doc FROM executions WHERE id = ?", (execution_id,))
    else:
        row = await db.fetchone(
            "SELECT doc FROM executions WHERE id = ? AND project_id = ?",
            (execution_id, project_id),
        )
    return _execution_decoder.decode(row[0]) if row else None


async def find_execution_by_key(db: Store, blueprint_id: str, key: str) -> ExecutionState | None:
    """The execution triggered earlier with this idempotency key, or None."""
    row = await db.fetchone(
        "SELECT doc FROM executions WHERE blueprint_id = ? AND idempotency_key = ?",
        (blueprint_id, key),
    )
    return _execution_decoder.decode(row[0]) if row else None


async def list_executions(
    db: Store,
    *,
    project_id: str | None,
    blueprint_id: str | None = None,
    status: str | None = None,
    parent_execution_id: str | None = None,
    cursor: str | None = None,
    limit: int = 25,
) -> tuple[list[ExecutionState], str | None]:
    """A page of executions, newest first (only the children of ``parent_execution_id``,
    when given: by the ``parent_id`` column, indexed with ``seq``)."""
    filters = {
        "parent_id": parent_execution_id,
        "project_id": project_id,
        "blueprint_id": blueprint_id,
        "status": status,
    }
    sql, params = newest_first(db.cursor_key, "executions", filters, cursor, limit)
    rows = await db.fetchall(sql, params)
    return page(db.cursor_key, "executions", rows, limit, _execution_decoder.decode)


async def list_events(
    db: Store, execution_id: str, *, cursor: str | None, limit: int
) -> tuple[list[tuple[int, Event]], str | None]:
    """A page of an execution's events, oldest first, with their sequence numbers."""
    scope = f"events:{execution_id}"  # seq counts from 1 in each execution
    after = decode_cursor(db.cursor_key, scope, cursor)
    rows = await db.fetchall(
        "SELECT seq, doc FROM events WHERE execution_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (execution_id, after if after is not None else 0, limit + 1),
    )
    items = [(seq, _event_decoder.decode(doc)) for seq, doc in rows[:limit]]
    next_cursor = (
        encode_cursor(db.cursor_key, scope, rows[limit - 1][0]) if len(rows) > limit else None
    )
    return items, next_cursor


async def active_executions(db: Store) -> list[ExecutionState]:
    """Every execution that needs an actor (for rehydration), repeated values shared."""
    sql = "SELECT seq, doc FROM executions WHERE active = 1 AND seq > ? ORDER BY seq LIMIT ?"
    states: list[ExecutionState] = []
    share = Sharer()
    async for doc in chunked(db, sql, []):
        state = _execution_decoder.decode(doc)
        steps = {share(sid): replace(step, step_id=share(sid)) for sid, step in state.steps.items()}
        states.append(
            replace(
                state,
                project_id=share(state.project_id),
                blueprint_id=share(state.blueprint_id),
                steps=steps,
            )
        )
    return states


async def execution_items(db: Store, state: ExecutionState) -> dict[str, list[ItemState]]:
    """The items of every for_each step the execution has started, in index order."""
    items: dict[str, list[ItemState]] = {}
    for step_id, step in state.steps.items():
        if step.items is None:
            continue
        rows = await db.fetchall(
            "SELECT doc FROM map_items WHERE execution_id = ? AND step_id = ? ORDER BY idx",
            (state.id, step_id),
        )
        items[step_id] = [_item_decoder.decode(doc) for (doc,) in rows]
    return items


async def list_items(
    db: Store, execution_id: str, step_id: str, *, cursor: str | None, limit: int
) -> tuple[list[ItemState], str | None]:
    """A page of a for_each step's items, in item order."""
    scope = f"items:{execution_id}:{step_id}"
    after = decode_cursor(db.cursor_key, scope, cursor)
    rows = await db.fetchall(
        "SELECT idx, doc FROM map_items WHERE execution_id = ? AND step_id = ? AND idx > ?"
        " ORDER BY idx LIMIT ?",
        (execution_id, step_id, after if after is not None else -1, limit + 1),
    )
    items = [_item_decoder.decode(doc) for _, doc in rows[:limit]]
    next_cursor = (
        encode_cursor(db.cursor_key, scope, rows[limit - 1][0]) if len(rows) > limit else None
    )
    return items, next_cursor
