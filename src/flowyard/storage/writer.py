"""The writer's connection: a whole group commit in one SQLite statement.

Each write statement the service uses (an ``INSERT``, an upsert, an ``UPDATE`` with ``?``
or ``?N`` parameters; or several such statements, separated by ``;``, that share them)
gets, the first time the writer meets it, a trigger on the view ``temp.writes`` that carries
it out with the row's columns in place of its parameters. A group commit then
becomes one ``INSERT INTO temp.writes VALUES (code, p1, p2, ...), (...), ...``: SQLite runs
the writes in the order of their rows, as one transaction of its own (autocommit), and
Python calls into SQLite once.

Why one call: every call into SQLite lets go of the GIL and has to win it back from the event
loop's thread before the next call can start. One statement per write made the writer wait for
the GIL a dozen times per group commit, which made each commit several times slower than the
work SQLite did for it.

Every row of ``temp.writes`` calls every trigger's program (each checks its code in its own
``WHEN``), so a writer told which statements are frequent installs triggers for those only:
a group commit with a rare statement (a key, a project's settings) runs it as a plain
statement between the inserts of its neighbours, in one transaction.
"""

import logging
import re
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from flowyard.storage.files import create_private
from flowyard.storage.migrations import pending_migrations

log = logging.getLogger("flowyard.storage")

WIDTH = 10
"""The most parameters a write statement may have."""
MAX_ROWS = 1024
"""Writes per ``INSERT`` (a group commit with more takes several, in one transaction).

An ``INSERT`` has room for a power of two of rows, the rest padded with rows that no trigger
takes: a dozen statement shapes, prepared once, serve every group commit. Its ``LIMIT`` (the
count of real rows) keeps the padding out of the view: a row inserted there runs through
every trigger, the code of each checked in a trigger program of its own."""

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=5000", "PRAGMA foreign_keys=OFF")

# A string literal (kept as it is) or a parameter: ``?`` (the next one) or ``?N`` (the Nth).
_PARAMETER = re.compile(r"'[^']*'|\?(\d*)")
_VIEW = (
    "CREATE TEMP VIEW writes AS SELECT "
    + ", ".join(["NULL AS code", *(f"NULL AS p{i}" for i in range(WIDTH))])
    + " WHERE 0"
)
_ROW = f"({', '.join('?' * (WIDTH + 1))})"
# Rows are filled out, and padding rows made, with integers rather than NULLs: Python's
# sqlite3 binds int, float, str and bytearray as they are, but looks every other value (None,
# bytes) up in its adapter registry first, a lookup that formats and drops an exception.
_FILL = 0
_PADDING = [-1, *(_FILL,) * WIDTH]  # a row whose code (-1) no trigger takes
_FILLS = [(_FILL,) * (WIDTH - count) for count in range(WIDTH + 1)]  # by parameter count
NULL_VALUE = float("nan")
"""What binds NULL without that lookup: SQLite stores a float NaN as NULL."""
_PLAIN = -2  # the code of a statement run on its own, not through ``temp.writes``


def synchronous(sync: str) -> str:
    """The PRAGMA for ``--sync full|normal``."""
    return f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}"


