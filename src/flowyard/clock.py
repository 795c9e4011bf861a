"""Time as integer milliseconds since the epoch, its RFC 3339 rendering, and the clock object.

Everything that schedules (timers, leases, cron, backoff, rate buckets) reads time from one
:class:`Clock` passed in by the supervisor, so that tests can drive it with a clock they
advance by hand instead of sleeping in real time.
"""

import functools
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the pure core imports this module: no async library at run time
    import anyio


def now_ms() -> int:
    """The wall clock in milliseconds."""
    return time.time_ns() // 1_000_000


class Clock(Protocol):
    """Where the engines read the time, and how they wait for it to pass."""

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for rate buckets)."""
        ...

    async def wait(self, wake: "anyio.Event", until_ms: int | None) -> None:
        """Return once ``wake`` is set or the clock reaches ``until_ms`` (None: never)."""
        ...


class SystemClock:
    """The real clock: the operating system's wall and monotonic clocks."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, wake: "anyio.Event", until_ms: int | None) -> None:
        import anyio  # here: the pure core imports this module, and only the shell waits

        delay = None if until_ms is None else max(0, until_ms - self.now_ms()) / 1000
        with anyio.move_on_after(delay):
            await wake.wait()


SYSTEM_CLOCK = SystemClock()


def rfc3339(ms: int | None) -> str | None:
    """``2026-11-23T10:00:00.000Z`` for a millisecond timestamp, None for None."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    return _second(seconds) + _MILLIS[millis]


_MILLIS = [f"{millis:03d}Z" for millis in range(1000)]
"""``000Z`` to ``999Z``: a format with a width costs more than the rest of a timestamp."""


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
