"""Named queues: ready heaps (priority, then age), long-poll waiters, limits and pause.

A queue holds job ids only; the engine owns the jobs. Pull jobs (claimed by workers) and push
jobs (delivered by the dispatcher) may share a queue name, its settings and its counts, but
they wait on separate heaps, so a worker never claims a push job and a pull job never holds
up a delivery. An id on a heap may have gone stale (cancelled, claimed, re-timed):
:meth:`Queue.pop` skips entries its ``is_ready`` check rejects.
"""

import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

from flowyard.storage.jobs import QueueSettings

MAX_TOKEN_WAIT_MS = 86_400_000
"""The longest a push queue waits before checking its rate limit again."""

_counter = itertools.count()


class Queue:
    """One project's queue: ready jobs in claim order, who waits for them, and its limits."""

    def __init__(self, project_id: str, name: str, settings: QueueSettings | None = None) -> None:
        self.project_id = project_id
        self.name = name
        self.settings = settings or QueueSettings()
        self._ready: dict[bool, list[tuple[int, int, int, str]]] = {True: [], False: []}
        self._ready_ids: set[str] = set()
        self.pending: dict[str, int] = {}  # job id -> created_at
        self.running: set[str] = set()
        self._waiters: deque[anyio.Event] = deque()
        self._tokens = 0.0
        self._refilled_at = 0
        # A cluster node's: called when a pull job becomes ready that no waiter here takes,
        # once until the heap runs dry, so that the other nodes' claims come for it.
        self.on_ready: Callable[[Queue], None] | None = None
        self._announced = False

    def push(self, job_id: str, priority: int, created_at: int, *, pull: bool) -> None:
        """Make a job claimable (``pull``) or deliverable; a claimable one wakes one waiter."""
        if job_id in self._ready_ids:
            return
        self._ready_ids.add(job_id)
        heapq.heappush(self._ready[pull], (priority, created_at, next(_counter), job_id))
        if not pull or self.wake_one():
            return
        if self.on_ready is not None and not self._announced:
            self._announced = True
            self.on_ready(self)

    def announce_again(self) -> None:
        """Tell the other nodes again of the ready pull jobs here (a queue unpaused: their
        claims forgot this node while it was paused)."""
        self._announced = False
        if self._ready[True] and self.on_ready is not None:
            self._announced = True
            self.on_ready(self)

    def wake_one(self) -> bool:
        """Wake the longest-waiting claim, if any (a job became ready); whether one was."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.is_set():
                waiter.set()
                return True
        return False

    def pop(self, is_ready: Callable[[str], bool], *, pull: bool) -> str | None:
        """The next ready pull (or push) job id in priority-then-age order, or None."""
        heap = self._ready[pull]
        while heap:
            job_id = heapq.heappop(heap)[3]
            self._ready_ids.discard(job_id)
            if is_ready(job_id):
                return job_id
        if pull:
            self._announced = False  # dry: the next ready job is announced again
        return None

    def discard(self, job_id: str) -> None:
        """Forget a job that is no longer ready (its heap entry is skipped later)."""
        self._ready_ids.discard(job_id)

    @property
    def has_deliverable(self) -> bool:
        """Whether the push heap holds any entry (possibly stale)."""
        return bool(self._ready[False])

    def waiter(self) -> anyio.Event:
        """An event set when a job becomes ready here (for long-poll claims)."""
        event = anyio.Event()
        self._waiters.append(event)
        return event

    def expire(self, event: anyio.Event) -> None:
        """End a waiter's wait (its time is up): it leaves the line and is set."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(event)
        event.set()

    def forget_waiter(self, event: anyio.Event) -> None:
        """Drop a waiter that stopped waiting.

        A waiter leaves the line when it is set (by a job, :meth:`expire` or :meth:`wake_all`),
        so only one that was not, a cancelled claim, is looked for.
        """
        if not event.is_set():
            with contextlib.suppress(ValueError):
                self._waiters.remove(event)

    def wake_all(self) -> None:
        """Wake every waiter (shutdown)."""
        while self._waiters:
            self._waiters.popleft().set()

    def may_dispatch(self, now: int) -> bool:
        """Whether a push delivery may start now: not paused, under concurrency, under rate."""
        settings = self.settings
        if settings.paused:
            return False
        if settings.concurrency is not None and len(self.running) >= settings.concurrency:
            return False
        rate = settings.rate_limit_per_second
        if rate is None:
            return True
        self._refill(now, rate)
        return self._tokens >= 1.0

    def took_token(self) -> None:
        """Spend one rate-limit token (a delivery started)."""
        if self.settings.rate_limit_per_second is not None:
            self._tokens -= 1.0

    def next_token_ms(self, now: int) -> int:
        """When the rate limit next allows a delivery."""
        rate = self.settings.rate_limit_per_second or 1.0
        missing = max(0.0, 1.0 - self._tokens)
        # A tiny rate waits longer than a float can hold: look again after a day at most.
        return now + max(1, int(min(missing / rate * 1000, MAX_TOKEN_WAIT_MS)))

    def _refill(self, now: int, rate: float) -> None:
        capacity = max(1.0, rate)
        if self._refilled_at == 0:
            self._tokens = capacity
        else:
            self._tokens = min(capacity, self._tokens + (now - self._refilled_at) / 1000 * rate)
        self._refilled_at = now

    def view(self, now: int) -> dict[str, Any]:
        """The queue as ``GET /infra/queues`` shows it."""
        oldest = min(self.pending.values(), default=None)
        return {
            "name": self.name,
            "depth": len(self.pending),
            "running": len(self.running),
            "oldest_pending_age_seconds": (
                round(max(0, now - oldest) / 1000, 3) if oldest is not None else None
            ),
            "concurrency": self.settings.concurrency,
            "rate_limit_per_second": self.settings.rate_limit_per_second,
            "paused": self.settings.paused,
            "handler": self.settings.handler,
        }
