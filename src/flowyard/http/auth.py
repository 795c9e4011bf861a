"""API keys on requests: ``Authorization: Bearer`` or ``X-API-Key``.

Keys are looked up by their SHA-256 hash and the stored hash is compared in constant time.
A small cache (one second) keeps the hot path off SQLite while revocations still apply at once
for keys revoked through this process and within a second for keys revoked by the CLI.

A key's ``last_used_at`` is kept in memory on every use and written behind at most once a
minute per key, so that a request costs no write of its own.
"""

import hmac
import time

from starlette.requests import Request

from flowyard.clock import now_ms
from flowyard.errors import Unauthorized, Unavailable
from flowyard.http.headers import header
from flowyard.storage.projects import ApiKey, hash_key, key_by_hash, touch_key
from flowyard.storage.sqlite import Database

CACHE_SECONDS = 1.0
TOUCH_MS = 60_000
"""How stale a key's stored ``last_used_at`` may get while the key is in use."""


class Authenticator:
    """Turns a request's key into the :class:`ApiKey` it names, or raises 401/403."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._generation = 0  # bumped by forget(): a look-up begun before it is not cached
        self._used: dict[str, int] = {}  # key id -> last use in this process (ms)
        self._written: dict[str, int] = {}  # key id -> last_used_at handed to the writer

    def forget(self) -> None:
        """Drop every cached key (after a revocation)."""
        self._cache.clear()
        self._generation += 1

    def last_used(self, key: ApiKey) -> int | None:
        """The key's last use: the stored one, or a later one this process saw."""
        used = self._used.get(key.id)
        if used is None or (key.last_used_at is not None and key.last_used_at > used):
            return key.last_used_at
        return used

    async def authenticate(self, request: Request) -> ApiKey:
        """The key the request carries; 401 if it has none, an unknown one or a revoked one."""
        authorization = header(request.scope, b"authorization")
        token = header(request.scope, b"x-api-key")
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        if not token:
            raise Unauthorized("missing API key: send Authorization: Bearer <key> or X-API-Key")
        cached = self._cache.get(token)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            key = cached[1]
        else:
            generation = self._generation
            digest = hash_key(token)
            found = await key_by_hash(self.db, digest)
            key = found[1] if found and hmac.compare_digest(found[0], digest) else None
            if len(self._cache) > 10_000:
                self._cache.clear()
            if generation == self._generation:
                self._cache[token] = (now, key)
        if key is None or key.revoked_at is not None:
            raise Unauthorized("invalid or revoked API key")
        self._touch(key)
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
