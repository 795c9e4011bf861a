"""The storage port: what the engines, actors and routes use of a database, whatever it is.

Two adapters implement it: :class:`flowyard.storage.sqlite.Database` (the embedded default)
and the PostgreSQL one (``--db postgresql://...``). Writes are typed intents
(:mod:`flowyard.storage.intents`), committed together with every other caller's waiting
intents (group commit), and a caller hears of its write only once it is durable. Reads are
SQL with ``?`` parameters in the subset both databases understand, and answer tuples.
"""

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from anyio.abc import TaskStatus

from flowyard.storage.intents import Intent


class CommitRequest(Protocol):
    """A submitted write: ``done`` resolves once it has been tried; ``error`` says how."""

    done: asyncio.Future[None]
    error: BaseException | None


class Store(Protocol):
    """A database as the service sees it."""

    cursor_key: bytes
    """Signs list cursors; stored in the database, so cursors survive restarts."""
    failure: str | None
    """Why the last write failed, until one succeeds again."""

    async def open(self) -> None:
        """Connect, apply pending migrations, load ``cursor_key``."""

    async def run_writer(self, *, task_status: TaskStatus[None]) -> None:
        """Run the group-commit writer until :meth:`close_writer` and every write queued."""

    def close_writer(self) -> None:
        """Take no more writes; the writer finishes what is queued, then stops."""

    async def commit(self, intents: list[Intent]) -> None:
        """Write ``intents`` in one transaction (shared with other callers'), durably.

        Raises:
            MailboxFull: too much is waiting already (503).
            Unavailable: the transaction failed; nothing of ``intents`` was written.
        """

    def submit(self, intents: list[Intent]) -> CommitRequest:
        """Queue ``intents`` for the next group commit without waiting for it."""

    def check_writable(self) -> None:
        """Raise ``Unavailable`` while the last write failed for want of a writable store."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read (never queued behind the writer)."""

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a read, or None."""

    async def close(self) -> None:
        """Close every connection (after the writer has stopped)."""
