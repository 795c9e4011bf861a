"""Prefixed ULID identifiers (``job_01J...``) and random secrets."""

import base64
import os
import secrets
import time

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 4648 base32 digits mapped to Crockford's, which ULIDs use.
_TO_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def ulid() -> str:
    """A 26-character ULID: 48 bits of milliseconds then 80 random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    # 20 bytes are 32 base32 digits; the last 26 hold the 128 bits (the first 6 are zero).
    return base64.b32encode(value.to_bytes(20, "big"))[6:].translate(_TO_CROCKFORD).decode()


def new_id(prefix: str) -> str:
    """An identifier such as ``job_01JNXS...``."""
    return f"{prefix}_{ulid()}"


def base62_token(length: int = 40) -> str:
    """A random string of base62 characters, for keys and secrets."""
    return "".join(secrets.choice(_BASE62) for _ in range(length))
