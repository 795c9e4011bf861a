"""The PostgreSQL store: one writer task that group-commits, and a pool of readers.

The same contract as the SQLite :class:`~flowyard.storage.sqlite.Database`: every write goes
through :meth:`PostgresDatabase.commit`; the writer takes every request waiting, writes them in
one transaction and only after its ``COMMIT`` wakes the callers, so an acknowledged write
survives ``kill -9`` of the service or of the database server. A failed transaction is tried
again request by request, so that one bad write cannot fail its neighbours; a database that
cannot be written (connection lost, disk full, read-only) answers ``Unavailable`` and is probed
until it takes writes again.

Why a task rather than SQLite's thread: asyncpg is asynchronous, so the writer waits for the
server on the event loop like any other task and costs no thread or GIL hand-offs; while one
transaction is in flight the next batch gathers. A batch is as few statements as
:func:`~flowyard.storage.postgres_statements.plan` can make of it (every transition's upserts
as one statement over ``unnest`` arrays, folded per row; the rest in order, one
``executemany`` per run of one statement), because each statement is a round trip: a batch
of 64 transitions as one statement costs a tenth of the CPU of sending its statements one
by one (``bench/README.md``). Reads take the SQL the storage modules write for SQLite (``?``
parameters) and answer the same Python values (tuples, ``doc`` as ``bytes``).
"""

import collections
import contextlib
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus

from flowyard.clock import now_ms
from flowyard.errors import Unavailable
from flowyard.metrics import Metrics
from flowyard.storage.commits import CommitRequest, Committer
from flowyard.storage.files import DatabaseInUse
from flowyard.storage.intents import Intent
from flowyard.storage.postgres_schema import migrate
from flowyard.storage.postgres_statements import Op, all_statements, plan
from flowyard.storage.postgres_texts import escaped, unescaped
from flowyard.storage.sqlite import RETRY_SECONDS, identifier
from flowyard.storage.stores import shown

log = logging.getLogger("flowyard.storage")

