"""One timer service for every deadline: delays, backoff, leases, callbacks, cron, deadlines.

Timers are (due, key) entries on a heap. Nothing is ever removed: when a timer fires, its owner
checks the key against current state and ignores it if it no longer applies.
"""

import heapq
import itertools
from collections.abc import Callable, Hashable

import anyio
from anyio.abc import TaskStatus

from flowyard.clock import now_ms


class Timers:
    """A heap of deadlines and the task that fires them."""

    def __init__(self, fire: Callable[[Hashable], None]) -> None:
        self._fire = fire
        self._heap: list[tuple[int, int, Hashable]] = []
        self._counter = itertools.count()
        self._wake = anyio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def arm(self, due_ms: int, key: Hashable) -> None:
        """Fire ``key`` at ``due_ms`` (or at once if that is past)."""
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (due_ms, next(self._counter), key))
        if earliest is None or due_ms < earliest:
            self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire timers as they fall due, forever."""
        task_status.started()
        while True:
            now = now_ms()
            while self._heap and self._heap[0][0] <= now:
                _, _, key = heapq.heappop(self._heap)
                self._fire(key)
            delay = (self._heap[0][0] - now) / 1000 if self._heap else None
            with anyio.move_on_after(delay):
                await self._wake.wait()
            self._wake = anyio.Event()
