"""The database: one writer that group-commits, and read connections of their own.

Every write goes through :meth:`Database.commit`. The writer task takes every request
waiting in its mailbox, applies them all in one transaction, fsyncs once (``synchronous=FULL``)
and only then wakes the callers, so an acknowledged write survives ``kill -9``. A transaction
that fails (disk full, file read-only, I/O error) is rolled back and its callers get
``Unavailable``; the writer then probes the file until a write succeeds again.
"""

import itertools
import logging
import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from flowyard.clock import now_ms
from flowyard.errors import MailboxFull, Unavailable
from flowyard.storage.migrations import pending_migrations

log = logging.getLogger("flowyard.storage")

Op = tuple[str, Sequence[Any]]
"""One SQL statement and its parameters."""

RETRY_SECONDS = 1.0
"""While storage is failing: how often the idle writer probes it, and how long work it refused
(a delivery's start, a lease expiry, a deadline) waits before it is tried again."""
RETRY_MS = int(RETRY_SECONDS * 1000)

_PROBE = "INSERT OR REPLACE INTO meta (key, value) VALUES ('writable_at', ?)"


class _CommitRequest:
    """Writes waiting for a group commit; ``done`` is shared by every request of the batch."""

    __slots__ = ("done", "error", "ops")

    def __init__(self, ops: list[Op], done: anyio.Event) -> None:
        self.ops = ops
        self.done = done
        self.error: BaseException | None = None