SERVER_LOCK = 0x666C6F79
"""The advisory lock the serving process's writer session holds ("floy")."""
_PROBE = (
    "INSERT INTO meta (key, value) VALUES ('writable_at', $1)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
FENCED = "FY001"
"""The SQLSTATE of ``flowyard_fence`` (``postgres_schema``): this node lost its lease."""
_PARAMETER = re.compile(r"'[^']*'|\?")  # a string literal (kept as it is) or a parameter
# SQLSTATE classes that say the database cannot be written, rather than that one write is bad:
# connection exceptions, insufficient resources (disk full), operator intervention (shutdown),
# system errors (I/O); and 25006, a read-only transaction (a standby, or read-only by default).
_FAULT_CLASSES = ("08", "53", "57", "58")


def to_dollar(sql: str) -> str:
    """``sql`` with each ``?`` outside string literals replaced by ``$1``, ``$2``..."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match[0] != "?":
            return match[0]
        count += 1
        return f"${count}"

    return _PARAMETER.sub(number, sql)


class Fenced(Exception):
    """This cluster node's lease epoch moved on: another node took its shards over."""


async def _run(conn: asyncpg.Connection, steps: list[tuple[str, Any]]) -> None:
    """A transaction's statements: one ``executemany`` for a run of one statement's rows."""
    for sql, rows in steps:
        if len(rows) == 1:
            await conn.execute(sql, *rows[0])
        else:
            await conn.executemany(sql, rows)


def _is_storage_fault(exc: BaseException) -> bool:
    """Whether a failed write says the database cannot be written (not one bad write)."""
    if isinstance(exc, Fenced):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(exc.sqlstate or "")
        return state[:2] in _FAULT_CLASSES or state == "25006"
    # A parameter the driver cannot send is one bad write; anything else on the client's side
    # (a lost or closed connection, one left in a state it cannot leave) is the connection.
    return not isinstance(exc, asyncpg.DataError | TypeError | ValueError)


class PostgresDatabase(Committer):
    """A PostgreSQL database: a group-commit writer task on one connection, a reader pool."""

    def __init__(
        self,
        url: str,
        *,
        readers: int = 4,
        serving: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(metrics)
        self.url = url
        self.serving = serving  # a server's store: one per database (see ``open``)
        # A cluster node's (``cluster/leases.py``): its id and lease epoch, checked by every
        # transaction of the writer; and its sessions' name, so that a node taking its
        # shards over can end them. Set before ``open``, not serving alone.
        self.fence: tuple[str, int] | None = None
        self.session_name: str | None = None
        self.on_fenced: Callable[[], None] | None = None
        self._reader_count = readers
        self._pool: asyncpg.Pool | None = None
        self._conn: asyncpg.Connection | None = None  # the writer's
        self._waiting: collections.deque[CommitRequest] = collections.deque()
        self._wake: anyio.Event | None = None  # set when a request or the end arrives
        self._sql: dict[str, str] = {}  # read SQL with ``?`` -> with ``$n``
        # Signs list cursors; ``open`` replaces it with the one stored in the database.
        self.cursor_key = secrets.token_bytes(32)

    async def open(self) -> None:
        """Connect the writer (applying migrations), load ``cursor_key``, open the readers."""
        self._conn = conn = await self._connect()
        # One server per database, or the nodes of one cluster: the writer's session holds
        # this lock for the server's life (shared by the nodes), as a SQLite file's server
        # lock does.
        shared = "_shared" if self.session_name else ""
        locked = f"SELECT pg_try_advisory_lock{shared}($1)"
        if self.serving and not await conn.fetchval(locked, SERVER_LOCK):
            await conn.close()
            raise DatabaseInUse(f"database {shown(self.url)} is in use by another flowyard process")
        await migrate(conn)
        await conn.execute(
            "INSERT INTO meta (key, value) VALUES ('cursor_key', $1) ON CONFLICT (key) DO NOTHING",
            secrets.token_hex(32),
        )
        stored = await conn.fetchval("SELECT value FROM meta WHERE key = 'cursor_key'")
        self.cursor_key = bytes.fromhex(stored)
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self._reader_count, server_settings=self._settings()
        )

    # ----------------------------------------------------------------- the writer

    async def run_writer(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Write batches until :meth:`close_writer` and every write queued before it.

        Cancelled (at shutdown), it still writes what is queued, so that every caller hears
        how its write ended. If the writer itself breaks, every write still waiting is
        answered ``Unavailable`` and the error goes to the caller.
        """
        task_status.started()
        try:
            await self._write_loop()
        finally:
            self.close_writer()
            with anyio.CancelScope(shield=True):
                try:
                    await self._write_loop()  # after a cancellation: what is still queued
                finally:
                    left = list(self._waiting)
                    self._waiting.clear()
                    for request in left:
                        request.error = Unavailable("storage is unavailable: the writer stopped")
                    self._committed(left, [])

    async def _write_loop(self) -> None:
        """One transaction per batch of waiting requests, until closed and nothing waits."""
        failing = False
        while True:
            if not self._waiting:
                if self._closed:
                    return
                self._wake = wake = anyio.Event()
                if not failing:
                    await wake.wait()
                    continue
                with anyio.move_on_after(RETRY_SECONDS):
                    await wake.wait()
                if not self._waiting:
                    with anyio.CancelScope(shield=True):
                        failing = await self._probe()
                    continue
            batch = list(self._waiting)
            self._waiting.clear()
            began = perf_counter()
            try:
                # Shielded: a transaction once begun is finished, and its callers told.
                with anyio.CancelScope(shield=True):
                    outcomes = await self._write(batch)
            except BaseException:  # a bug here: answer the batch, then report it
                for request in batch:
                    request.error = Unavailable("storage is unavailable: the writer stopped")
                self._committed(batch, [])
                raise
            if self.metrics is not None:
                rows = sum(len(request.ops) for request in batch)
                self.metrics.committed(rows, perf_counter() - began)
            self._committed(batch, outcomes)
            failing = outcomes[-1] is not None and _is_storage_fault(outcomes[-1])

    async def _write(self, batch: list[CommitRequest]) -> list[Exception | None]:
        """Commit ``batch`` in one transaction; each attempt's error (None for success).

        If the transaction fails, each request is tried alone, so that one bad write cannot
        fail its neighbours; unless the database cannot be written at all: then each gets
        ``Unavailable`` without another try.
        """
        try:
            await self._transaction([op for request in batch for op in request.ops])
        except Exception as exc:
            if len(batch) > 1 and not _is_storage_fault(exc):
                return [outcome for request in batch for outcome in await self._write([request])]
            for request in batch:
                request.error = Unavailable(f"storage is unavailable: {exc}")
            return [exc]
        return [None]

    async def _transaction(self, ops: list[Op]) -> None:
        conn = await self._connection()
        steps = [(sql, [escaped(params) for params in rows]) for sql, rows in plan(ops)]
        fence = self.fence
        try:
            if fence is not None:
                await self._fenced(conn, fence, steps)
            elif len(steps) == 1 and len(steps[0][1]) == 1:
                sql, (params,) = steps[0]
                await conn.execute(sql, *params)  # one statement: a transaction of its own
            else:
                async with conn.transaction():
                    await _run(conn, steps)
        except Exception as exc:
            if _is_storage_fault(exc) and not isinstance(exc, Fenced):  # a new connection next
                conn.terminate()
                self._conn = None
            raise

    async def _fenced(
        self, conn: asyncpg.Connection, fence: tuple[str, int], steps: list[tuple[str, Any]]
    ) -> None:
        """A cluster node's transaction: it begins by holding the node's lease row (``FOR
        SHARE``) with its epoch, in the round trip of its ``BEGIN``, so that a node that lost
        its shards writes nothing, and a takeover waits for a transaction in flight."""
        node, epoch = fence
        quoted = node.replace("'", "''")
        try:
            await conn.execute(f"BEGIN; SELECT flowyard_fence('{quoted}', {int(epoch)})")
            await _run(conn, steps)
            await conn.execute("COMMIT")
        except BaseException as exc:
            if not conn.is_closed() and conn.is_in_transaction():
                with contextlib.suppress(Exception):  # the error that matters is ``exc``
                    await conn.execute("ROLLBACK")
            if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == FENCED:
                if self.on_fenced is not None:
                    self.on_fenced()
                raise Fenced("this node lost its shards to another node; retry") from None
            raise

    async def _connection(self) -> asyncpg.Connection:
        """The writer's connection, connected again if it was lost."""
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await self._connect()
        return self._conn

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url, server_settings=self._settings())

    def _settings(self) -> dict[str, str]:
        return {"application_name": self.session_name} if self.session_name else {}

    async def _probe(self) -> bool:
        """A one-row write that tells whether the database takes writes again; if it fails."""
        try:
            await self._transaction([(_PROBE, (str(now_ms()),))])
        except Exception as exc:
            self._committed([], [exc])
            return _is_storage_fault(exc)
        self._committed([], [None])
        return False

    # ----------------------------------------------------------------- the port

    def _statements(self, intents: list[Intent]) -> list[Op]:
        return all_statements(intents)

    def _enqueue(self, request: CommitRequest) -> None:
        self._waiting.append(request)
        if self._wake is not None:
            self._wake.set()

    def _is_storage_fault(self, exc: BaseException) -> bool:
        return _is_storage_fault(exc)

    def close_writer(self) -> None:
        """Stop taking writes; the writer finishes what is queued, then stops."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()

    async def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        replace: bool = False,
    ) -> None:
        """Load ``rows`` into ``table`` as they are (ids, ``seq`` and ``rowid`` included) with
        ``COPY``, in one transaction; ``replace``: a row replaces the one whose first column
        (the key) is the same.

        An identity column given its values keeps its sequence where it was: it is moved past
        the largest value, so that the next row the service inserts follows the copied ones.
        For ``flowyard db copy``: it writes on the writer's connection, so only while the
        writer is not running (after :meth:`open`, without :meth:`run_writer`).
        """
        conn = await self._connection()
        name = identifier(table)
        names = [identifier(column) for column in columns]
        rows = [escaped(row) for row in rows]
        async with conn.transaction():
            if replace:
                keys = [row[0] for row in rows]
                await conn.execute(f"DELETE FROM {name} WHERE {names[0]} = ANY($1)", keys)
            await conn.copy_records_to_table(name, records=rows, columns=names)
            for column in ("seq", "rowid"):
                if column in names:  # not an identity column (events.seq): setval(NULL) is NULL
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence($1, $2), top)"
                        f" FROM (SELECT max({column}) AS top FROM {name}) AS t"
                        f" WHERE top IS NOT NULL",
                        name,
                        column,
                    )

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read (``?`` parameters) on a reader connection; its rows as tuples."""
        assert self._pool is not None, "open() first"
        query = self._sql.get(sql)
        if query is None:
            query = self._sql[sql] = to_dollar(sql)
        rows = await self._pool.fetch(query, *escaped(params))
        return [unescaped(tuple(row)) for row in rows]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a read, or None."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Close every connection (call after the writer has stopped)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


async def other_sessions(url: str) -> int:
    """How many other client connections ``pg_stat_activity`` shows on ``url``'s database.

    Which of them is a server is not told apart: ``flowyard db copy`` wants none at all.
    PostgreSQL's own workers (autovacuum) are not clients and do not count.
    """
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    finally:
        await conn.close()
    return int(count)
