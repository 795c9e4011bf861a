"""The indexed router finds the same route as trying every route in turn would."""

import re

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import Scope

from flowyard.http.app import create_app
from flowyard.http.router import IndexedRouter
from flowyard.settings import Settings

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Kept for the whole run: its supervisor holds streams that warn when collected unclosed.
_APP = create_app(Settings(db=":memory:"))


def _indexed(router: Router) -> IndexedRouter:
    assert isinstance(router, IndexedRouter)
    return router


ROUTER = _indexed(_APP.router)


def _paths(router: Router) -> list[str]:
    """Every route's path with its parameters filled in, mounts' insides, and near misses."""
    paths = {"/", "/infra", "/infra/", "/infra/jobs/", "/nope", "/nope/a/b", "/admin/x/y/z"}
    for route in router.routes:
        assert isinstance(route, Route | Mount)
        concrete = re.sub(r"\{[^}]+\}", "x1", route.path)
        paths |= {concrete, concrete + "/", concrete + "/extra", concrete + "/assets/a.js"}
        paths.add(concrete.rsplit("/", 1)[0] or "/")
    return sorted(paths)


def _scope(method: str, path: str) -> Scope:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def _resolve(routes: list[BaseRoute], scope: Scope) -> tuple[BaseRoute | None, Match]:
    """Starlette's rule: the first full match, else the first partial one (405)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route, match
        if match is Match.PARTIAL and partial is None:
            partial = route
    return (partial, Match.PARTIAL) if partial is not None else (None, Match.NONE)


def _check(router: IndexedRouter, path: str) -> None:
    for method in METHODS:
        scope = _scope(method, path)
        expected = _resolve(router.routes, scope)
        assert _resolve(router.candidates(path), scope) == expected, (method, path)


@pytest.mark.parametrize("path", _paths(ROUTER))
def test_candidates_resolve_like_every_route_in_turn(path: str) -> None:
    _check(ROUTER, path)


async def _endpoint(request: Request) -> Response:
    return Response()


# Routes whose prefixes overlap: a mount that takes everything under /a comes before routes
# filed under /a/b, and a route beginning with a parameter can match any first segment.
_OVERLAPPING = IndexedRouter(
    [
        Route("/{any}/x", _endpoint),
        Route("/a/b/c", _endpoint, methods=["POST"]),
        Mount("/a", routes=[Route("/{rest:path}", _endpoint, methods=["PUT"])]),
        Route("/a/b/{x}", _endpoint),
        Route("/a", _endpoint),
    ],
    lifespan=None,  # type: ignore[arg-type]
)


@pytest.mark.parametrize("path", [*_paths(_OVERLAPPING), "/q/x", "/a/x", "/a/b/x", "/a/b/c/d"])
def test_candidates_keep_the_order_across_prefixes(path: str) -> None:
    _check(_OVERLAPPING, path)


def test_candidates_are_few_for_the_worker_protocol() -> None:
    """The point of the index: an ack is not tried against every route."""
    assert len(ROUTER.candidates("/infra/jobs/job_1/ack")) < len(ROUTER.routes) / 2
    found = ROUTER.candidates("/infra/workflows/blueprints/wf_1/trigger")
    assert all(getattr(route, "path", "").startswith("/infra/workflows") for route in found)


@pytest.mark.parametrize(
    "path",
    [
        "/infra/jobs/exchange",
        "/infra/jobs/job_1/ack",
        "/infra/workflows/blueprints/wf_1/trigger",
    ],
)
def test_the_hot_routes_are_tried_first(path: str) -> None:
    """A literal path of another route, or a path of another length, is not even tried: the
    route a worker's exchange or ack or a trigger takes is the first one tried."""
    [first, *_] = ROUTER.candidates(path)
    assert first.matches(_scope("POST", path))[0] is Match.FULL
