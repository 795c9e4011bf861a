"""The database: one writer thread that group-commits, and read connections of their own.

Every write goes through :meth:`Database.commit`. The writer thread takes every request
waiting in its queue, applies them all in one transaction, fsyncs once (``synchronous=FULL``)
and only then wakes the callers, so an acknowledged write survives ``kill -9``. A transaction
that fails (disk full, file read-only, I/O error) is rolled back and its callers get
``Unavailable``; the writer then probes the file until a write succeeds again.

The writer is a thread of its own rather than a task on the event loop: as soon as one
transaction is committed it starts the next one with whatever arrived meanwhile, without
waiting for the event loop to get round to it. A busy loop would otherwise leave SQLite idle
for as long as it takes to wake the last transaction's callers.
"""

import asyncio
import contextlib
import itertools
import logging
import queue
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

import aiosqlite
import anyio
from anyio.abc import TaskStatus

from flowyard.clock import now_ms
from flowyard.errors import Unavailable
from flowyard.metrics import Metrics
from flowyard.storage.commits import CommitRequest, Committer
from flowyard.storage.sqlite_statements import FREQUENT, all_statements
from flowyard.storage.writer import PRAGMAS, Writer, synchronous

log = logging.getLogger("flowyard.storage")


RETRY_SECONDS = 1.0
"""While storage is failing: how often the idle writer probes it, and how long work it refused
(a delivery's start, a lease expiry, a deadline) waits before it is tried again."""
RETRY_MS = int(RETRY_SECONDS * 1000)

