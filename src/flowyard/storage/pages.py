"""Opaque list cursors: a row sequence number, stable under concurrent inserts.

Lists are ordered by an ever-increasing ``seq`` column, so paging backwards from a cursor never
sees rows inserted after the first page was read, and never skips or repeats a row.
"""

import base64
import binascii
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from typing import Any, TypeVar

from flowyard.errors import invalid_field
from flowyard.storage.sqlite import Database

T = TypeVar("T")


def encode_cursor(seq: int) -> str:
    """The opaque cursor for continuing after the row with ``seq``."""
    return base64.urlsafe_b64encode(f"s:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The ``seq`` inside a cursor; a cursor that did not come from us is a 400."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "s" or not (number.isascii() and number.isdigit()):
            raise ValueError(text)
        if int(number) >= 2**63:  # SQLite cannot bind it: a 500 instead of a 400
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_field("$.cursor", "is not a cursor this service issued") from None


def page(
    rows: Sequence[tuple[Any, ...]], limit: int, decode: Callable[[Any], T]
) -> tuple[list[T], str | None]:
    """Decode ``(seq, doc)`` rows fetched with ``LIMIT limit + 1`` into a page and its cursor."""
    items = [decode(doc) for _, doc in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return items, next_cursor


def newest_first(
    table: str, filters: dict[str, Any], cursor: str | None, limit: int
) -> tuple[str, list[Any]]:
    """The query for a page of ``table`` rows matching ``filters`` (None values ignored)."""
    where = [f"{column} = ?" for column, value in filters.items() if value is not None]
    params = [value for value in filters.values() if value is not None]
    before = decode_cursor(cursor)
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT seq, doc FROM {table} {clause} ORDER BY seq DESC LIMIT ?", [*params, limit + 1]


CHUNK_ROWS = 5000


async def chunked(db: Database, sql: str, params: list[Any]) -> AsyncIterator[Any]:
    """The ``doc`` of every row of a ``seq > ? ORDER BY seq LIMIT ?`` query, chunk by chunk."""
    after = 0
    while True:
        rows = await db.fetchall(sql, [*params, after, CHUNK_ROWS])
        for _, doc in rows:
            yield doc
        if len(rows) < CHUNK_ROWS:
            return
        after = rows[-1][0]


class Sharer:
    """Hands back one shared object for equal values (ids and triggers repeated by many rows)."""

    def __init__(self) -> None:
        self._seen: dict[Hashable, Any] = {}

    def __call__(self, value: T) -> T:
        shared: T = self._seen.setdefault(value, value)
        return shared
