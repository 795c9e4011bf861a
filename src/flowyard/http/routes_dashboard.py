"""``/dashboard``: the browser app (plain HTML, CSS and ES modules; no build step, no auth).

Every ``/dashboard/...`` path that is not a file under ``/dashboard/assets/`` answers the same
page, so the app's own paths (``/dashboard/executions/{id}``, ...) survive a reload. The page
holds no data: it calls the JSON API with the key the user pastes in.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "dashboard"

# Everything the page loads comes from this server; data from the API is never markup.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


async def page(request: Request) -> Response:
    """The app's one HTML page; the script picks the view from the path."""
    return FileResponse(ASSETS / "index.html", media_type="text/html", headers=HEADERS)


routes = [
    Route("/dashboard", page, methods=["GET"]),
    Mount(
        "/dashboard",
        routes=[
            Mount("/assets", StaticFiles(directory=ASSETS), name="dashboard-assets"),
            Route("/{path:path}", page, methods=["GET"]),
        ],
    ),
]
