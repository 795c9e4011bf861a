"""Requests in flight: a cap on how many the service works on at once, and a cut-off at shutdown.

Every request the app works on holds memory (its body, its decoded objects, its place in the
group commit) and adds to everyone's latency. Past the cap a request is answered
``503 unavailable`` with ``Retry-After`` before its body is read, so a flood costs a few
microseconds per refused request instead of a queue that grows with the flood.

Not counted: health checks (a monitor must see the service under load) and the worker
protocol (claim, ack, heartbeat, push callbacks), which drains work instead of adding it;
refusing an ack would let a lease run out and bring the job back. Workers are as many as
their owner runs; long-polling claims would otherwise fill the cap while they wait.

At shutdown, requests still running when the grace period ends (a client that sends its body
slowly) are stopped and answered ``503`` rather than being cancelled into a plain-text 500.
"""

import re

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowyard.http.errors import error_response

EXEMPT = re.compile(
    r"^/(livez|readyz|healthz"
    r"|infra/jobs/claim"
    r"|infra/jobs/[^/]+/(ack|heartbeat)"
    r"|infra/jobs/[^/]+/runs/[^/]+/callback)$"
)


class InflightLimit:
    """ASGI middleware: ``503 unavailable`` beyond ``limit`` counted requests in flight."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.inflight = 0  # counted requests (not the exempt ones) being worked on
        self._running: set[anyio.CancelScope] = set()  # every request being worked on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = EXEMPT.match(scope["path"]) is None
        if counted and self.inflight >= self.limit:
            message = f"over {self.limit} requests in flight; retry later"
            await error_response(503, "unavailable", message)(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        self.inflight += counted
        with anyio.CancelScope() as cancel:
            self._running.add(cancel)
            try:
                await self.app(scope, receive, sending)
            finally:
                self._running.discard(cancel)
                self.inflight -= counted
        if cancel.cancelled_caught and not started:
            await error_response(503, "unavailable", "shutting down")(scope, receive, send)

    def cut_off(self) -> int:
        """Stop every request still being worked on; each is answered 503 if it can be.

        Returns how many were stopped. A write already queued for commit is still committed
        (commits are shielded), so a 503 here means "unknown", as a dropped connection would.
        """
        for cancel in self._running:
            cancel.cancel()
        return len(self._running)
