"""Opaque list cursors: a row sequence number, stable under concurrent inserts.

Lists are ordered by an ever-increasing ``seq`` column, so paging backwards from a cursor never
sees rows inserted after the first page was read, and never skips or repeats a row.

A cursor is the position (a ``seq``, or a name for lists ordered by name) and an HMAC over it
and the list it belongs to (its *scope*: the table, plus the parent id for a job's runs or an
execution's events), keyed with a secret kept in the database. So a cursor that was tampered
with, or that belongs to another list, is a 400 instead of a page of the wrong rows.
"""

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from typing import Any, TypeVar

from flowyard.errors import invalid_field
from flowyard.storage.port import Store

T = TypeVar("T")

_MAC_BYTES = 12
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def _mac(key: bytes, scope: str, position: bytes) -> bytes:
    return hmac.new(key, scope.encode() + b"\0" + position, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def seal(key: bytes, scope: str, position: str) -> str:
    """The opaque cursor for continuing after ``position`` in the list ``scope``."""
    raw = position.encode()
    return _b64(_mac(key, scope, raw) + raw)


def unseal(key: bytes, scope: str, cursor: str | None) -> str | None:
    """The position inside a cursor of list ``scope``; any other string is a 400."""
    if cursor is None:
        return None
    try:
        if not _BASE64URL.match(cursor):
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        mac, position = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        # Base64 ignores stray low bits of the last character: only the canonical form counts.
        if _b64(raw) != cursor or not hmac.compare_digest(mac, _mac(key, scope, position)):
            raise ValueError(cursor)
        return position.decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_field("$.cursor", "is not a cursor this service issued") from None


def encode_cursor(key: bytes, scope: str, seq: int) -> str:
    """The opaque cursor for continuing after the row with ``seq``."""
    return seal(key, scope, str(seq))


def decode_cursor(key: bytes, scope: str, cursor: str | None) -> int | None:
    """The ``seq`` inside a cursor of list ``scope``; any other cursor is a 400."""
    number = unseal(key, scope, cursor)
    if number is None:
        return None
    # Only what ``encode_cursor`` writes; digits SQLite cannot bind would be a 500, not a 400.
    if not (number.isascii() and number.isdigit()) or int(number) >= 2**63:
        raise invalid_field("$.cursor", "is not a cursor this service issued")
    return int(number)


def page(
    key: bytes,
    scope: str,
    rows: Sequence[tuple[Any, ...]],
    limit: int,
    decode: Callable[[Any], T],
) -> tuple[list[T], str | None]:
    """Decode ``(seq, doc)`` rows fetched with ``LIMIT limit + 1`` into a page and its cursor."""
    items = [decode(doc) for _, doc in rows[:limit]]
    next_cursor = encode_cursor(key, scope, rows[limit - 1][0]) if len(rows) > limit else None
    return items, next_cursor


def newest_first(
    key: bytes, table: str, filters: dict[str, Any], cursor: str | None, limit: int
) -> tuple[str, list[Any]]:
    """The query for a page of ``table`` rows matching ``filters`` (None values ignored).

    The page's cursor is scoped to ``table``: build it with ``page(key, table, ...)``.
    """
    where = [f"{column} = ?" for column, value in filters.items() if value is not None]
    params = [value for value in filters.values() if value is not None]
    before = decode_cursor(key, table, cursor)
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT seq, doc FROM {table} {clause} ORDER BY seq DESC LIMIT ?", [*params, limit + 1]


CHUNK_ROWS = 5000


async def chunked(db: Store, sql: str, params: list[Any]) -> AsyncIterator[Any]:
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
