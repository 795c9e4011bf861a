"""API keys on requests: ``Authorization: Bearer`` or ``X-API-Key``.

Keys are looked up by their SHA-256 hash and the stored hash is compared in constant time.
A small cache (one second) keeps the hot path off SQLite while revocations still apply at once
for keys revoked through this process and within a second for keys revoked by the CLI.
"""

import hmac
import time

from starlette.requests import Request

from flowyard.errors import Unauthorized
from flowyard.storage.projects import ApiKey, hash_key, key_by_hash
from flowyard.storage.sqlite import Database

CACHE_SECONDS = 1.0


class Authenticator:
    """Turns a request's key into the :class:`ApiKey` it names, or raises 401/403."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def forget(self) -> None:
        """Drop every cached key (after a revocation)."""
        self._cache.clear()

    async def authenticate(self, request: Request) -> ApiKey:
        """The key the request carries; 401 if it has none, an unknown one or a revoked one."""
        header = request.headers.get("authorization")
        token = request.headers.get("x-api-key")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        if not token:
            raise Unauthorized("missing API key: send Authorization: Bearer <key> or X-API-Key")
        cached = self._cache.get(token)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            key = cached[1]
        else:
            digest = hash_key(token)
            found = await key_by_hash(self.db, digest)
            key = found[1] if found and hmac.compare_digest(found[0], digest) else None
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (now, key)
        if key is None or key.revoked_at is not None:
            raise Unauthorized("invalid or revoked API key")
        return key
