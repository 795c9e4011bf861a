"""API keys on requests: ``Authorization: Bearer`` or ``X-API-Key``.

Keys are looked up by their SHA-256 hash and the stored hash is compared in constant time.
A small cache (one second) keeps the hot path off SQLite while revocations still apply at once
for keys revoked through this process and within a second for keys revoked by the CLI.

Anyone can send a credential, so what it costs is bounded before any key is known: one longer
than :data:`MAX_CREDENTIAL` characters (a real key is about 40) is refused without hashing or
looking it up; the cache holds digests, never the credentials sent; and keys found and
credentials not found are cached apart, each up to :data:`CACHE_SIZE` entries (the oldest go
first), so a stream of made-up credentials neither grows memory nor pushes real keys out and
sends their requests to SQLite. Each refused credential costs at most one indexed look-up.
The last credential hashed is kept with its digest, one pair, so that a run of requests with
the same key (a worker's) hashes it once; it is compared in constant time.

A key's ``last_used_at`` is kept in memory on every use and written behind at most once a
minute per key, so that a request costs no write of its own.
"""

import hmac
import time
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Scope

from flowyard.clock import now_ms
from flowyard.errors import Unauthorized, Unavailable
from flowyard.http.headers import header
from flowyard.storage.port import Store
from flowyard.storage.projects import ApiKey, hash_key, key_by_hash, touch_key

_V = TypeVar("_V")

CACHE_SECONDS = 1.0
CACHE_SIZE = 4096
"""Entries of each cache: keys found, and credentials not found."""
MAX_CREDENTIAL = 256
"""The longest credential looked up; a longer one is 401 at once."""
TOUCH_MS = 60_000
"""How stale a key's stored ``last_used_at`` may get while the key is in use."""


class Authenticator:
    """Turns a request's key into the :class:`ApiKey` it names, or raises 401/403."""

    def __init__(self, db: Store) -> None:
        self.db = db
        self._found: dict[str, tuple[float, ApiKey]] = {}  # digest -> (when, key)
        self._unknown: dict[str, float] = {}  # digest -> when it was not found
        self._generation = 0  # bumped by forget(): a look-up begun before it is not cached
        self._used: dict[str, int] = {}  # key id -> last use in this process (ms)
        self._written: dict[str, int] = {}  # key id -> last_used_at handed to the writer
        self._last = ("", "")  # the last credential hashed, and its digest

    def forget(self) -> None:
        """Drop every cached key (after a revocation)."""
        self._found.clear()
        self._unknown.clear()
        self._generation += 1

    def last_used(self, key: ApiKey) -> int | None:
        """The key's last use: the stored one, or a later one this process saw."""
        used = self._used.get(key.id)
        if used is None or (key.last_used_at is not None and key.last_used_at > used):
            return key.last_used_at
        return used

    def cached(self, scope: Scope) -> ApiKey | None:
        """The key the request carries when the cache knows it (nearly every request), without
        a coroutine; None when :meth:`authenticate` must look it up (or refuse it). Raises 401
        as that would for a missing, far too long or revoked key."""
        digest = self._digest(scope)
        found = self._found.get(digest)
        if found is None or time.monotonic() - found[0] >= CACHE_SECONDS:
            return None
        key = found[1]
        if key.revoked_at is not None:
            raise Unauthorized("invalid or revoked API key")
        self._touch(key)
        return key

    async def authenticate(self, request: Request) -> ApiKey:
        """The key the request carries; 401 if it has none, an unknown one or a revoked one."""
        digest = self._digest(request.scope)
        now = time.monotonic()
        found = self._found.get(digest)
        unknown = self._unknown.get(digest) if found is None else None
        if found is not None and now - found[0] < CACHE_SECONDS:
            key: ApiKey | None = found[1]
        elif unknown is not None and now - unknown < CACHE_SECONDS:
            key = None
        else:
            key = await self._look_up(digest, now)
        if key is None or key.revoked_at is not None:
            raise Unauthorized("invalid or revoked API key")
        self._touch(key)
        return key

    async def _look_up(self, digest: str, now: float) -> ApiKey | None:
        """The key stored under ``digest``, remembered for :data:`CACHE_SECONDS` either way."""
        generation = self._generation
        row = await key_by_hash(self.db, digest)
        key = row[1] if row and hmac.compare_digest(row[0], digest) else None
        if generation == self._generation:  # not across a forget(): it may be revoked
            if key is None:
                _remember(self._unknown, digest, now)
            else:
                _remember(self._found, digest, (now, key))
        return key

    def _touch(self, key: ApiKey) -> None:
        at = now_ms()
        self._used[key.id] = at
        written = max(self._written.get(key.id, 0), key.last_used_at or 0)
        if at - written < TOUCH_MS:
            return
        try:
            self.db.submit([touch_key(key.id, at)])  # nobody waits on it; failures are logged
        except Unavailable:
            return  # overloaded or shutting down: a later use writes it
        self._written[key.id] = at

    def _digest(self, scope: Scope) -> str:
        """The digest of the request's credential; 401 when it has none or a far too long
        one."""
        token = _credential(scope)
        last, digest = self._last
        if token.isascii() and hmac.compare_digest(token, last):
            return digest
        digest = hash_key(token)
        self._last = token, digest
        return digest


def _credential(scope: Scope) -> str:
    """The request's credential; 401 when it has none or a far too long one."""
    authorization = header(scope, b"authorization")
    token = header(scope, b"x-api-key")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if not token:
        raise Unauthorized("missing API key: send Authorization: Bearer <key> or X-API-Key")
    if len(token) > MAX_CREDENTIAL:
        raise Unauthorized(f"invalid API key: longer than {MAX_CREDENTIAL} characters")
    return token


def _remember(cache: dict[str, _V], digest: str, value: _V) -> None:
    """Put ``digest`` last in ``cache``, dropping the oldest entry when it is full."""
    cache.pop(digest, None)
    if len(cache) >= CACHE_SIZE:
        del cache[next(iter(cache))]
    cache[digest] = value
