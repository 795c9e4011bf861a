"""Read queries a benchmark runs on the server's database: a SQLite file or a PostgreSQL URL.

The benchmarks check what the server stored by reading its tables directly (the soak's
invariants, a queue's depth...). Both stores have the same tables and columns (``doc`` is the
JSON document as bytes in PostgreSQL, as text or bytes in SQLite), so one plain query serves
both when it keeps to standard SQL and leaves the documents to Python: write it with ``$1``
placeholders (SQLite reads them as ``?1``). PostgreSQL is read with asyncpg, one short
connection per call.

The server stores its records without their default fields (msgspec ``omit_defaults``):
:func:`record` reads a document with the defaults of the Struct it was written from filled in,
so a check sees ``status``, ``attempt``... whether or not they were written.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from typing import Any

import msgspec
import orjson
from msgspec import inspect

_PLACEHOLDER = re.compile(r"\$(\d+)")


def is_postgres(db: str) -> bool:
    """Whether ``db`` is a PostgreSQL URL (else a SQLite file's path)."""
    return db.startswith(("postgresql://", "postgres://"))


def fetch(db: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Every row of ``sql`` (``$n`` placeholders) with ``params``, as tuples."""
    if is_postgres(db):
        return asyncio.run(_fetch_postgres(db, sql, params))
    conn = sqlite3.connect(db, timeout=30)
    try:
        return [tuple(row) for row in conn.execute(_PLACEHOLDER.sub(r"?\1", sql), params)]
    finally:
        conn.close()


def fetch_one(db: str, sql: str, *params: object) -> tuple[Any, ...]:
    """The first row of ``sql``; LookupError when there is none."""
    rows = fetch(db, sql, *params)
    if not rows:
        raise LookupError(f"no row for {sql!r}")
    return rows[0]


def integrity(db: str) -> str:
    """``"ok"``, or what is wrong: SQLite's ``PRAGMA integrity_check``.

    PostgreSQL has no cheap equivalent without extensions (amcheck): its WAL, not ours, keeps
    a crashed cluster's pages whole, so it answers ``"ok"``.
    """
    if is_postgres(db):
        return "ok"
    return "; ".join(str(row[0]) for row in fetch(db, "PRAGMA integrity_check"))


def document(doc: str | bytes | None) -> Any:
    """A ``doc`` column's JSON, decoded (None for NULL)."""
    return None if doc is None else orjson.loads(doc)


def record(doc: str | bytes | None, kind: type[msgspec.Struct]) -> Any:
    """A ``doc`` column's JSON, decoded, with every field ``kind`` leaves out when it holds its
    default filled in (in nested records too: an execution's steps, a step's failure...).

    Only absent fields are filled: a document is otherwise read as it is, so a damaged one
    still shows its damage instead of failing to decode.
    """
    value = document(doc)
    return None if value is None else _filled(value, inspect.type_info(kind))


def _filled(value: Any, kind: inspect.Type) -> Any:
    if isinstance(kind, inspect.StructType) and isinstance(value, dict):
        out = dict(value)
        for f in kind.fields:
            if f.encode_name in out:
                out[f.encode_name] = _filled(out[f.encode_name], f.type)
            elif f.default is not msgspec.NODEFAULT:
                out[f.encode_name] = _plain(f.default)
            elif f.default_factory is not msgspec.NODEFAULT:
                out[f.encode_name] = _plain(f.default_factory())
        return out
    if isinstance(kind, inspect.UnionType):
        for member in kind.types:
            if isinstance(member, inspect.StructType) and isinstance(value, dict):
                return _filled(value, member)
        return value
    if isinstance(kind, inspect.DictType) and isinstance(value, dict):
        return {k: _filled(v, kind.value_type) for k, v in value.items()}
    if isinstance(kind, inspect.CollectionType) and isinstance(value, list):
        return [_filled(v, kind.item_type) for v in value]
    return value


def _plain(default: Any) -> Any:
    """A field's default as its JSON reads back (a ``Raw`` default is JSON already)."""
    if isinstance(default, msgspec.Raw):
        return orjson.loads(bytes(default))
    return msgspec.to_builtins(default)


async def _fetch_postgres(url: str, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
    # Imported here: asyncpg is needed only by those who use PostgreSQL.
    import asyncpg

    conn = await asyncpg.connect(url, timeout=30)
    try:
        return [tuple(row) for row in await conn.fetch(sql, *params, timeout=60)]
    finally:
        await conn.close()
