"""Prefixed ULID identifiers (``job_01J...``) and random secrets."""

import base64
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two Crockford base32 digits for every 10-bit value: a timestamp is 5 lookups.
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
# Each byte's low 5 bits as a Crockford digit: 256 is a multiple of 32, so a uniform byte
# gives a uniform digit.
_CROCKFORD_OF_BYTE = bytes(ord(_CROCKFORD[value & 31]) for value in range(256))


def _crockford(data: bytes) -> str:
    return data.translate(_CROCKFORD_OF_BYTE).decode("ascii")


def _base64(data: bytes) -> str:
    # ``.`` and ``_`` for the last two digits, so that a token never begins with ``-`` (a
    # command line would take it for an option: ``flowyard jobs ack ID --claim-token T``).
    return base64.b64encode(data, altchars=b"._").decode("ascii")


class _RandomText:
    """Random characters of one alphabet, encoded from ``os.urandom`` about 4 KiB at a time:
    an id or a token is then a slice, not an encoding of its own (one system call and one
    encoding per few hundred of them)."""

    def __init__(self, encode: Callable[[bytes], str], size: int) -> None:
        self._encode = encode
        self._size = size
        self._text = ""
        self._offset = 0

    def take(self, count: int) -> str:
        start = self._offset
        end = start + count
        if end > len(self._text):
            self._text = self._encode(os.urandom(max(self._size, count)))
            start, end = 0, count
        self._offset = end
        return self._text[start:end]


_random_digits = _RandomText(_crockford, 4096)  # 5 random bits a character
_random_base64 = _RandomText(_base64, 4095)  # 6 random bits a character (no padding)


def random_bytes(count: int) -> bytes:
    """``count`` cryptographically random bytes."""
    return os.urandom(count)


def url_token(count: int = 18) -> str:
    """A URL-safe random token of ``count`` random bytes: base64 with ``.`` and ``_`` for its
    last two digits, so that it never begins with ``-`` (a command line would take it for an
    option: ``flowyard jobs ack ID --claim-token TOKEN``)."""
    if count % 3 == 0:
        return _random_base64.take(count // 3 * 4)
    return _base64(os.urandom(count)).rstrip("=")


def ulid() -> str:
    """A 26-character ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32.

    The 48 bits of time fill 10 digits (the top two bits are zero), the 80 random bits 16.
    """
    return _time_digits(time.time_ns() // 1_000_000) + _random_digits.take(16)


def _time_digits(ms: int) -> str:
    """The 10 digits of a millisecond timestamp: the first 8 change once in 1,024 ms."""
    high = ms >> 10
    if high != _high_digits[0]:
        _high_digits[:] = [high, "".join([_PAIRS[(high >> s) & 1023] for s in (30, 20, 10, 0)])]
    digits: str = _high_digits[1]
    return digits + _PAIRS[ms & 1023]


_high_digits: list[Any] = [-1, ""]  # the last ``ms >> 10`` seen and its 8 digits


def new_id(prefix: str, pair: str = "") -> str:
    """An identifier such as ``job_01JNXS...``; ``pair``, if given, its first two random
    digits (a cluster's shard: ``cluster/shards.py``)."""
    ms = time.time_ns() // 1_000_000
    high = ms >> 10
    if high != _high_digits[0]:
        _time_digits(ms)
    digits: str = _high_digits[1]
    return prefix + "_" + digits + _PAIRS[ms & 1023] + pair + _random_digits.take(16 - len(pair))


def base62_token(length: int = 40) -> str:
    """A random string of base62 characters, for keys and secrets."""
    return "".join(secrets.choice(_BASE62) for _ in range(length))
