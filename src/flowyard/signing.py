"""Signatures: ``X-Flowyard-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

Push deliveries are signed with the project's signing secret (``GET
/infra/jobs/signing-secret``), webhook deliveries with the webhook's own secret; both are
checked with :func:`verify` (also ``flowyard.verify``). The HMAC key is the secret's UTF-8
bytes. For example, in a Starlette handler::

    import flowyard

    async def receive(request):
        body = await request.body()  # the raw bytes, before any JSON parsing
        if not flowyard.verify(SECRET, body, request.headers.get("x-flowyard-signature")):
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
    body: bytes | str,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid, fresh signature of ``body`` under ``secret``.

    It answers False rather than raising, for every way a request can be wrong (no header, a
    malformed one, a stale timestamp, no matching signature), so a receiver needs one ``if``
    and answers 401. A header may carry several ``v1=`` values (as while a secret is being
    replaced): it verifies when any one matches. Each is compared in constant time, and all
    of them are compared, so the time taken says nothing about which one came close.

    Args:
        secret: the webhook's secret, or for push jobs the project's signing secret.
        body: the raw request body, exactly as received (a ``str`` is taken as UTF-8).
        header: the ``X-Flowyard-Signature`` header (None when the request had none).
        tolerance: how many seconds the signature's timestamp may be away from now, either
            way (replay protection).
        now: the current unix time, for tests.
    """
    if header is None:
        return False
    timestamp, candidates = _parse(header)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = signature(secret, timestamp, raw).encode()
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode())  # any text, non-ASCII too
    return matched


def _parse(header: str) -> tuple[int | None, list[str]]:
    """The header's one timestamp (None if it has none, several, or not plain digits) and
    its ``v1`` signatures; other schemes are ignored, as a newer server may add some."""
    stamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            stamps.append(value)
        elif name == "v1":
            signatures.append(value)
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()):
        return None, signatures
    return int(stamps[0]), signatures
