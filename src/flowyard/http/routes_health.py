"""``/livez``, ``/readyz`` and ``/healthz``: no auth."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.errors import FlowyardError
from flowyard.http.context import context_of
from flowyard.http.errors import error_response
from flowyard.http.respond import json_response


async def livez(request: Request) -> Response:
    """The process is up."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Storage is open and takes writes, and every live job and execution has been restored.

    503 before that, while shutting down, after a core service crashed, and while the database
    file cannot be written (disk full, read-only): reads still work then, writes do not.
    """
    context = context_of(request)
    try:
        context.runtime.check_health()
    except FlowyardError as exc:
        return error_response(503, "unavailable", str(exc))
    return json_response({"status": "ok"})


routes = [
    Route("/livez", livez, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/healthz", readyz, methods=["GET"]),
]
