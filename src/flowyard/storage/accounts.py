"""Projects' token balances, rate limits and usage rows."""

from typing import NamedTuple

from flowyard.storage.sqlite import Database, Op


class UsageRow(NamedTuple):
    """Calls and tokens of one project on one day (days since the epoch, UTC) in one family."""

    day: int
    family: str
    calls: int
    nanos: int


async def all_settings(db: Database) -> list[tuple[str, int | None, float | None]]:
    """Every project's (id, token balance in nanotokens, rate limit)."""
    rows = await db.fetchall("SELECT id, token_balance, rate_limit_rps FROM projects")
    return [(str(pid), balance, rate) for pid, balance, rate in rows]


async def project_settings(db: Database, project_id: str) -> tuple[int | None, float | None] | None:
    """One project's (token balance, rate limit), or None if there is no such project."""
    row = await db.fetchone(
        "SELECT token_balance, rate_limit_rps FROM projects WHERE id = ?", (project_id,)
    )
    return (row[0], row[1]) if row else None


def spend(project_id: str, nanos: int) -> Op:
    """Take ``nanos`` from a limited balance (never below zero)."""
    return (
        "UPDATE projects SET token_balance = MAX(0, token_balance - ?)"
        " WHERE id = ? AND token_balance IS NOT NULL",
        (nanos, project_id),
    )


def set_balance(project_id: str, nanos: int | None) -> Op:
    """Set a balance (None: unlimited)."""
    return ("UPDATE projects SET token_balance = ? WHERE id = ?", (nanos, project_id))


def set_rate(project_id: str, rate: float | None) -> Op:
    """Set a rate limit in requests per second (None: none)."""
    return ("UPDATE projects SET rate_limit_rps = ? WHERE id = ?", (rate, project_id))


def add_usage(project_id: str, day: int, family: str, calls: int, nanos: int) -> Op:
    """Add calls and tokens to a day's usage."""
    return (
        "INSERT INTO usage (project_id, day, family, calls, nanos) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(project_id, day, family) DO UPDATE SET"
        " calls = calls + excluded.calls, nanos = nanos + excluded.nanos",
        (project_id, day, family, calls, nanos),
    )


async def usage(db: Database, project_id: str) -> list[UsageRow]:
    """The stored usage of a project, oldest day first."""
    rows = await db.fetchall(
        "SELECT day, family, calls, nanos FROM usage WHERE project_id = ? ORDER BY day, family",
        (project_id,),
    )
    return [UsageRow(*row) for row in rows]
