"""A clock that moves only when a test advances it: timer tests without real sleeps."""

import time

import anyio
from anyio.lowlevel import checkpoint


class FakeClock:
    """Implements :class:`flowyard.clock.Clock`; :meth:`advance` wakes what waits for time."""

    def __init__(self, start_ms: int | None = None) -> None:
        # From the real time by default: what the HTTP layer stamps stays close to it.
        self._now = time.time_ns() // 1_000_000 if start_ms is None else start_ms
        self._sleepers: dict[anyio.Event, int] = {}

    def now_ms(self) -> int:
        return self._now

    def monotonic(self) -> float:
        return self._now / 1000

    def advance(self, *, seconds: float = 0, ms: int = 0) -> None:
        """Move time forward and wake every waiter whose time has come."""
        self._now += ms + round(seconds * 1000)
        for event, until in list(self._sleepers.items()):
            if until <= self._now:
                event.set()

    async def wait(self, wake: anyio.Event, until_ms: int | None) -> None:
        if until_ms is not None and until_ms <= self._now:
            await checkpoint()
            return
        if until_ms is not None:
            self._sleepers[wake] = until_ms
        try:
            await wake.wait()
        finally:
            self._sleepers.pop(wake, None)
