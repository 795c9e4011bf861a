"""``create_app(settings)``: the Starlette app, its routes, error handlers and lifespan."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Lifespan

from flowyard.actors.supervisor import Supervisor
from flowyard.cluster.forward import Forwarder, Forwarding
from flowyard.http import (
    routes_admin,
    routes_dashboard,
    routes_docs,
    routes_health,
    routes_jobs,
    routes_metrics,
    routes_queues,
    routes_schedules,
    routes_tokens,
    routes_webhooks,
    routes_whoami,
    routes_workflows,
)
from flowyard.http.auth import Authenticator
from flowyard.http.boundary import ErrorBoundary
from flowyard.http.context import Context
from flowyard.http.router import IndexedRouter
from flowyard.settings import Settings


def create_app(settings: Settings, supervisor: Supervisor | None = None) -> Starlette:
    """The whole HTTP service; its lifespan runs the supervisor."""
    runtime = supervisor or Supervisor(settings)
    forwarder = Forwarder(lambda: runtime.cluster, lambda: runtime.jobs.push.server_secret)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with runtime.running():
                yield
        finally:
            with anyio.CancelScope(shield=True):
                await forwarder.aclose()

    app = _App(
        routes=[  # the hottest first: routes are matched in order
            *routes_jobs.routes,
            *routes_workflows.routes,
            *routes_queues.routes,
            *routes_webhooks.routes,
            *routes_schedules.routes,
            *routes_tokens.routes,
            *routes_whoami.routes,
            *routes_health.routes,
            *routes_metrics.routes,
            *routes_dashboard.routes,
            *routes_docs.routes,
            *routes_admin.routes,
        ],
        lifespan=lifespan,
        context=Context(
            runtime=runtime, authenticate=Authenticator(runtime.db), forwarder=forwarder
        ),
    )
    return app


class _App(Starlette):
    """Starlette with an :class:`IndexedRouter`, and :class:`ErrorBoundary` as its only
    middleware in place of its own (with :class:`Forwarding` under it on a node of a
    cluster); what handlers reach is its ``context``
    (:func:`~flowyard.http.context.context_of`)."""

    notes_started = True  # ErrorBoundary does, for InflightLimit

    def __init__(
        self, routes: Sequence[BaseRoute], lifespan: Lifespan["_App"], context: Context
    ) -> None:
        super().__init__(lifespan=lifespan)
        self.context = context
        # A path with a trailing slash is another path: 404 like any unknown route, not a
        # redirect (the router does not redirect).
        self.router = IndexedRouter(routes, lifespan=lifespan)

    def build_middleware_stack(self) -> ASGIApp:
        # The router's own __call__ only forwards to its ``app``.
        app: ASGIApp = self.router.app
        runtime = self.context.runtime
        if self.context.forwarder.needed(runtime.settings.node_url):
            app = Forwarding(app, self.context.forwarder)
        return ErrorBoundary(app, runtime.metrics)
