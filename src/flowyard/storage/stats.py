"""Counts for ``GET /admin/stats``: jobs and executions per project and status."""

from typing import Any

from flowyard.storage.port import Store

Counts = dict[str, dict[str, int]]
"""project id -> status -> number of rows."""


async def project_ids(db: Store, project_id: str | None = None) -> list[str]:
    """Every project's id (or just ``project_id`` if it exists), newest first."""
    where, params = ("WHERE id = ?", [project_id]) if project_id is not None else ("", [])
    rows = await db.fetchall(f"SELECT id FROM projects {where} ORDER BY rowid DESC", params)
    return [str(pid) for (pid,) in rows]


async def status_counts(db: Store, table: str, project_id: str | None = None) -> Counts:
    """How many ``jobs`` or ``executions`` each project has in each status.

    One ``GROUP BY`` over the table (a scan unless ``project_id`` narrows it to its index):
    meant for an operator's occasional look, not for a hot path.
    """
    if table not in ("jobs", "executions"):
        raise ValueError(table)
    where, params = ("WHERE project_id = ?", [project_id]) if project_id is not None else ("", [])
    rows: list[tuple[Any, ...]] = await db.fetchall(
        f"SELECT project_id, status, COUNT(*) FROM {table} {where} GROUP BY project_id, status",
        params,
    )
    counts: Counts = {}
    for pid, status, count in rows:
        counts.setdefault(pid, {})[status] = count
    return counts
