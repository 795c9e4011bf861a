"""Prefixed ULID identifiers (``job_01J...``) and random secrets."""

import os
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def ulid() -> str:
    """A 26-character ULID: 48 bits of milliseconds then 80 random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """An identifier such as ``job_01JNXS...``."""
    return f"{prefix}_{ulid()}"


def base62_token(length: int = 40) -> str:
    """A random string of base62 characters, for keys and secrets."""
    return "".join(secrets.choice(_BASE62) for _ in range(length))
