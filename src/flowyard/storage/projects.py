"""Projects and API keys: creation, look-ups, listing and revocation.

The ``*_sync`` functions work straight on the SQLite file with the standard library, whether or
not a server is running (``flowyard keys ...``); the others go through the server's
:class:`Store`.
"""

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any, TypeVar

import msgspec

from flowyard.clock import now_ms
from flowyard.ids import base62_token, new_id
from flowyard.storage.files import create_private
from flowyard.storage.intents import (
    PutKey,
    PutProject,
    RevokeKey,
    SetServerSecret,
    SetSigningSecret,
    TouchKey,
)
from flowyard.storage.migrations import migrate_sync
from flowyard.storage.pages import decode_cursor, page
from flowyard.storage.port import Store
from flowyard.storage.sqlite_statements import execute
from flowyard.storage.stores import is_postgres

T = TypeVar("T")

ALL_SCOPES = (
    "jobs:read",
    "jobs:write",
    "workflows:read",
    "workflows:write",
    "webhooks:read",
    "webhooks:write",
)
SCOPES = (*ALL_SCOPES, "*")
"""Every scope a key may hold; ``*`` grants them all."""


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A stored key (its secret exists only as a hash)."""

    id: str
    project_id: str
    name: str
    scopes: tuple[str, ...]
    admin: bool
    created_at: int
    last_used_at: int | None = None
    revoked_at: int | None = None


class CreatedKey(msgspec.Struct, frozen=True):
    """A key just created: the only moment its secret is known."""

    key: str
    record: ApiKey


class Project(msgspec.Struct, frozen=True, kw_only=True):
    """A project as stored (balance in nanotokens, None = unlimited; rate None = no limit)."""

    id: str
    name: str
    rate_limit_rps: float | None
    token_balance: int | None
    created_at: int


_KEY_COLUMNS = "id, project_id, name, scopes, admin, created_at, last_used_at, revoked_at"
_PROJECT_COLUMNS = "id, name, rate_limit_rps, token_balance, created_at"
KEYS_WITH_PROJECT_NAME = (
    "SELECT k.id, k.project_id, k.name, k.scopes, k.admin, k.created_at, k.last_used_at,"
    " k.revoked_at, p.name FROM api_keys k LEFT JOIN projects p ON p.id = k.project_id"
)


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256 hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_signing_secret() -> str:
    """A fresh per-project secret for push signatures."""
    return "whsec_" + base62_token(40)


def key_from_row(row: tuple[Any, ...]) -> ApiKey:
    """A key record from the columns of ``KEYS_WITH_PROJECT_NAME`` (without the last)."""
    key_id, project_id, name, scopes, admin, created_at, last_used, revoked = row
    return ApiKey(
        id=key_id,
        project_id=project_id,
        name=name,
        scopes=tuple(json.loads(scopes)),
        admin=bool(admin),
        created_at=created_at,
        last_used_at=last_used,
        revoked_at=revoked,
    )


def _project(row: tuple[Any, ...]) -> Project:
    project_id, name, rate, balance, created_at = row
    return Project(
        id=project_id, name=name, rate_limit_rps=rate, token_balance=balance, created_at=created_at
    )


def new_project(name: str) -> tuple[Project, PutProject]:
    """A project and the insert that stores it; the insert does nothing if the name is taken."""
    project = Project(
        id=new_id("proj"), name=name, rate_limit_rps=None, token_balance=None, created_at=now_ms()
    )
    return project, PutProject(project, new_signing_secret())


def new_key(
    project_id: str, scopes: Sequence[str], *, admin: bool = False, name: str = ""
) -> tuple[CreatedKey, PutKey]:
    """A fresh key of a project and the insert that stores its hash."""
    key = "sk_live_" + base62_token(40)
    record = ApiKey(
        id=new_id("key"),
        project_id=project_id,
        name=name,
        scopes=tuple(scopes),
        admin=admin,
        created_at=now_ms(),
    )
    return CreatedKey(key=key, record=record), PutKey(record, hash_key(key))


def revoke_key(key_id: str, at: int) -> RevokeKey:
    """Revoke a key now (a key revoked before keeps its first ``revoked_at``)."""
    return RevokeKey(key_id, at)


def touch_key(key_id: str, at: int) -> TouchKey:
    """Record a use of a key (``last_used_at`` never moves backwards)."""
    return TouchKey(key_id, at)


# --------------------------------------------------------------------- on the file (CLI)


@contextmanager
def _file(db_path: str) -> Iterator[sqlite3.Connection]:
    create_private(db_path)
    with closing(sqlite3.connect(db_path, isolation_level=None, timeout=10)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=10000")
        migrate_sync(conn)
        yield conn


def create_key_sync(
    db_path: str, project_name: str, scopes: list[str], *, admin: bool = False, name: str = ""
) -> CreatedKey:
    """Create the project if needed, then a key for it, straight in the SQLite file.

    This is what ``flowyard keys create`` runs; it works whether or not a server is running.
    A PostgreSQL URL goes through the storage port instead (:mod:`store_keys`).
    """
    if is_postgres(db_path):
        from flowyard.storage import store_keys

        return store_keys.blocking(
            db_path,
            lambda store: store_keys.create_key(
                store, project_name, scopes, admin=admin, name=name
            ),
        )
    with _file(db_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        execute(conn, new_project(project_name)[1])
        row = conn.execute("SELECT id FROM projects WHERE name = ?", (project_name,)).fetchone()
        created, insert = new_key(row[0], scopes, admin=admin, name=name or project_name)
        execute(conn, insert)
        conn.execute("COMMIT")
    return created


def list_keys_sync(db_path: str, project_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (of one project, by name), newest first, with its project's name.

    Raises:
        LookupError: there is no project of that name.
    """
    if is_postgres(db_path):
        from flowyard.storage import store_keys

        return store_keys.blocking(db_path, lambda store: store_keys.list_keys(store, project_name))
    with _file(db_path) as conn:
        if project_name is None:
            rows = conn.execute(f"{KEYS_WITH_PROJECT_NAME} ORDER BY k.rowid DESC").fetchall()
        elif conn.execute("SELECT 1 FROM projects WHERE name = ?", (project_name,)).fetchone():
            rows = conn.execute(
                f"{KEYS_WITH_PROJECT_NAME} WHERE p.name = ? ORDER BY k.rowid DESC",
                (project_name,),
            ).fetchall()
        else:
            raise LookupError(f"no project named {project_name!r}")
    return [(key_from_row(row[:-1]), row[-1] or "") for row in rows]


