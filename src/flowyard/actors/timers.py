"""One timer service for every deadline: delays, backoff, leases, callbacks, cron, deadlines.

Timers are keyed: arming a key again replaces its earlier deadline, and cancelling a key
removes it, so a job that heartbeats for hours holds one lease timer, not one per heartbeat.
The heap drops replaced entries lazily (skipped when they surface) and is rebuilt from the
live keys whenever stale entries outnumber them, so its size stays within twice the number
of live keys. A timer that fires is still checked by its owner against current state.
Time comes from the :class:`~flowyard.clock.Clock` given at construction.
"""

import heapq
import itertools
from collections.abc import Callable, Hashable

import anyio
from anyio.abc import TaskStatus

from flowyard.clock import SYSTEM_CLOCK, Clock

COMPACT_MIN = 64
"""Below this many heap entries stale ones are left to surface on their own."""


class Timers:
    """A heap of keyed deadlines and the task that fires them."""

    def __init__(self, fire: Callable[[Hashable], None], clock: Clock = SYSTEM_CLOCK) -> None:
        self._fire = fire
        self.clock = clock
        self._heap: list[tuple[int, int, Hashable]] = []
        self._live: dict[Hashable, tuple[int, int]] = {}  # key -> (due, sequence) in force
        self._counter = itertools.count()
        self._wake = anyio.Event()

    def __len__(self) -> int:
        """How many keys are armed."""
        return len(self._live)

    @property
    def heap_size(self) -> int:
        """Entries on the heap, stale ones included (bounded by twice :func:`len` or so)."""
        return len(self._heap)

    def due(self, key: Hashable) -> int | None:
        """When ``key`` fires, or None if it is not armed."""
        entry = self._live.get(key)
        return entry[0] if entry is not None else None

    def arm(self, due_ms: int, key: Hashable) -> None:
        """Fire ``key`` at ``due_ms`` (or at once if that is past), replacing its earlier due."""
        heap, live = self._heap, self._live
        earliest = heap[0][0] if heap else None
        seq = next(self._counter)
        live[key] = (due_ms, seq)
        heapq.heappush(heap, (due_ms, seq, key))
        if len(heap) > 2 * len(live) and len(heap) > COMPACT_MIN:
            self._compact()
        if earliest is None or due_ms < earliest:
            self._wake.set()

    def cancel(self, key: Hashable) -> None:
        """Forget ``key`` (nothing if it is not armed); its heap entry is dropped lazily."""
        live = self._live
        if live.pop(key, None) is not None:
            heap = self._heap
            if len(heap) > 2 * len(live) and len(heap) > COMPACT_MIN:
                self._compact()

    def _compact(self) -> None:
        """Rebuild the heap from the live keys (stale entries outnumber them)."""
        self._heap = [(due, seq, key) for key, (due, seq) in self._live.items()]
        heapq.heapify(self._heap)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire timers as they fall due, forever."""
        task_status.started()
        heap, live = self._heap, self._live
        while True:
            now = self.clock.now_ms()
            heap = self._heap  # (a compaction replaces the list)
            while heap and heap[0][0] <= now:
                due, seq, key = heapq.heappop(heap)
                if live.get(key) == (due, seq):
                    del live[key]
                    self._fire(key)
                    heap = self._heap
            await self.clock.wait(self._wake, self._heap[0][0] if self._heap else None)
            self._wake = anyio.Event()
