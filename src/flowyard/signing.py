"""Push signatures: ``X-Flowyard-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

Handlers verify a delivery with :func:`verify`; the HMAC key is the secret's UTF-8 bytes, the
secret is the project's (``GET /infra/jobs/signing-secret``, ``Client.jobs.signing_secret()``).
For example, in a Starlette handler::

    from flowyard.signing import verify

    async def charge(request):
        body = await request.body()  # the raw bytes, before any JSON parsing
        if not verify(SECRET, body, request.headers.get("x-flowyard-signature", "")):
            return Response(status_code=401)
        ...
"""

import hashlib
import hmac
import time

DEFAULT_TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 over ``"<timestamp>.<body>"``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of ``X-Flowyard-Signature`` for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid, fresh signature of ``body`` under ``secret``.

    Args:
        secret: the project's signing secret (``GET /infra/jobs/signing-secret``).
        body: the raw request body, exactly as received.
        header: the ``X-Flowyard-Signature`` header.
        tolerance_seconds: how old a signature may be (replay protection).
        now: the current unix time, for tests.
    """
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_seconds:
        return False
    expected = signature(secret, t, body)
    return hmac.compare_digest(expected.encode(), fields.get("v1", "").encode())  # any text
