"""Reading and writing a service's database beside it, whichever store it is (``--store``).

Each call opens the database through the storage port for one read or one commit, as
``flowyard keys`` does, so a test can set or check what the server keeps, on SQLite and
PostgreSQL alike. Call it off the event loop (``anyio.to_thread.run_sync``).
"""

from typing import Any

from flowyard.storage import store_keys
from flowyard.storage.intents import Intent


def read(db: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of one read (``?`` parameters)."""
    return store_keys.blocking(db, lambda store: store.fetchall(sql, params))


def write(db: str, *intents: Intent) -> None:
    """Commit ``intents`` in one transaction."""
    store_keys.blocking(db, lambda store: store.commit(list(intents)))
