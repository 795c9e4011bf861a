"""Which adapter a ``--db`` value opens: a ``postgresql://`` URL or a SQLite file path."""

import os
from urllib.parse import urlsplit, urlunsplit

from flowyard.metrics import Metrics
from flowyard.storage.port import Store
from flowyard.storage.sqlite import Database

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(db: str) -> bool:
    """Whether ``db`` is a PostgreSQL URL (anything else is a SQLite file)."""
    return db.startswith(POSTGRES_SCHEMES)


def shown(db: str) -> str:
    """``db`` as messages name it: a file's absolute path, a URL without its password."""
    if not is_postgres(db):
        return os.path.abspath(db)
    parts = urlsplit(db)
    if parts.password is None:
        return db
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{netloc}"))


def store_for(
    db: str,
    *,
    sync: str = "full",
    serving: bool = False,
    exclusive: bool = True,
    metrics: Metrics | None = None,
) -> Store:
    """The store ``db`` names, not opened yet. ``sync`` is SQLite's durability; PostgreSQL
    keeps its own (``synchronous_commit`` of the server). A ``serving`` store on PostgreSQL
    refuses to open while another server's is open (a SQLite file's server lock is taken by
    ``flowyard serve`` itself, before it binds), unless it is not ``exclusive``: a cluster
    node shares the database with the other nodes. ``metrics``: the server's, for its
    writer's transactions."""
    if is_postgres(db):
        # Imported here: asyncpg is needed only by those who use PostgreSQL.
        from flowyard.storage.postgres import PostgresDatabase

        return PostgresDatabase(db, serving=serving, exclusive=exclusive, metrics=metrics)
    return Database(db, sync=sync, metrics=metrics)
