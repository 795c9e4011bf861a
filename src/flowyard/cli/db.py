"""``flowyard db copy|migrate``: move a database to another store, bring a schema up to date.

Both work on stores no server uses. A SQLite file is held with the server lock for as long as
the command runs (a server holding it makes the command stop; a server started meanwhile is
refused). A PostgreSQL database has no such lock: the command stops if ``pg_stat_activity``
shows any other connection to the database, and nothing keeps a server from connecting later.
"""

import argparse
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from typing import cast

import anyio

from flowyard.cli.common import DEFAULTS, described, env, fail, print_table
from flowyard.storage import copy
from flowyard.storage.files import DatabaseInUse, lock_server
from flowyard.storage.migrations import MIGRATIONS, migrate_sync
from flowyard.storage.stores import is_postgres, shown, store_for


class Refused(Exception):
    """The command cannot go on; the message says why."""


def _database_errors() -> tuple[type[BaseException], ...]:
    """What a database that cannot be reached or written raises (asyncpg's, if installed)."""
    errors: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)
    with contextlib.suppress(ImportError):
        import asyncpg

        errors += (asyncpg.PostgresError, asyncpg.InterfaceError)
    return errors


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    db = commands.add_parser("db", help="copy a database to another store, apply migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    copying = db_commands.add_parser(
        "copy",
        help="copy every table to an empty store and verify the counts (no server may use them)",
    )
    copying.add_argument(
        "--from",
        dest="source",
        required=True,
        help="the SQLite file or postgresql:// URL to copy (required)",
    )
    copying.add_argument(
        "--to",
        dest="target",
        required=True,
        help="the SQLite file or postgresql:// URL to copy into, new or empty (required)",
    )
    copying.set_defaults(run=copy_command)
    migrate = db_commands.add_parser("migrate", help="apply pending schema migrations")
    migrate.add_argument(
        "--db",
        default=env("db", DEFAULTS.db),
        help=described("the SQLite file, or a postgresql:// URL", DEFAULTS.db, "db"),
    )
    migrate.set_defaults(run=migrate_command)


@contextlib.contextmanager
def _held(db: str, role: str) -> Iterator[None]:
    """Hold ``db`` for the block: a SQLite file's server lock, or no other PostgreSQL session.

    The lock's descriptor is closed only after the block, once the store's connections are.
    """
    if is_postgres(db):
        from flowyard.storage.postgres import other_sessions

        others = anyio.run(other_sessions, db)
        if others:
            raise Refused(
                f"the {role} {shown(db)} is in use: pg_stat_activity shows {others} other"
                " connection(s) to it; stop the servers using it first"
            )
        yield
        return
    if role != "target" and not os.path.exists(db):
        raise Refused(f"no database at {shown(db)}")
    try:
        fd = lock_server(db)
    except DatabaseInUse:
        raise Refused(
            f"the {role} {shown(db)} is in use by a running flowyard server; stop it first"
        ) from None
    except OSError as exc:
        raise Refused(f"cannot open the {role} {shown(db)}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


async def _copy(source_db: str, target_db: str) -> list[copy.Count]:
    source = store_for(source_db)
    target = cast(copy.Target, store_for(target_db))  # both adapters load rows as they are
    await source.open()
    try:
        await target.open()
        try:
            return await copy.copy_store(source, target)
        finally:
            await target.close()
    finally:
        await source.close()


def copy_command(args: argparse.Namespace) -> int:
    """``flowyard db copy``: the counts per table on stdout; 1 when refused or they differ."""
    source_db, target_db = args.source, args.target
    if shown(source_db) == shown(target_db):
        fail("--from and --to name the same database")
        return 1
    try:
        with _held(source_db, "source"), _held(target_db, "target"):
            counts = anyio.run(_copy, source_db, target_db)
    except Refused as exc:
        fail(str(exc))
        return 1
    except copy.CopyRefused as exc:
        fail(f"will not copy into {shown(target_db)}: {exc}; copy into a new database")
        return 1
    except _database_errors() as exc:
        fail(f"the copy failed: {exc}")
        return 1
    print_table(("table", "source", "target"), [(c.table, c.source, c.target) for c in counts])
    wrong = copy.differ(counts)
    if wrong:
        fail(f"the copy is not complete: {wrong}")
        return 1
    fail(f"copied {shown(source_db)} to {shown(target_db)}")
    return 0


def _migrate_sqlite(db: str) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        (before,) = conn.execute("PRAGMA user_version").fetchone()
        if before > len(MIGRATIONS):
            raise Refused(
                f"{shown(db)} is at schema version {before}, newer than this flowyard knows"
                f" ({len(MIGRATIONS)})"
            )
        migrate_sync(conn)
        (after,) = conn.execute("PRAGMA user_version").fetchone()
    return int(before), int(after)


async def _migrate_postgres(url: str) -> tuple[int, int]:
    import asyncpg

    from flowyard.storage.postgres_schema import MIGRATIONS as PG_MIGRATIONS
    from flowyard.storage.postgres_schema import migrate, schema_version

    conn = await asyncpg.connect(url)
    try:
        before = await schema_version(conn)
        if before > len(PG_MIGRATIONS):
            raise Refused(
                f"{shown(url)} is at schema version {before}, newer than this flowyard knows"
                f" ({len(PG_MIGRATIONS)})"
            )
        return before, await migrate(conn)
    finally:
        await conn.close()


def migrate_command(args: argparse.Namespace) -> int:
    """``flowyard db migrate``: apply what is pending; the version before and after."""
    db = args.db
    try:
        if is_postgres(db):
            before, after = anyio.run(_migrate_postgres, db)
        else:
            with _held(db, "database"):
                before, after = _migrate_sqlite(db)
    except Refused as exc:
        fail(str(exc))
        return 1
    except _database_errors() as exc:
        fail(f"cannot migrate {shown(db)}: {exc}")
        return 1
    if before == after:
        print(f"{shown(db)}: schema version {after}, nothing to apply")
    else:
        print(f"{shown(db)}: schema version {before} -> {after}")
    return 0
