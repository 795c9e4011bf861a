"""What both storage adapters share of group commit: the callers' side of a write.

A caller's intents become a :class:`CommitRequest` (turned into the adapter's statements at
once, on the event loop: an actor's next state may share parts with this one, and the writer
must not read them later). The adapter's writer takes every request waiting, writes them in one
transaction, and reports each one's outcome through :meth:`Committer._committed`, which wakes
the callers and keeps whether the store is failing. Only the writer itself differs: a thread on
the SQLite file, a task on one PostgreSQL connection.
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import anyio

from flowyard.errors import MailboxFull, Unavailable
from flowyard.metrics import Metrics
from flowyard.storage.intents import Intent

log = logging.getLogger("flowyard.storage")

MAX_WAITING = 100_000
"""Writes submitted and not yet answered beyond which :meth:`Committer.submit` refuses more."""


class CommitRequest:
    """Writes waiting for a group commit, and how they ended once ``done`` is resolved."""

    __slots__ = ("done", "error", "ops")

    def __init__(self, ops: Sequence[Any]) -> None:
        self.ops = ops
        # A plain future, resolved on the loop: the cheapest thing to wait on, once per request.
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: BaseException | None = None


class Committer:
    """The callers' side of an adapter's group-commit writer.

    Subclasses say how intents become their statements, how a request reaches their writer,
    and which errors mean that the store cannot be written (rather than that one write is bad).
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        # The server's: each transaction's rows and time, and the writes refused when full.
        self.metrics = metrics
        self.failure: str | None = None  # why the last write failed, until one succeeds again
        self._unanswered = 0  # requests submitted and not yet answered
        self._closed = False

    def _statements(self, intents: list[Intent]) -> Sequence[Any]:
        raise NotImplementedError

    def _enqueue(self, request: CommitRequest) -> None:
        raise NotImplementedError

    def _is_storage_fault(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def check_writable(self) -> None:
        """Raise ``Unavailable`` while the last write failed for want of a writable store."""
        if self.failure is not None:
            raise Unavailable(f"storage is failing: {self.failure}")

    async def commit(self, intents: list[Intent]) -> None:
        """Write ``intents`` in one transaction (shared with other callers'), durably.

        Raises:
            MailboxFull: the writer has too much waiting; the caller should answer 503.
            Unavailable: the transaction failed; nothing of ``intents`` was written.
        """
        if not intents:
            return
        request = self.submit(intents)
        try:
            await asyncio.shield(request.done)
        except anyio.get_cancelled_exc_class():
            # Once queued, the write happens: let the cancellation through only once it has,
            # so that memory and the store never disagree about what was committed.
            with anyio.CancelScope(shield=True):
                await asyncio.shield(request.done)
            raise
        if request.error is not None:
            raise request.error

    def submit(self, intents: list[Intent]) -> CommitRequest:
        """Queue ``intents`` for the next group commit without waiting for it.

        For writes nobody waits on: they are committed in submission order, before anything
        submitted later, and a failure is logged by the writer.
        """
        if self._closed:
            raise Unavailable("shutting down")
        if self._unanswered >= MAX_WAITING:
            if self.metrics is not None:
                self.metrics.mailbox_full.inc()
            raise MailboxFull("the writer is overloaded")
        request = CommitRequest(self._statements(intents))
        self._unanswered += 1
        self._enqueue(request)
        return request

    def _committed(self, batch: list[CommitRequest], outcomes: list[Exception | None]) -> None:
        """Wake the callers of a batch and keep the storage state (on the event loop)."""
        for outcome in outcomes:
            if outcome is None:
                self._record_success()
            else:
                self._record_failure(outcome)
        self._unanswered -= len(batch)
        for request in batch:
            if not request.done.done():
                request.done.set_result(None)

    def _record_failure(self, exc: Exception) -> None:
        if not self._is_storage_fault(exc):
            log.error("commit failed", exc_info=exc)
            return
        if self.failure is None:
            log.error("storage is failing; writes answer 503 until it recovers", exc_info=exc)
        else:
            log.debug("storage is still failing: %s", exc)
        self.failure = str(exc) or type(exc).__name__

    def _record_success(self) -> None:
        if self.failure is not None:
            log.warning("storage takes writes again (it was failing: %s)", self.failure)
            self.failure = None
