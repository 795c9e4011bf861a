"""Projects and API keys: creation (also usable without a running server) and look-ups."""

import hashlib
import json
import sqlite3
from contextlib import closing

import msgspec

from flowyard.clock import now_ms
from flowyard.ids import base62_token, new_id
from flowyard.storage.migrations import migrate_sync
from flowyard.storage.sqlite import Database, Op

ALL_SCOPES = ("jobs:read", "jobs:write", "workflows:read", "workflows:write")


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


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256 hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_signing_secret() -> str:
    """A fresh per-project secret for push signatures."""
    return "whsec_" + base62_token(40)


def create_key_sync(
    db_path: str, project_name: str, scopes: list[str], *, admin: bool = False, name: str = ""
) -> CreatedKey:
    """Create the project if needed, then a key for it, straight in the SQLite file.

    This is what ``flowyard keys create`` runs; it works whether or not a server is running.
    """
    with closing(sqlite3.connect(db_path, isolation_level=None, timeout=10)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=10000")
        migrate_sync(conn)
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("SELECT id FROM projects WHERE name = ?", (project_name,)).fetchone()
        if row:
            project_id = row[0]
        else:
            project_id = new_id("proj")
            conn.execute(
                "INSERT INTO projects (id, name, signing_secret, created_at) VALUES (?, ?, ?, ?)",
                (project_id, project_name, new_signing_secret(), now_ms()),
            )
        key = "sk_live_" + base62_token(40)
        record = ApiKey(
            id=new_id("key"),
            project_id=project_id,
            name=name or project_name,
            scopes=tuple(scopes),
            admin=admin,
            created_at=now_ms(),
        )
        conn.execute(
            "INSERT INTO api_keys (id, project_id, name, key_hash, scopes, admin, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                project_id,
                record.name,
                hash_key(key),
                json.dumps(list(scopes)),
                int(admin),
                record.created_at,
            ),
        )
        conn.execute("COMMIT")
    return CreatedKey(key=key, record=record)


async def key_by_hash(db: Database, key_hash: str) -> tuple[str, ApiKey] | None:
    """The stored hash and the key record for a key hash, or None."""
    row = await db.fetchone(
        "SELECT key_hash, id, project_id, name, scopes, admin, created_at, last_used_at,"
        " revoked_at FROM api_keys WHERE key_hash = ?",
        (key_hash,),
    )
    if row is None:
        return None
    stored, key_id, project_id, name, scopes, admin, created_at, last_used, revoked = row
    return stored, ApiKey(
        id=key_id,
        project_id=project_id,
        name=name,
        scopes=tuple(json.loads(scopes)),
        admin=bool(admin),
        created_at=created_at,
        last_used_at=last_used,
        revoked_at=revoked,
    )


async def signing_secret(db: Database, project_id: str) -> str | None:
    """A project's push-signing secret."""
    row = await db.fetchone("SELECT signing_secret FROM projects WHERE id = ?", (project_id,))
    return str(row[0]) if row else None


def set_signing_secret(project_id: str, secret: str) -> Op:
    """Replace a project's push-signing secret."""
    return ("UPDATE projects SET signing_secret = ? WHERE id = ?", (secret, project_id))


async def server_secret(db: Database) -> str:
    """The server's own secret (signs callback URLs), created on first use."""
    row = await db.fetchone("SELECT value FROM meta WHERE key = 'server_secret'")
    if row:
        return str(row[0])
    secret = base62_token(48)
    await db.commit(
        [("INSERT OR IGNORE INTO meta (key, value) VALUES ('server_secret', ?)", (secret,))]
    )
    row = await db.fetchone("SELECT value FROM meta WHERE key = 'server_secret'")
    assert row is not None
    return str(row[0])
