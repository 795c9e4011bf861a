"""Requests in flight: a cap on how many the service works on at once, and a cut-off at shutdown.

Every request the app works on holds memory (its body, its decoded objects, its place in the
group commit) and adds to everyone's latency. Past the cap a request is answered
``503 unavailable`` with ``Retry-After`` before its body is read, so a flood costs a few
microseconds per refused request instead of a queue that grows with the flood. Such a
refusal never reaches the router: the metrics count it under ``route="unmatched"``.

Not counted: health checks and ``/metrics`` (a monitor must see the service under load), and
the worker protocol (claim, ack, exchange, heartbeat, push callbacks), which drains work
instead of adding it; refusing an ack would let a lease run out and bring the job back.
Workers are as many as their owner runs; long-polling claims would otherwise fill the cap
while they wait.

The cap is shared: one project holds at most ``per_project`` counted requests (half the cap
by default), so a tenant whose requests stall (bodies sent slowly, a flood of its own) cannot
lock every other tenant out. A request's project is known only once its key is resolved: the
handler's first step (``http/context.py``) calls :func:`hold_for_project`, which counts the
request against its project or refuses it with ``503 unavailable``; the count drops when the
request ends. Requests without a key (401 before any work) count only against the whole cap.

At shutdown, requests that have not begun their response when the grace period ends (a client
that sends its body slowly) are answered ``503`` on their behalf, and whatever the app sends for
them afterwards is dropped. The app is not cancelled: a write it queued is still committed, and
a request waiting for more of its body hears that the client is gone once the 503 is sent.

Whether a request's response has begun is noted on the way out: by the app itself when it
says so (:attr:`InflightLimit.notes_started`: the service's app, whose
:class:`~flowyard.http.boundary.ErrorBoundary` wraps ``send`` anyway and reads the request
from the scope), else by a wrapper around ``send`` here. One wrapper per request instead of
two, on a path every request takes.
"""

import re
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowyard.errors import Unavailable
from flowyard.http.errors import error_response
from flowyard.metrics import UNMATCHED, Metrics

SCOPE_KEY = "flowyard.inflight"
"""Where a request's :class:`Held` sits in its ASGI scope while it is worked on."""

EXEMPT = re.compile(
    r"^/(livez|readyz|healthz|metrics"
    r"|infra/jobs/(claim|exchange)"
    r"|infra/jobs/[^/]+/(ack|heartbeat)"
    r"|infra/jobs/[^/]+/runs/[^/]+/callback)$"
)


class Held:
    """One request in flight: whether its response has begun, or was cut off.

    An app that notes it (see the module's docstring) sets ``started`` when it sends the
    response's start and drops what it sends once ``cut`` is set.
    """

    __slots__ = ("_receive", "_send", "counted", "cut", "limit", "project", "scope", "started")

    def __init__(
        self, limit: "InflightLimit", scope: Scope, receive: Receive, send: Send, counted: bool
    ) -> None:
        self.limit = limit
        self.counted = counted  # against the cap (not an exempt route)
        self.project: str | None = None  # the project it is counted against, once known
        self.scope = scope
        self._receive = receive
        self._send = send
        self.started = False
        self.cut = False

    async def send(self, message: Message) -> None:
        if self.cut:
            return  # answered 503 at shutdown: what the app says now is too late
        self.started = True
        await self._send(message)

    async def cut_off(self) -> None:
        self.cut = True
        await error_response(503, "unavailable", "shutting down")(
            self.scope, self._receive, self._send
        )


class InflightLimit:
    """ASGI middleware: ``503 unavailable`` beyond ``limit`` counted requests in flight."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        per_project: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics  # counts the requests refused here (never routed: ``unmatched``)
        self.limit = limit
        self.per_project = max(1, limit // 2) if per_project is None else per_project
        self.inflight = 0  # counted requests (not the exempt ones) being worked on
        self.by_project: dict[str, int] = {}  # counted requests per project, when above 0
        self._running: set[Held] = set()  # every request being worked on
        self.notes_started: bool = getattr(app, "notes_started", False)
        """Whether ``app`` notes a :class:`Held`'s ``started`` and ``cut`` itself."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = EXEMPT.match(scope["path"]) is None
        if counted and self.inflight >= self.limit:
            began = perf_counter()
            message = f"over {self.limit} requests in flight; retry later"
            await error_response(503, "unavailable", message)(scope, receive, send)
            if self.metrics is not None:
                self.metrics.answered(UNMATCHED, scope["method"], 503, perf_counter() - began)
            return
        request = Held(self, scope, receive, send, counted)
        scope[SCOPE_KEY] = request
        self._running.add(request)
        self.inflight += counted
        try:
            await self.app(scope, receive, send if self.notes_started else request.send)
        except Exception:
            if not request.cut:
                raise
            # Cut off: the app failed on the client's departure; it has its answer already.
        finally:
            self._running.discard(request)
            self.inflight -= counted
            del scope[SCOPE_KEY]  # scope and request refer to each other: not a cycle left
            if request.project is not None:
                self._release(request.project)

    def hold(self, request: Held, project_id: str) -> None:
        """Count ``request`` against ``project_id``; ``Unavailable`` if its share is full."""
        if request.project is not None:
            return  # counted already (a second look at the same key)
        held = self.by_project.get(project_id, 0)
        if held >= self.per_project:
            message = f"over the project's share of {self.per_project} requests in flight"
            raise Unavailable(f"{message}; retry later")
        self.by_project[project_id] = held + 1
        request.project = project_id

    def _release(self, project_id: str) -> None:
        held = self.by_project[project_id] - 1
        if held:
            self.by_project[project_id] = held
        else:
            del self.by_project[project_id]  # only projects with requests in flight stay

    async def cut_off(self) -> int:
        """Answer 503 for every request still running that has not begun its response.

        Returns how many were answered. A write such a request queued is still committed,
        so a 503 here means "unknown", as a dropped connection would.
        """
        waiting = [request for request in self._running if not request.started]
        for request in waiting:
            await request.cut_off()
        return len(waiting)


def hold_for_project(scope: Scope, project_id: str) -> None:
    """Count the request against its project's share of the cap (see the module's docstring).

    Raises ``Unavailable`` (503) when the project already holds its share. Nothing to do for
    a request the cap does not count, or for an app served without :class:`InflightLimit`.
    """
    request: Held | None = scope.get(SCOPE_KEY)
    if request is not None and request.counted:
        request.limit.hold(request, project_id)