def revoke_key_sync(db_path: str, key_id: str) -> tuple[ApiKey, str, bool]:
    """Revoke a key in the file: the key record, its project's name, and whether it was
    already revoked (then it keeps its first ``revoked_at``).

    Raises:
        LookupError: there is no key with that id.
    """
    if is_postgres(db_path):
        from flowyard.storage import store_keys

        return store_keys.blocking(db_path, lambda store: store_keys.revoke(store, key_id))
    with _file(db_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        changed = execute(conn, revoke_key(key_id, now_ms()))
        row = conn.execute(f"{KEYS_WITH_PROJECT_NAME} WHERE k.id = ?", (key_id,)).fetchone()
        conn.execute("COMMIT")
    if row is None:
        raise LookupError(f"no key {key_id}")
    return key_from_row(row[:-1]), row[-1] or "", not changed


# --------------------------------------------------------------------- in the server


async def key_by_hash(db: Store, key_hash: str) -> tuple[str, ApiKey] | None:
    """The stored hash and the key record for a key hash, or None."""
    row = await db.fetchone(
        f"SELECT key_hash, {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
    )
    return (row[0], key_from_row(row[1:])) if row else None


async def get_key(db: Store, key_id: str) -> ApiKey | None:
    """A key record by id, or None."""
    row = await db.fetchone(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
    return key_from_row(row) if row else None


async def list_keys(
    db: Store, *, project_id: str | None, cursor: str | None, limit: int
) -> tuple[list[ApiKey], str | None]:
    """A page of keys (of one project, or of all), newest first."""
    return await _page(db, "api_keys", _KEY_COLUMNS, project_id, cursor, limit, key_from_row)


async def get_project(db: Store, project_id: str) -> Project | None:
    """A project by id, or None."""
    row = await db.fetchone(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = ?", (project_id,))
    return _project(row) if row else None


async def create_project(db: Store, name: str) -> Project | None:
    """Create a project; None if the name is taken."""
    project, insert = new_project(name)
    await db.commit([insert])
    return await get_project(db, project.id)


async def list_projects(
    db: Store, *, cursor: str | None, limit: int
) -> tuple[list[Project], str | None]:
    """A page of projects, newest first."""
    return await _page(db, "projects", _PROJECT_COLUMNS, None, cursor, limit, _project)


async def _page(
    db: Store,
    table: str,
    columns: str,
    project_id: str | None,
    cursor: str | None,
    limit: int,
    decode: Callable[[tuple[Any, ...]], T],
) -> tuple[list[T], str | None]:
    # Both tables have an implicit, ever-increasing rowid (rows are never deleted): it orders
    # the pages like ``seq`` does elsewhere.
    before = decode_cursor(db.cursor_key, table, cursor)
    column = "project_id" if table == "api_keys" else "id"
    where = [f"{column} = ?"] if project_id is not None else []
    params: list[Any] = [project_id] if project_id is not None else []
    if before is not None:
        where.append("rowid < ?")
        params.append(before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await db.fetchall(
        f"SELECT rowid, {columns} FROM {table} {clause} ORDER BY rowid DESC LIMIT ?",
        [*params, limit + 1],
    )
    return page(db.cursor_key, table, [(row[0], row[1:]) for row in rows], limit, decode)


async def signing_secret(db: Store, project_id: str) -> str | None:
    """A project's push-signing secret."""
    row = await db.fetchone("SELECT signing_secret FROM projects WHERE id = ?", (project_id,))
    return str(row[0]) if row else None


def set_signing_secret(project_id: str, secret: str) -> SetSigningSecret:
    """Replace a project's push-signing secret."""
    return SetSigningSecret(project_id, secret)


async def server_secret(db: Store) -> str:
    """The server's own secret (signs callback URLs), created on first use."""
    row = await db.fetchone("SELECT value FROM meta WHERE key = 'server_secret'")
    if row:
        return str(row[0])
    secret = base62_token(48)
    await db.commit([SetServerSecret(secret)])
    row = await db.fetchone("SELECT value FROM meta WHERE key = 'server_secret'")
    assert row is not None
    return str(row[0])
