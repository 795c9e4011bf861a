"""``GET /metrics``: the Prometheus text exposition of :mod:`flowyard.metrics`.

Open by default; with ``--metrics-token`` set it needs ``Authorization: Bearer <token>``
(compared in constant time). It takes no API key, so rate limits, token balances and the
in-flight cap never count it: a monitor must see the service under load. What bounds a flood
of scrapes is :class:`~flowyard.metrics.Exposition`: at most one build per 100 ms, shared.
"""

import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.http.context import context_of
from flowyard.http.errors import error_response
from flowyard.http.headers import header


async def metrics(request: Request) -> Response:
    """Every metric, as Prometheus scrapes them."""
    runtime = context_of(request).runtime
    token = runtime.settings.metrics_token
    if token is not None:
        given = header(request.scope, b"authorization") or ""
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode("latin-1"), expected.encode("utf-8")):
            return error_response(
                401, "unauthorized", "send Authorization: Bearer <the server's metrics token>"
            )
    return Response(await runtime.metrics.exposition.latest(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
