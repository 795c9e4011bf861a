"""The errors :class:`flowyard.client.Client` raises: one class per API error code.

Every error answer of the API is ``{"code", "message", "details"?}``; the client raises the
subclass of :class:`FlowyardAPIError` registered for its ``code`` (or, for an answer that is
not Flowyard's JSON, e.g. from a proxy, the one registered for its HTTP status).
"""

from typing import Any, ClassVar

import httpx
import msgspec


class FlowyardAPIError(Exception):
    """An error answer from the API, or the client's own failure to get one
    (:class:`ConnectionFailed`, :class:`WaitTimeout`).

    Attributes:
        status: the HTTP status.
        code: the API's error code (``not_found``, ``bad_request`` ...).
        message: the API's message.
        details: one ``{"path", "message"}`` per problem (400 answers), else empty.
        headers: the answer's headers (``Retry-After``, ``X-RateLimit-*`` ...).
    """

    default_status: ClassVar[int] = 0
    default_code: ClassVar[str] = ""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = self.default_status if status is None else status
        self.code = code or self.default_code
        self.details = details or []
        self.headers = headers if headers is not None else httpx.Headers()

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, {self.message!r})"


class BadRequest(FlowyardAPIError):
    """400: malformed JSON or a field that fails validation (see ``details``)."""

    default_status, default_code = 400, "bad_request"


class Unauthorized(FlowyardAPIError):
    """401: no key, an unknown key or a revoked key."""

    default_status, default_code = 401, "unauthorized"


class InsufficientTokens(FlowyardAPIError):
    """402: the project's token balance does not cover the call."""

    default_status, default_code = 402, "insufficient_tokens"


class Forbidden(FlowyardAPIError):
    """403: the key lacks a scope (named in the message) or is not an admin key."""

    default_status, default_code = 403, "forbidden"


class NotFound(FlowyardAPIError):
    """404: no such object in the key's project (or no such route)."""

    default_status, default_code = 404, "not_found"


class MethodNotAllowed(FlowyardAPIError):
    """405: the route exists, not with this method."""

    default_status, default_code = 405, "method_not_allowed"


class Conflict(FlowyardAPIError):
    """409: the object's state does not allow the call (or an idempotency key clash)."""

    default_status, default_code = 409, "conflict"


class PayloadTooLarge(FlowyardAPIError):
    """413: a body over 1 MiB, or a payload, result or output over 256 KiB."""

    default_status, default_code = 413, "payload_too_large"


class UnsupportedMediaType(FlowyardAPIError):
    """415: the body was not sent as JSON."""

    default_status, default_code = 415, "unsupported_media_type"


class RateLimited(FlowyardAPIError):
    """429: the project is over its rate limit (after the client's own retries)."""

    default_status, default_code = 429, "rate_limited"


class InternalError(FlowyardAPIError):
    """500: the server failed; the request may or may not have taken effect."""

    default_status, default_code = 500, "internal_error"


class Unavailable(FlowyardAPIError):
    """503: not ready, shutting down or overloaded (after the client's own retries)."""

    default_status, default_code = 503, "unavailable"


class UnexpectedResponse(FlowyardAPIError):
    """A success answer the client could not decode (e.g. a server of another version)."""

    default_code = "unexpected_response"


class ConnectionFailed(FlowyardAPIError):
    """The server could not be reached, after the client's own retries: nothing was sent.

    Attributes:
        url: the URL of the request.
        cause: the transport error of the last attempt (an ``httpx.ConnectError`` ...).
    """

    default_code = "connection_failed"

    def __init__(self, url: str, cause: Exception, *, retries: int = 0, waited: float = 0) -> None:
        after = f" (after {retries} retries over {waited:.1f} s)" if retries else ""
        super().__init__(f"cannot reach {url}: {reason(cause)}{after}")
        self.url = url
        self.cause = cause

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class WaitTimeout(FlowyardAPIError, TimeoutError):
    """What was waited for did not happen in time (``wait_for_execution``).

    Attributes:
        last: the object as last read (e.g. the execution, still ``running``).
    """

    default_code = "timeout"

    def __init__(self, message: str, last: Any) -> None:
        super().__init__(message)
        self.last = last

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def reason(exc: BaseException) -> str:
    """An exception's own words, or its type's name when it has none."""
    return str(exc) or type(exc).__name__


_ERRORS: tuple[type[FlowyardAPIError], ...] = (
    BadRequest,
    Unauthorized,
    InsufficientTokens,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    InternalError,
    Unavailable,
)
BY_CODE = {cls.default_code: cls for cls in _ERRORS}
BY_STATUS = {cls.default_status: cls for cls in _ERRORS}


class _ErrorBody(msgspec.Struct):
    code: str = ""
    message: str = ""
    details: list[dict[str, Any]] | None = None


def error_from_response(response: httpx.Response) -> FlowyardAPIError:
    """The exception for an error answer, by its ``code``, else by its HTTP status."""
    status = response.status_code
    try:
        body = msgspec.json.decode(response.content, type=_ErrorBody)
    except msgspec.DecodeError:
        body = _ErrorBody(message=response.text[:500] or response.reason_phrase)
    cls = BY_CODE.get(body.code) or BY_STATUS.get(status, FlowyardAPIError)
    code = body.code or cls.default_code or f"http_{status}"
    return cls(
        body.message or response.reason_phrase,
        status=status,
        code=code,
        details=body.details,
        headers=response.headers,
    )
