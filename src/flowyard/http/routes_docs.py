"""``/openapi.json`` and ``/docs``: the API description and its reference page (no auth).

The page is Swagger UI, vendored under ``static/docs/`` (no CDN: Flowyard runs offline).
"""

import functools
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowyard.http.openapi import document

ASSETS = Path(__file__).parent / "static" / "docs"


@functools.cache
def _document_json() -> bytes:
    return msgspec.json.encode(document())


async def openapi_json(request: Request) -> Response:
    """The OpenAPI 3.1 document, generated from the route table once per process."""
    return Response(_document_json(), media_type="application/json")


async def docs_page(request: Request) -> Response:
    """The interactive reference; its Authorize button takes an API key."""
    return FileResponse(ASSETS / "index.html", media_type="text/html")


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
    Mount("/docs/assets", StaticFiles(directory=ASSETS), name="docs-assets"),
]
