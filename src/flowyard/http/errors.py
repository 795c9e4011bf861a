"""The one table that maps errors to ``{code, message, details}`` responses."""

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from flowyard import errors
from flowyard.http.respond import json_response

log = logging.getLogger("flowyard.http")

STATUS: dict[type[Exception], tuple[int, str]] = {
    errors.Invalid: (400, "bad_request"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.InsufficientTokens: (402, "insufficient_tokens"),
    errors.Forbidden: (403, "forbidden"),
    errors.NotFound: (404, "not_found"),
    errors.MethodNotAllowed: (405, "method_not_allowed"),
    errors.Conflict: (409, "conflict"),
    errors.PayloadTooLarge: (413, "payload_too_large"),
    errors.UnsupportedMediaType: (415, "unsupported_media_type"),
    errors.RateLimited: (429, "rate_limited"),
    errors.Unavailable: (503, "unavailable"),
}

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


ACK_CODES: dict[type[Exception], str] = {errors.Invalid: "invalid"}
"""Where the code of one refused ack of an exchange differs from the route's own."""


def error_fields(exc: errors.FlowyardError, *, ack: bool = False) -> dict[str, object]:
    """``{code, message, details?}`` for a domain error, as an answer's body would hold it;
    with ``ack``, as one refused ack of an exchange names it (a 400 is ``invalid``)."""
    code = "internal_error"
    for cls in type(exc).__mro__:
        if ack and cls in ACK_CODES:
            code = ACK_CODES[cls]
            break
        if cls in STATUS:
            code = STATUS[cls][1]
            break
    body: dict[str, object] = {"code": code, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    return body


def error_response(
    status: int, code: str, message: str, details: list[dict[str, object]] | None = None
) -> Response:
    """A JSON error body; ``details`` is present only when there are some."""
    body: dict[str, object] = {"code": code, "message": message}
    if details:
        body["details"] = details
    headers = {"Retry-After": "1"} if status == 503 else None
    return json_response(body, status, headers)


async def flowyard_error(request: Request, exc: Exception) -> Response:
    """Map a domain error by walking its class hierarchy."""
    assert isinstance(exc, errors.FlowyardError)
    for cls in type(exc).__mro__:
        if cls in STATUS:
            status, code = STATUS[cls]
            response = error_response(status, code, exc.message, exc.details)
            if isinstance(exc, errors.RateLimited):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
    return await internal_error(request, exc)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method) in our shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "bad_request")
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    response = error_response(exc.status_code, code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    allowed = _allowed_methods(request) if exc.status_code == 405 else None
    if allowed:  # Starlette names only the methods of the first route matching the path
        response.headers["Allow"] = ", ".join(sorted(allowed))
    return response


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route of the app accepts for this request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return methods


async def internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: logged with its traceback, answered without it."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")
