"""Databases as an older version of the schema wrote them, for the tests of migrations."""

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager

from flowyard.storage.migrations import MIGRATIONS
from flowyard.storage.projects import ALL_SCOPES, Project, new_key, new_project
from flowyard.storage.sqlite_statements import execute


@contextmanager
def older_database(db: str, version: int) -> Iterator[tuple[sqlite3.Connection, Project, str]]:
    """A new SQLite file at schema ``version`` with a project ``old`` and a key of it; the
    block writes what that version would have, and it is committed when the block ends."""
    with closing(sqlite3.connect(db)) as conn:
        for number, script in enumerate(MIGRATIONS[:version], 1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        project, insert = new_project("old")
        execute(conn, insert)
        key, key_insert = new_key(project.id, list(ALL_SCOPES))
        execute(conn, key_insert)
        yield conn, project, key.key
        conn.commit()
