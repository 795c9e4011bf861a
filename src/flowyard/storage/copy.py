"""Copying one store into another (``flowyard db copy``): every table, rows as they are.

Rows are read through the port (``fetchall``, in key order, a chunk at a time, so that a large
table is never held whole) and written with the target adapter's bulk load, keeping their ids
and their ``seq``/``rowid``: lists are ordered by them and cursors carry them, so the same
cursor reads the same page on either store. ``meta`` goes last and carries ``cursor_key`` and
``server_secret``, which sign cursors and service tokens; the target's own ``cursor_key``
(written when it was opened) is replaced. What is left to the caller: that no server uses
either store meanwhile.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flowyard.storage.port import Store

CHUNK = 1000
"""Rows read and written at a time."""


@dataclass(frozen=True)
class Table:
    """A table as both schemas have it: its columns and the columns it is ordered by."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...] = ("seq",)


TABLES: tuple[Table, ...] = (
    Table(
        "projects",
        ("rowid", "id", "name", "signing_secret", "rate_limit_rps", "token_balance", "created_at"),
        ("rowid",),
    ),
    Table(
        "api_keys",
        (
            "rowid",
            "id",
            "project_id",
            "name",
            "key_hash",
            "scopes",
            "admin",
            "created_at",
            "last_used_at",
            "revoked_at",
        ),
        ("rowid",),
    ),
    Table("queues", ("project_id", "name", "doc"), ("project_id", "name")),
    Table("blueprints", ("seq", "id", "project_id", "doc", "name", "archived_at")),
    Table(
        "executions",
        (
            "seq",
            "id",
            "project_id",
            "blueprint_id",
            "status",
            "active",
            "idempotency_key",
            "doc",
            "parent_id",
        ),
    ),
    Table("events", ("execution_id", "seq", "doc"), ("execution_id", "seq")),
    Table(
        "signals",
        (
            "execution_id",
            "seq",
            "id",
            "name",
            "idempotency_key",
            "data",
            "consumed_by",
            "buffered",
            "created_at",
        ),
        ("execution_id", "seq"),
    ),
    Table(
        "map_items", ("execution_id", "step_id", "idx", "doc"), ("execution_id", "step_id", "idx")
    ),
    Table(
        "jobs",
        ("seq", "id", "project_id", "status", "trigger_type", "queue", "idempotency_key", "doc"),
    ),
    Table("runs", ("seq", "id", "job_id", "doc")),
    Table(
        "usage", ("project_id", "day", "family", "calls", "nanos"), ("project_id", "day", "family")
    ),
    Table("webhooks", ("seq", "id", "project_id", "doc")),
    Table("webhook_deliveries", ("seq", "id", "webhook_id", "project_id", "status", "doc")),
    Table("workflow_schedules", ("seq", "id", "project_id", "blueprint_id", "doc")),
)

META = "meta"
OWN_META = frozenset({"schema_version", "writable_at"})
"""``meta`` rows that belong to one store and are not copied: the PostgreSQL schema's version,
the time of the last probe of a failing store."""
FRESH_META = OWN_META | {"cursor_key"}
"""The ``meta`` rows a store has as soon as it is opened, before anything is written to it."""


class Target(Store, Protocol):
    """A store that takes rows as they are (both adapters do)."""

    async def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        replace: bool = False,
    ) -> None:
        """Load ``rows`` in one transaction; ``replace``: over rows with the same key."""


class CopyRefused(Exception):
    """The copy cannot start: the target holds data already."""


@dataclass(frozen=True)
class Count:
    """Rows of one table in the source and in the target after the copy."""

    table: str
    source: int
    target: int


async def count_rows(store: Store, table: str) -> int:
    row = await store.fetchone(f"SELECT count(*) FROM {table}")
    return int(row[0]) if row else 0


async def check_empty(target: Store) -> None:
    """Raise :class:`CopyRefused` unless ``target`` holds nothing but what opening it wrote."""
    for table in TABLES:
        count = await count_rows(target, table.name)
        if count:
            raise CopyRefused(f"it is not empty ({table.name}: {count} rows)")
    keys = {row[0] for row in await target.fetchall("SELECT key FROM meta")}
    if keys - FRESH_META:
        raise CopyRefused(f"it is not empty (meta: {', '.join(sorted(keys - FRESH_META))})")


async def _chunks(store: Store, table: Table) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The rows of ``table`` in key order, a list of at most :data:`CHUNK` at a time."""
    columns = ", ".join(table.columns)
    order = ", ".join(table.key)
    positions = [table.columns.index(column) for column in table.key]
    after: list[Any] | None = None
    while True:
        where = ""
        if after is not None:
            where = f" WHERE ({order}) > ({', '.join('?' * len(after))})"
        sql = f"SELECT {columns} FROM {table.name}{where} ORDER BY {order} LIMIT {CHUNK}"
        rows = await store.fetchall(sql, after or ())
        if rows:
            yield rows
        if len(rows) < CHUNK:
            return
        after = [rows[-1][position] for position in positions]


async def copy_table(source: Store, target: Target, table: Table) -> None:
    """Every row of ``table``, in key order, with the same ids and ``seq``/``rowid``."""
    async for rows in _chunks(source, table):
        await target.insert_rows(table.name, table.columns, rows)


async def copy_meta(source: Store, target: Target) -> int:
    """The source's ``meta`` rows over the target's (except :data:`OWN_META`); how many."""
    rows = await source.fetchall("SELECT key, value FROM meta ORDER BY key")
    rows = [row for row in rows if row[0] not in OWN_META]
    if rows:
        await target.insert_rows(META, ("key", "value"), rows, replace=True)
    return len(rows)


async def verify(source: Store, target: Store, meta: int) -> list[Count]:
    """The counts of every table on both sides (see :func:`differ`).

    For ``meta``: the rows copied, and how many of them the target has with the same value.
    """
    counts = [
        Count(
            table.name, await count_rows(source, table.name), await count_rows(target, table.name)
        )
        for table in TABLES
    ]
    wanted = {
        key: value
        for key, value in await source.fetchall("SELECT key, value FROM meta")
        if key not in OWN_META
    }
    found = dict(await target.fetchall("SELECT key, value FROM meta"))
    counts.append(Count(META, meta, sum(found.get(key) == value for key, value in wanted.items())))
    return counts


def differ(counts: Sequence[Count]) -> str | None:
    """What differs between the two sides, in words; None if every count is the same."""
    wrong = [count for count in counts if count.source != count.target]
    if not wrong:
        return None
    return ", ".join(
        f"{c.table}: {c.source} in the source, {c.target} in the target" for c in wrong
    )


async def copy_store(source: Store, target: Target) -> list[Count]:
    """Copy every table of ``source`` into the empty ``target``; the counts of both sides,
    read again after the copy (:func:`differ` says what differs).

    Both stores must be open, and neither used by anyone else meanwhile.

    Raises:
        CopyRefused: ``target`` holds data already.
    """
    await check_empty(target)
    for table in TABLES:
        await copy_table(source, target, table)
    meta = await copy_meta(source, target)
    return await verify(source, target, meta)
