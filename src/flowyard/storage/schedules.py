"""Workflow schedule rows: the write intents and the reads."""

import msgspec

from flowyard.storage.intents import DeleteSchedule, PutSchedule
from flowyard.storage.pages import chunked, newest_first, page
from flowyard.storage.port import Store
from flowyard.workflows.schedules import Schedule

_schedule = msgspec.json.Decoder(Schedule)
TABLE = "workflow_schedules"


def put_schedule(schedule: Schedule) -> PutSchedule:
    """Insert or update a schedule."""
    return PutSchedule(schedule)


def delete_schedule(schedule_id: str) -> DeleteSchedule:
    """Delete a schedule."""
    return DeleteSchedule(schedule_id)


async def get_schedule(db: Store, project_id: str, schedule_id: str) -> Schedule | None:
    """A schedule of the project, or None."""
    row = await db.fetchone(
        f"SELECT doc FROM {TABLE} WHERE id = ? AND project_id = ?", (schedule_id, project_id)
    )
    return _schedule.decode(row[0]) if row else None


async def list_schedules(
    db: Store, project_id: str, *, blueprint_id: str | None, cursor: str | None, limit: int
) -> tuple[list[Schedule], str | None]:
    """A page of the project's schedules (of one blueprint, if given), newest first."""
    filters = {"project_id": project_id, "blueprint_id": blueprint_id}
    sql, params = newest_first(db.cursor_key, TABLE, filters, cursor, limit)
    return page(db.cursor_key, TABLE, await db.fetchall(sql, params), limit, _schedule.decode)


async def all_schedules(db: Store) -> list[Schedule]:
    """Every schedule (kept in memory, their fires armed, while the server runs)."""
    sql = f"SELECT seq, doc FROM {TABLE} WHERE seq > ? ORDER BY seq LIMIT ?"
    return [_schedule.decode(doc) async for doc in chunked(db, sql, [])]