class Writer:
    """The one connection that writes; used by the writer thread only (after ``open``)."""

    def __init__(self, conn: sqlite3.Connection, frequent: Collection[str] | None = None) -> None:
        self.conn = conn
        # The statements that get a trigger (None: every one).
        self._frequent = frequent
        self._codes: dict[str, tuple[int, int]] = {}  # statement -> (its code, parameters)
        self._triggers = 0
        self._inserts: dict[int, str] = {}  # room -> INSERT INTO temp.writes with that many rows
        conn.execute(_VIEW)

    @classmethod
    def open(cls, path: str, sync: str, frequent: Collection[str] | None = None) -> "Writer":
        """Connect (creating the file private), apply pending migrations, prepare the view
        (with triggers for the ``frequent`` statements only, if given)."""
        create_private(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in (*PRAGMAS, synchronous(sync)):
            conn.execute(pragma)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for number, script in pending_migrations(version):
            conn.executescript(
                f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;"
            )
        return cls(conn, frequent)

    def write(self, ops: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Apply ``ops`` in order, all or nothing, durably (per the connection's PRAGMAs)."""
        self._rollback()  # a transaction a failed ROLLBACK left open would block every later one
        if len(ops) <= MAX_ROWS and self._insert(ops):
            return  # autocommit: the statement was its own transaction
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            start = 0
            for index, (statement, params) in enumerate(ops):
                if self._code(statement)[0] == _PLAIN:
                    self._insert_all(ops[start:index])
                    self.conn.execute(statement, params)
                    start = index + 1
            self._insert_all(ops[start:])
            self.conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (SQLITE_FULL does); the first error counts.
            self._rollback()
            raise

    def close(self) -> None:
        self.conn.close()

    def _insert_all(self, ops: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """``ops`` (with triggers all) through ``temp.writes``, ``MAX_ROWS`` at a time."""
        for start in range(0, len(ops), MAX_ROWS):
            self._insert(ops[start : start + MAX_ROWS])

    def _insert(self, ops: Sequence[tuple[str, Sequence[Any]]]) -> bool:
        """One ``INSERT INTO temp.writes``: a row per op, its code, parameters and filling;
        False (and nothing written) if a statement of ``ops`` has no trigger."""
        room = 1 << (len(ops) - 1).bit_length()
        sql = self._inserts.get(room)
        if sql is None:
            values_sql = ", ".join([_ROW] * room)
            sql = f"INSERT INTO temp.writes SELECT * FROM (VALUES {values_sql}) LIMIT ?"
            self._inserts[room] = sql
        codes = self._codes
        values: list[Any] = []
        add = values.append
        for statement, params in ops:
            code, count = codes.get(statement) or self._code(statement)
            if code == _PLAIN:
                return False
            if len(params) != count:
                raise sqlite3.ProgrammingError(f"{len(params)} parameters for {count}: {statement}")
            add(code)
            if None in params:  # the adapter's frequent statements bind NULL as NULL_VALUE
                params = [NULL_VALUE if value is None else value for value in params]
            values += params
            values += _FILLS[count]
        values += _PADDING * (room - len(ops))
        values.append(len(ops))
        self.conn.execute(sql, values)
        return True

    def _code(self, sql: str) -> tuple[int, int]:
        """``sql``'s code and parameter count (``_PLAIN`` for a statement run on its own),
        installing its trigger the first time a frequent statement is met."""
        known = self._codes.get(sql)
        if known is not None:
            return known
        # Several statements in one (``;``) share their parameters: only a trigger runs them.
        if self._frequent is not None and sql not in self._frequent and ";" not in sql:
            self._codes[sql] = known = (_PLAIN, 0)
            return known
        return self._install(sql)

    def _install(self, sql: str) -> tuple[int, int]:
        """The trigger that runs ``sql`` for the rows of ``temp.writes`` with its code."""
        count = 0

        def column(match: re.Match[str]) -> str:
            nonlocal count
            if match[0].startswith("'"):
                return match[0]
            number = int(match[1]) if match[1] else count + 1
            count = max(count, number)
            return f"NEW.p{number - 1}"

        body = _PARAMETER.sub(column, sql)
        if count > WIDTH:
            raise ValueError(f"a write statement has more than {WIDTH} parameters: {sql}")
        code = self._triggers
        self._triggers += 1
        self.conn.execute(
            f"CREATE TEMP TRIGGER write_{code} INSTEAD OF INSERT ON writes"
            f" WHEN NEW.code = {code} BEGIN {body}; END"
        )
        self._codes[sql] = (code, count)
        return code, count

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("rollback failed; the next write retries it", exc_info=True)
