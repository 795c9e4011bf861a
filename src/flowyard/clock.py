"""Time as integer milliseconds since the epoch, and its RFC 3339 rendering."""

import functools
import time
from datetime import UTC, datetime


def now_ms() -> int:
    """The wall clock in milliseconds."""
    return time.time_ns() // 1_000_000


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