_PROBE = "INSERT OR REPLACE INTO meta (key, value) VALUES ('writable_at', ?)"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def identifier(name: str) -> str:
    """``name`` if it is a plain lower-case table or column name (spliced into SQL as is)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL name: {name!r}")
    return name


async def _connect(path: str, sync: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    for pragma in (*PRAGMAS, synchronous(sync)):
        await conn.execute(pragma)
    return conn


def _is_storage_fault(exc: BaseException) -> bool:
    """Whether a failed write says the file cannot be written (rather than one bad write).

    ``OperationalError`` is SQLite's word for disk full, read-only, I/O errors and locks;
    a constraint violation (``IntegrityError``) concerns one request only.
    """
    return isinstance(exc, sqlite3.OperationalError)


class Database(Committer):
    """The SQLite file: a group-commit writer thread and a small pool of readers."""

    def __init__(
        self, path: str, *, sync: str = "full", readers: int = 2, metrics: Metrics | None = None
    ) -> None:
        self.path = path
        self.sync = sync
        self._reader_count = readers
        self._writer: Writer | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader = itertools.cycle(range(readers))
        # Requests for the writer thread, and None once no more will come.
        super().__init__(metrics)
        self._queue: queue.SimpleQueue[CommitRequest | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Signs list cursors; ``open`` replaces it with the one stored in the file, so that
        # cursors stay valid across restarts.
        self.cursor_key = secrets.token_bytes(32)

    async def open(self) -> None:
        """Open the writer (applying migrations), then the readers."""
        self._writer = writer = await anyio.to_thread.run_sync(
            Writer.open, self.path, self.sync, FREQUENT
        )
        conn = writer.conn
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('cursor_key', ?)",
            (secrets.token_hex(32),),
        )
        stored = conn.execute("SELECT value FROM meta WHERE key = 'cursor_key'").fetchone()
        self.cursor_key = bytes.fromhex(stored[0]) if stored else self.cursor_key
        for _ in range(self._reader_count):
            self._readers.append(await _connect(self.path, self.sync))

    async def run_writer(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the writer thread until :meth:`close_writer` and every write queued before it.

        Cancelled (at shutdown), it still lets the thread finish what is queued, so that
        every caller hears how its write ended. If the thread itself breaks, every write
        still waiting is answered ``Unavailable`` and the error goes to the caller.
        """
        self._loop = asyncio.get_running_loop()
        stopped = anyio.Event()
        crash: list[BaseException] = []
        thread = threading.Thread(
            target=self._write_loop, args=(stopped, crash), name="flowyard-writer", daemon=True
        )
        thread.start()
        task_status.started()
        try:
            await stopped.wait()
        finally:
            self.close_writer()
            with anyio.CancelScope(shield=True):
                await stopped.wait()
            # Only after a crash can writes be left: the thread stopped before their turn.
            left: list[CommitRequest] = []
            self._take_waiting(left)
            for request in left:
                request.error = Unavailable("storage is unavailable: the writer has stopped")
            self._committed(left, [])
        if crash:
            raise crash[0]

    # ----------------------------------------------------------------- the writer thread

    def _write_loop(self, stopped: anyio.Event, crash: list[BaseException]) -> None:
        """The writer thread: one transaction per batch of waiting requests, until None."""
        batch: list[CommitRequest] = []
        failing = False
        try:
            while True:
                try:
                    first = self._queue.get(timeout=RETRY_SECONDS if failing else None)
                except queue.Empty:
                    failing = self._probe()
                    continue
                if first is None:
                    break
                batch = [first]
                end = self._take_waiting(batch)
                began = perf_counter()
                outcomes = self._write(batch)
                if self.metrics is not None:
                    rows = sum(len(request.ops) for request in batch)
                    self.metrics.committed(rows, perf_counter() - began)
                self._post(self._committed, batch, outcomes)
                batch = []
                failing = outcomes[-1] is not None and _is_storage_fault(outcomes[-1])
                if end:
                    break
        except BaseException as exc:  # a bug here: answer everyone, then report it
            crash.append(exc)
            self._take_waiting(batch)
            for request in batch:
                request.error = Unavailable("storage is unavailable: the writer has stopped")
            self._post(self._committed, batch, [])
        finally:
            self._post(stopped.set)

    def _take_waiting(self, batch: list[CommitRequest]) -> bool:
        """Add every request waiting now to ``batch``; whether the end (None) came too."""
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return False
            if request is None:
                return True
            batch.append(request)

    def _write(self, batch: list[CommitRequest]) -> list[Exception | None]:
        """Commit ``batch`` in one transaction; each attempt's error (None for success).

        If the transaction fails, each request is tried alone, so that one bad write
        cannot fail its neighbours.
        """
        writer = self._writer
        assert writer is not None
        try:
            writer.write([op for request in batch for op in request.ops])
        except Exception as exc:
            if len(batch) > 1:
                return [outcome for request in batch for outcome in self._write([request])]
            batch[0].error = Unavailable(f"storage is unavailable: {exc}")
            return [exc]
        return [None]

    def _probe(self) -> bool:
        """A one-row write that tells whether the file takes writes again; whether it fails."""
        writer = self._writer
        assert writer is not None
        try:
            writer.write([(_PROBE, (str(now_ms()),))])
        except Exception as exc:
            self._post(self._committed, [], [exc])
            return _is_storage_fault(exc)
        self._post(self._committed, [], [None])
        return False

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the event loop (from the writer thread)."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(callback, *args)

    # ----------------------------------------------------------------- on the event loop

    _statements = staticmethod(all_statements)

    def _enqueue(self, request: CommitRequest) -> None:
        self._queue.put(request)

    def _is_storage_fault(self, exc: BaseException) -> bool:
        return _is_storage_fault(exc)

    def close_writer(self) -> None:
        """Stop taking writes; the writer finishes what is queued, then stops."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    async def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        replace: bool = False,
    ) -> None:
        """Load ``rows`` into ``table`` as they are (ids, ``seq`` and ``rowid`` included), in
        one transaction; ``replace``: a row replaces the one with the same key.

        For ``flowyard db copy``: it writes on the writer's connection, so only while the
        writer is not running (after :meth:`open`, without :meth:`run_writer`).
        """
        writer = self._writer
        assert writer is not None, "open() first"
        names = ", ".join(identifier(column) for column in columns)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        marks = ", ".join("?" * len(columns))
        sql = f"{verb} INTO {identifier(table)} ({names}) VALUES ({marks})"

        def load() -> None:
            conn = writer.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await anyio.to_thread.run_sync(load)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read on a reader connection (never queued behind the writer)."""
        conn = self._readers[next(self._next_reader)]
        rows = await conn.execute_fetchall(sql, params)
        return [tuple(row) for row in rows]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a read, or None."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Close every connection (call after the writer has stopped)."""
        for reader in self._readers:
            await reader.close()
        self._readers.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
