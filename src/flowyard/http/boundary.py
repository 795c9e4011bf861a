"""The app's outer layer: every error becomes a JSON answer, and rate headers go on every answer.

It stands in for Starlette's two error middlewares (``ServerErrorMiddleware`` and
``ExceptionMiddleware``) and a third for the headers: one layer, one wrapper around ``send``
per request instead of four, on a path every request takes.

- A ``FlowyardError`` or Starlette's ``HTTPException`` (unknown route, wrong method) is
  answered through the table in :mod:`flowyard.http.errors`; anything else is logged with its
  traceback and answered ``500 internal_error``, without it.
- A rate-limited project's ``X-RateLimit-*`` headers (set by ``caller`` in the request's
  state) are added to whatever the answer turns out to be, errors included.
- Each answer is counted in ``flowyard_http_requests_total`` and
  ``flowyard_http_request_duration_seconds`` under the template of the route that matched
  (the router leaves it in ``scope["route"]``), or ``unmatched``; a wrapper that sees every
  status anyway is the cheapest place for it.
- Under :class:`~flowyard.http.inflight.InflightLimit` it notes the request's ``started``
  and drops what is sent once the request was cut off at shutdown, in the same wrapper
  (:attr:`InflightLimit.notes_started`).
"""

from time import perf_counter

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowyard.errors import FlowyardError
from flowyard.http.errors import flowyard_error, http_error, internal_error
from flowyard.http.inflight import SCOPE_KEY, Held
from flowyard.metrics import UNMATCHED, Metrics


class ErrorBoundary:
    """ASGI middleware around the router (see the module's docstring)."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = perf_counter()
        started = False
        status = 500  # what the server answers for an app that sends nothing
        held: Held | None = scope.get(SCOPE_KEY)

        async def sending(message: Message) -> None:
            nonlocal started, status
            if held is not None:
                if held.cut:
                    return  # answered 503 at shutdown: what the app says now is too late
                held.started = True
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = scope.get("state", {}).get("rate_headers")
                if headers:
                    message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            request = Request(scope, receive)
            if isinstance(exc, FlowyardError):
                response = await flowyard_error(request, exc)
            elif isinstance(exc, HTTPException):
                response = await http_error(request, exc)
            else:
                response = await internal_error(request, exc)
            if started:
                raise  # too late for an answer: the server closes the connection
            await response(scope, receive, sending)
        finally:
            if self.metrics is not None:
                route = scope.get("route")
                self.metrics.answered(
                    UNMATCHED if route is None else route.path,
                    scope["method"],
                    status,
                    perf_counter() - began,
                )