async def _connect(path: str, sync: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
    await conn.execute("PRAGMA busy_timeout=5000")
    await conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def _transaction(conn: sqlite3.Connection, ops: list[Op]) -> None:
    _rollback(conn)  # a transaction a failed ROLLBACK left open would block every later one
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, group in itertools.groupby(ops, key=lambda op: op[0]):
            conn.executemany(sql, [params for _, params in group])
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (SQLITE_FULL does); the first error is the story.
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.warning("rollback failed; the next transaction retries it", exc_info=True)


def _is_storage_fault(exc: BaseException) -> bool:
    """Whether a failed write says the file cannot be written (rather than one bad write).

    ``OperationalError`` is SQLite's word for disk full, read-only, I/O errors and locks;
    a constraint violation (``IntegrityError``) concerns one request only.
    """
    return isinstance(exc, sqlite3.OperationalError)


class Database:
    """The SQLite file: a group-commit writer and a small pool of readers."""

    def __init__(self, path: str, *, sync: str = "full", readers: int = 2) -> None:
        self.path = path
        self.sync = sync
        self._reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader = itertools.cycle(range(readers))
        send, receive = anyio.create_memory_object_stream[_CommitRequest](100_000)
        self._send: MemoryObjectSendStream[_CommitRequest] = send
        self._receive: MemoryObjectReceiveStream[_CommitRequest] = receive
        self._batch_done = anyio.Event()  # set when the requests queued so far are committed
        self.failure: str | None = None  # why the last write failed, until one succeeds again
        self.commits = 0
        self.statements = 0
        # Signs list cursors; ``open`` replaces it with the one stored in the file, so that
        # cursors stay valid across restarts.
        self.cursor_key = secrets.token_bytes(32)

    async def open(self) -> None:
        """Open the writer, apply migrations, then open the readers."""
        self._writer = await _connect(self.path, self.sync)
        async with self._writer.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        for number, script in pending_migrations(version):
            await self._writer.executescript(
                f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;"
            )
        await self._writer.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('cursor_key', ?)",
            (secrets.token_hex(32),),
        )
        async with self._writer.execute("SELECT value FROM meta WHERE key = 'cursor_key'") as rows:
            stored = await rows.fetchone()
        self.cursor_key = bytes.fromhex(stored[0]) if stored else self.cursor_key
        for _ in range(self._reader_count):
            self._readers.append(await _connect(self.path, self.sync))

    async def run_writer(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The writer loop: run until the mailbox is closed and drained.

        If the loop itself breaks, every write still waiting is answered ``Unavailable``
        instead of being left to wait forever, and the error goes to the caller.
        """
        task_status.started()
        done = self._batch_done
        batch: list[_CommitRequest] = []
        try:
            while True:
                try:
                    first = await self._next_request()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                if first is None:
                    with anyio.CancelScope(shield=True):
                        await self._probe()
                    continue
                # Everything queued now shares this event; later requests get a fresh one.
                done, self._batch_done = self._batch_done, anyio.Event()
                batch = [first]
                while True:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                with anyio.CancelScope(shield=True):
                    await self._commit_batch(batch)
                batch = []
                done.set()
        finally:
            self._fail_waiting(batch, done)

    async def _next_request(self) -> _CommitRequest | None:
        """The next write; None when storage is failing and a probe is due instead."""
        with anyio.move_on_after(RETRY_SECONDS if self.failure else None):
            return await self._receive.receive()
        return None

    def _fail_waiting(self, unfinished: list[_CommitRequest], done: anyio.Event) -> None:
        """The loop ended: answer whatever is still queued, so that no caller waits forever.

        ``unfinished`` is a batch the loop broke out of: its outcome is unknown, so its callers
        are told it failed (never that it committed).
        """
        self._send.close()
        while True:
            try:
                unfinished.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        for request in unfinished:
            request.error = request.error or Unavailable(
                "storage is unavailable: the writer has stopped"
            )
            request.done.set()
        self._receive.close()
        done.set()
        self._batch_done.set()

    async def _commit_batch(self, batch: list[_CommitRequest]) -> None:
        try:
            await self._apply([op for request in batch for op in request.ops])
        except Exception as exc:
            if len(batch) == 1:
                self._record_failure(exc)
                batch[0].error = Unavailable(f"storage is unavailable: {exc}")
            else:
                # Isolate the failing request so that one bad write cannot fail its neighbours.
                for request in batch:
                    await self._commit_batch([request])
        else:
            self._record_success()

    async def _probe(self) -> None:
        """A one-row write that tells whether the file takes writes again."""
        try:
            await self._apply([(_PROBE, (str(now_ms()),))])
        except Exception as exc:
            self._record_failure(exc)
        else:
            self._record_success()

    def _record_failure(self, exc: Exception) -> None:
        if not _is_storage_fault(exc):
            log.error("commit failed", exc_info=exc)
            return
        if self.failure is None:
            log.error("storage is failing; writes answer 503 until it recovers", exc_info=exc)
        else:
            log.debug("storage is still failing: %s", exc)
        self.failure = str(exc)

    def _record_success(self) -> None:
        if self.failure is not None:
            log.warning("storage takes writes again (it was failing: %s)", self.failure)
            self.failure = None

    def check_writable(self) -> None:
        """Raise ``Unavailable`` while the last write failed for want of a writable file."""
        if self.failure is not None:
            raise Unavailable(f"storage is failing: {self.failure}")

    async def _apply(self, ops: list[Op]) -> None:
        conn = self._writer
        assert conn is not None
        # One hop to the connection's thread for the whole transaction: the event loop is not
        # needed between BEGIN and COMMIT, so nothing on the loop can stall a held write lock.
        await conn._execute(_transaction, conn._conn, ops)  # type: ignore[no-untyped-call]
        self.commits += 1
        self.statements += len(ops)

    async def commit(self, ops: list[Op]) -> None:
        """Write ``ops`` in one transaction (shared with other callers'), durably.

        Raises:
            MailboxFull: the writer has too much waiting; the caller should answer 503.
            Unavailable: the transaction failed; nothing of ``ops`` was written.
        """
        if not ops:
            return
        request = self.submit(ops)
        # Once queued, the write happens: wait for it even if the caller is being cancelled,
        # so that memory and disk never disagree about what was committed.
        with anyio.CancelScope(shield=True):
            await request.done.wait()
        if request.error is not None:
            raise request.error

    def submit(self, ops: list[Op]) -> _CommitRequest:
        """Queue ``ops`` for the next group commit without waiting for it.

        For writes nobody waits on: they are committed in submission order, before anything
        submitted later, and a failure is logged by the writer.
        """
        request = _CommitRequest(ops, self._batch_done)
        try:
            self._send.send_nowait(request)
        except anyio.WouldBlock:
            raise MailboxFull("the writer is overloaded") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise Unavailable("shutting down") from None
        return request

    def close_writer(self) -> None:
        """Stop taking writes; the writer loop finishes what is queued, then returns."""
        self._send.close()

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
        """Close every connection (call after the writer loop has returned)."""
        for conn in [*self._readers, self._writer]:
            if conn is not None:
                await conn.close()
        self._readers.clear()
        self._writer = None
