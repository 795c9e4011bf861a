"""Counted places for jobs: how many a worker (or one of its queues) may still hold."""

import math

import anyio


class Slots:
    """Free places for jobs: ``take`` waits for at least one and takes up to ``most``.

    Used from one event loop only; ``capacity=None`` never runs out.
    """

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = anyio.Event()

    @property
    def free(self) -> float:
        return math.inf if self.capacity is None else self.capacity - self.used

    async def take(self, most: int) -> int:
        """Wait for a free place, then take as many as are free, up to ``most``."""
        while self.free < 1:
            await self._changed.wait()
        taken = int(min(most, self.free))
        self.used += taken
        return taken

    def take_nowait(self, most: int) -> int:
        """Take as many places as are free now, up to ``most`` (possibly none)."""
        taken = int(max(0, min(most, self.free)))
        self.used += taken
        return taken

    def give(self, count: int) -> None:
        """Give back ``count`` places (0 is a no-op)."""
        if count:
            self.used -= count
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_empty(self) -> None:
        """Wait until every place is free."""
        while self.used:
            await self._changed.wait()
