"""``flowyard keys`` on a database served through the storage port (PostgreSQL).

The ``*_sync`` functions of :mod:`flowyard.storage.projects` work on a SQLite file with the
standard library; these do the same through any :class:`Store`, opened for the one command:
the same intents and reads, so both stores hold the same rows.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import anyio

from flowyard.clock import now_ms
from flowyard.storage.port import Store
from flowyard.storage.projects import (
    KEYS_WITH_PROJECT_NAME,
    ApiKey,
    CreatedKey,
    key_from_row,
    new_key,
    new_project,
    revoke_key,
)
from flowyard.storage.stores import store_for

T = TypeVar("T")


async def with_store(store: Store, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open ``store`` (migrating it), run ``work`` with its writer running, close it."""
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run_writer)
            try:
                result = await work(store)
            finally:
                store.close_writer()
    finally:
        await store.close()
    return result


def blocking(db: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``work`` on the store ``db`` names, from synchronous code (the CLI, a test): in a
    thread of its own when this thread already runs an event loop."""

    def run() -> T:
        return asyncio.run(with_store(store_for(db), work))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


async def create_key(
    store: Store, project_name: str, scopes: Sequence[str], *, admin: bool = False, name: str = ""
) -> CreatedKey:
    """Create the project if needed, then a key for it."""
    _, insert = new_project(project_name)
    await store.commit([insert])
    row = await store.fetchone("SELECT id FROM projects WHERE name = ?", (project_name,))
    assert row is not None  # inserted, or there already
    created, key_insert = new_key(row[0], scopes, admin=admin, name=name or project_name)
    await store.commit([key_insert])
    return created


async def list_keys(store: Store, project_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (of one project, by name), newest first, with its project's name.

    Raises:
        LookupError: there is no project of that name.
    """
    if project_name is None:
        rows = await store.fetchall(f"{KEYS_WITH_PROJECT_NAME} ORDER BY k.rowid DESC")
    elif await store.fetchone("SELECT 1 FROM projects WHERE name = ?", (project_name,)):
        sql = f"{KEYS_WITH_PROJECT_NAME} WHERE p.name = ? ORDER BY k.rowid DESC"
        rows = await store.fetchall(sql, (project_name,))
    else:
        raise LookupError(f"no project named {project_name!r}")
    return [(key_from_row(row[:-1]), row[-1] or "") for row in rows]


async def revoke(store: Store, key_id: str) -> tuple[ApiKey, str, bool]:
    """Revoke a key: its record, its project's name, and whether it was revoked already.

    Raises:
        LookupError: there is no key with that id.
    """
    sql = f"{KEYS_WITH_PROJECT_NAME} WHERE k.id = ?"
    before = await store.fetchone(sql, (key_id,))
    if before is None:
        raise LookupError(f"no key {key_id}")
    await store.commit([revoke_key(key_id, now_ms())])
    row = await store.fetchone(sql, (key_id,))
    assert row is not None
    return key_from_row(row[:-1]), row[-1] or "", before[7] is not None
