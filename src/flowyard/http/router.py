"""Starlette's router, with each request tried only against the routes that could match it.

Starlette tries every route in turn, and a route that does not match still costs a regular
expression and a few dictionaries: with 50 routes, finding one near the end cost more than
the rest of a small request. Here each route is filed under the literal segments its path
begins with (at most two: ``/infra/jobs/{job_id}/ack`` under ``infra/jobs``), and a request
tries, in their original order, the routes filed under a prefix of its own path. The answers
are Starlette's: the first full match wins, a match but for the method is a 405, else 404.
Within those, a route is not even tried when it cannot match: a literal path other than the
request's, or a path with another count of segments (its parameters never hold a ``/``
unless they are ``:path`` ones, and a mount is always tried). A trigger's route, fifth of the
workflow routes, is then the only one tried; a literal path equal to the request's matches
without its regular expression.

Function endpoints are also called without Starlette's ``request_response`` wrapper, whose
exception-handler layer :class:`~flowyard.http.boundary.ErrorBoundary` makes redundant, and
a plain response (every JSON answer) is sent without the coroutine of ``Response.__call__``.
"""

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import Lifespan, Receive, Scope, Send

PREFIX_SEGMENTS = 2
_SENT_AS_IS = Response.__call__
"""A response whose class keeps it sends its status, headers and body, nothing else."""
_FORWARDING = (Route, Mount)  # routes whose ``handle`` calls their ``app`` once it matched

Prefix = tuple[str, ...]
Filed = tuple[BaseRoute, str | None, int]
"""A route, its path when literal (else None), and its count of ``/`` (-1: any count)."""


def _prefix(path: str) -> Prefix:
    """The literal segments ``path`` begins with, at most ``PREFIX_SEGMENTS``."""
    literal: list[str] = []
    for segment in path.split("/")[1 : PREFIX_SEGMENTS + 1]:
        if "{" in segment:
            break
        literal.append(segment)
    return tuple(literal)


class _Endpoint:
    """A function endpoint as a plain ASGI app: the request in, its response out."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Request], Awaitable[Response]]) -> None:
        self.func = func

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.func(Request(scope, receive, send))
        if type(response).__call__ is not _SENT_AS_IS or response.background is not None:
            await response(scope, receive, send)
            return
        # What Response.__call__ sends for an HTTP request, without its coroutine.
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})


class IndexedRouter(Router):
    """A :class:`Router` for a fixed list of routes (see the module's docstring)."""

    def __init__(self, routes: Sequence[BaseRoute], lifespan: Lifespan[Any]) -> None:
        super().__init__(list(routes), lifespan=lifespan, redirect_slashes=False)
        filed: dict[Prefix, list[int]] = {}
        for index, route in enumerate(self.routes):
            if isinstance(route, Route) and inspect.iscoroutinefunction(route.endpoint):
                route.app = _Endpoint(route.endpoint)
            path = route.path if isinstance(route, _FORWARDING) else "/{any}"
            filed.setdefault(_prefix(path), []).append(index)
        # Every prefix a route is filed under, with the routes of its own prefixes too.
        self._candidates: dict[Prefix, list[Filed]] = {
            prefix: [
                _filed(self.routes[index])
                for index in sorted(
                    index
                    for length in range(len(prefix) + 1)
                    for index in filed.get(prefix[:length], ())
                )
            ]
            for prefix in filed
        }

    def _filed(self, path: str) -> list[Filed]:
        segments = tuple(path.split("/", PREFIX_SEGMENTS + 1)[1 : PREFIX_SEGMENTS + 1])
        for length in range(len(segments), -1, -1):
            found = self._candidates.get(segments[:length])
            if found is not None:
                return found
        return []

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that could match ``path``, in order."""
        slashes = path.count("/")
        return [
            route
            for route, literal, count in self._filed(path)
            if (literal is None or literal == path) and (count < 0 or count == slashes)
        ]

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        scope.setdefault("router", self)
        partial: tuple[BaseRoute, Scope] | None = None
        path = scope["path"]  # the app is not mounted: no root_path
        slashes = path.count("/")
        for route, literal, count in self._filed(path):  # candidates(), inline
            if literal is not None:
                if literal != path:
                    continue
                match, child_scope = _literal_match(cast(Route, route), scope)
            elif count >= 0 and count != slashes:
                continue
            else:
                match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                if isinstance(route, _FORWARDING):
                    # A full match is one of the route's methods, all ``handle`` would check.
                    await route.app(scope, receive, send)
                else:
                    await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial = route, child_scope
        if partial is not None:  # the path matched, the method did not: 405
            route, child_scope = partial
            scope["route"] = route
            scope.update(child_scope)
            await route.handle(scope, receive, send)
            return
        await self.default(scope, receive, send)


def _literal_match(route: Route, scope: Scope) -> tuple[Match, Scope]:
    """``route.matches(scope)`` for a literal route equal to the request's path: no regular
    expression to run, no parameter to convert."""
    child_scope = {"endpoint": route.endpoint, "path_params": dict(scope.get("path_params", {}))}
    if route.methods and scope["method"] not in route.methods:
        return Match.PARTIAL, child_scope
    return Match.FULL, child_scope


def _filed(route: BaseRoute) -> Filed:
    """``route`` with what rules it out at a glance (see :data:`Filed`)."""
    if not isinstance(route, Route):
        return route, None, -1  # a mount takes any path below its own
    if not route.param_convertors:
        return route, route.path, route.path.count("/")
    if any(":path" in part for part in route.path.split("{")[1:]):
        return route, None, -1
    return route, None, route.path.count("/")
