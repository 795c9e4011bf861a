"""Projects' token balances, rate limits and usage rows."""

from typing import NamedTuple

from flowyard.storage.intents import AddUsage, SetBalance, SetRate, Spend
from flowyard.storage.port import Store


class UsageRow(NamedTuple):
    """Calls and tokens of one project on one day (days since the epoch, UTC) in one family."""

    day: int
    family: str
    calls: int
    nanos: int


async def all_settings(db: Store) -> list[tuple[str, int | None, float | None]]:
    """Every project's (id, token balance in nanotokens, rate limit)."""
    rows = await db.fetchall("SELECT id, token_balance, rate_limit_rps FROM projects")
    return [(str(pid), balance, rate) for pid, balance, rate in rows]


async def project_settings(db: Store, project_id: str) -> tuple[int | None, float | None] | None:
    """One project's (token balance, rate limit), or None if there is no such project."""
    row = await db.fetchone(
        "SELECT token_balance, rate_limit_rps FROM projects WHERE id = ?", (project_id,)
    )
    return (row[0], row[1]) if row else None


def spend(project_id: str, nanos: int) -> Spend:
    """Take ``nanos`` from a limited balance (never below zero)."""
    return Spend(project_id, nanos)


def set_balance(project_id: str, nanos: int | None) -> SetBalance:
    """Set a balance (None: unlimited)."""
    return SetBalance(project_id, nanos)


def set_rate(project_id: str, rate: float | None) -> SetRate:
    """Set a rate limit in requests per second (None: none)."""
    return SetRate(project_id, rate)


def add_usage(project_id: str, day: int, family: str, calls: int, nanos: int) -> AddUsage:
    """Add calls and tokens to a day's usage."""
    return AddUsage(project_id, day, family, calls, nanos)


async def usage(db: Store, project_id: str) -> list[UsageRow]:
    """The stored usage of a project, oldest day first."""
    rows = await db.fetchall(
        "SELECT day, family, calls, nanos FROM usage WHERE project_id = ? ORDER BY day, family",
        (project_id,),
    )
    return [UsageRow(*row) for row in rows]
