"""Prefixed ULID identifiers (``job_01J...``) and random secrets."""

import base64
import os
import secrets
import time
from typing import Any

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two Crockford base32 digits for every 10-bit value: a ULID is 13 lookups.
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]


class _RandomPool:
    """Bytes from ``os.urandom`` drawn 4 KiB at a time: one system call per ~400 ids."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._buffer = b""
        self._offset = 0

    def take(self, count: int) -> bytes:
        if self._offset + count > len(self._buffer):
            self._buffer = os.urandom(max(self._size, count))
            self._offset = 0
        start = self._offset
        self._offset += count
        return self._buffer[start : self._offset]


_random = _RandomPool()


def random_bytes(count: int) -> bytes:
    """``count`` cryptographically random bytes (from a pooled ``os.urandom`` draw)."""
    return _random.take(count)


def url_token(count: int = 18) -> str:
    """A URL-safe random token of ``count`` random bytes: base64 with ``.`` and ``_`` for its
    last two digits, so that it never begins with ``-`` (a command line would take it for an
    option: ``flowyard jobs ack ID --claim-token TOKEN``)."""
    return base64.b64encode(_random.take(count), altchars=b"._").rstrip(b"=").decode()


def ulid() -> str:
    """A 26-character ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32.

    The 48 bits of time fill 10 digits (the top two bits are zero), the 80 random bits 16.
    """
    ms = time.time_ns() // 1_000_000
    if ms != _time_digits[0]:
        _time_digits[:] = [ms, "".join([_PAIRS[(ms >> s) & 1023] for s in (40, 30, 20, 10, 0)])]
    r = int.from_bytes(_random.take(10), "big")
    digits: str = _time_digits[1]
    return (
        digits
        + _PAIRS[r >> 70]
        + _PAIRS[(r >> 60) & 1023]
        + _PAIRS[(r >> 50) & 1023]
        + _PAIRS[(r >> 40) & 1023]
        + _PAIRS[(r >> 30) & 1023]
        + _PAIRS[(r >> 20) & 1023]
        + _PAIRS[(r >> 10) & 1023]
        + _PAIRS[r & 1023]
    )


_time_digits: list[Any] = [-1, ""]  # the last millisecond seen and its 10 digits (str)


def new_id(prefix: str) -> str:
    """An identifier such as ``job_01JNXS...``."""
    return f"{prefix}_{ulid()}"


def base62_token(length: int = 40) -> str:
    """A random string of base62 characters, for keys and secrets."""
    return "".join(secrets.choice(_BASE62) for _ in range(length))
