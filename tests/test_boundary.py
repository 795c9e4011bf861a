"""ErrorBoundary: every error a JSON answer, rate headers on every answer (unit, no server)."""

import logging
from types import SimpleNamespace

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from flowyard.errors import Conflict
from flowyard.http.boundary import ErrorBoundary

RATE = [(b"x-ratelimit-limit", b"5")]


async def conflict(request: Request) -> Response:
    request.scope.setdefault("state", {})["rate_headers"] = RATE
    raise Conflict("the job is not running")


async def broken(request: Request) -> Response:
    raise ValueError("a bug")


async def fine(request: Request) -> Response:
    request.scope.setdefault("state", {})["rate_headers"] = RATE
    return JSONResponse({"ok": True})


class StartedThenBroken:
    """A raw ASGI endpoint that fails after beginning its answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("too late")


def client() -> httpx.AsyncClient:
    router = Router(
        [
            Route("/conflict", conflict),
            Route("/broken", broken),
            Route("/fine", fine),
            Route("/late", StartedThenBroken()),
        ]
    )
    app = ErrorBoundary(router)

    async def with_app(scope: dict[str, object], receive: object, send: object) -> None:
        # As Starlette does: with an app in the scope the router raises 404 and 405 to us.
        scope["app"] = SimpleNamespace(router=router)
        await app(scope, receive, send)  # type: ignore[arg-type]

    transport = httpx.ASGITransport(app=with_app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_domain_errors_use_the_table_and_keep_rate_headers() -> None:
    async with client() as http:
        answer = await http.get("/conflict")
    assert answer.status_code == 409
    assert answer.json() == {"code": "conflict", "message": "the job is not running"}
    assert answer.headers["x-ratelimit-limit"] == "5"


async def test_a_bug_is_a_logged_500_without_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="flowyard.http"):
        async with client() as http:
            answer = await http.get("/broken")
    assert answer.status_code == 500
    assert answer.json() == {"code": "internal_error", "message": "internal error"}
    assert "a bug" not in answer.text
    assert any(record.exc_info for record in caplog.records)


async def test_unknown_routes_and_methods_are_json() -> None:
    async with client() as http:
        missing = await http.get("/nowhere")
        wrong = await http.delete("/fine")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"


async def test_rate_headers_go_on_ordinary_answers_too() -> None:
    async with client() as http:
        answer = await http.get("/fine")
    assert answer.json() == {"ok": True}
    assert answer.headers["x-ratelimit-limit"] == "5"


async def test_an_error_after_the_answer_began_is_raised_to_the_server() -> None:
    async with client() as http:
        with pytest.raises(ValueError, match="too late"):
            await http.get("/late")
