"""A request about an object owned by another node goes to that node, in one internal hop.

Every node serves every route (DESIGN §11), but an object's live state (an execution's actor,
a job's queue, a schedule's timer) is held by the node that owns its shard. A request whose
path names one object (:func:`object_of`) is therefore sent to the owner of the object's
shard, and the owner's answer (status, headers, body) is relayed to the client as it is: the
owner authenticates the client's key, charges and rate-limits it, so its ``X-RateLimit-*``
headers and errors are the ones the client sees, and the request id is the same on both nodes.

:class:`Forwarding` is the ASGI layer between the error boundary and the router: errors it
raises get the usual ``{code, message, details}`` answer. A server that is not part of a
cluster does not have the layer at all (:meth:`Forwarder.needed`, decided once), so it pays
nothing for it. A handler that decides from the body where a request belongs (an idempotency
key's shard) calls :meth:`Forwarder.forward` itself.

One hop only: the forwarding node signs the request (``cluster/hop.py``); a node that gets a
signed request it does not own either (the shard moved meanwhile) answers ``503`` and the
client retries, instead of forwarding again. A peer that cannot be reached, or that does not
answer in :data:`TIMEOUT_SECONDS`, is ``503`` too. Requests between nodes go over the kept-alive
connections of one :class:`~flowyard.egress.http1.Http1Client`, which only ever talks to node
URLs, so the handler-network refusals of push delivery do not apply to it.
"""

import logging
import re
import time
from collections.abc import Callable
from urllib.parse import quote

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from flowyard import logs
from flowyard.cluster import hop, keyed
from flowyard.cluster.shards import key_shard, shard_of
from flowyard.cluster.view import Cluster, Solo
from flowyard.egress.connection import Answer, HttpError
from flowyard.egress.http1 import Http1Client, InvalidUrl
from flowyard.errors import PayloadTooLarge, Unavailable
from flowyard.http.body import MAX_BODY_BYTES, receive_body

log = logging.getLogger("flowyard.cluster")

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""An owner's answer relayed whole (an execution with many large step outputs is big)."""
TIMEOUT_SECONDS = 30.0
"""For the whole hop: connecting, sending, and the owner's whole answer."""
FORWARDED_BY = "flowyard.forwarded_by"
"""Where a verified forwarded request's scope holds the id of the node that forwarded it."""

_OBJECT = re.compile(
    r"^/infra/(?:jobs/(job_[^/]+)|workflows/executions/(wfexec_[^/]+)"
    r"|workflows/schedules/(wfsch_[^/]+))(?:/|$)"
)
_HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
_NOT_SENT = _HOP_BY_HOP | {b"host", b"content-length", b"expect", b"x-request-id", hop.HEADER}
"""A request's headers that the hop does not pass on (the client adds its own or ours)."""
_NOT_RELAYED = _HOP_BY_HOP | {b"content-length", b"x-request-id", b"date", b"server"}
"""An answer's headers that this node's server sets itself."""


class _Route:
    """What the metrics and the access log name a forwarded request's route."""

    path = "forwarded"


FORWARDED_ROUTE = _Route()


def object_of(path: str) -> str | None:
    """The id of the one object ``path`` is about, whose shard decides where it is served.

    ``/infra/jobs/{job_id}``, ``/infra/workflows/executions/{id}`` and
    ``/infra/workflows/schedules/{id}``, with any sub-path (runs, ack, heartbeat, trigger,
    cancel, signals...). Only ids of the object's kind count: ``/infra/jobs/claim``,
    ``/infra/jobs/batch`` and the other fixed routes among them are served where they arrive,
    and so is anything else.
    """
    found = _OBJECT.match(path)
    if found is None:
        return None
    return found.group(1) or found.group(2) or found.group(3)


class Forwarder:
    """This node's way to its peers: the HTTP client, the signature, the relay.

    Args:
        cluster: the node's cluster, read at each request (the lease manager may replace it).
        secret: the secret the nodes share, once loaded (empty before).
        timeout: seconds for a whole hop (:data:`TIMEOUT_SECONDS`).
    """

    def __init__(
        self,
        cluster: Callable[[], Cluster],
        secret: Callable[[], str],
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.cluster = cluster
        self.secret = secret
        self.timeout = timeout
        self.client = Http1Client()

    def needed(self, node_url: str | None) -> bool:
        """Whether this server is a node of a cluster, and so needs :class:`Forwarding`."""
        return node_url is not None or not isinstance(self.cluster(), Solo)

    async def aclose(self) -> None:
        """Close the kept-alive connections to the peers."""
        await self.client.aclose()

    def verify(self, scope: Scope, value: bytes) -> None:
        """Check a request's ``x-flowyard-forwarded`` header and note who forwarded it.

        Raises:
            Unauthorized: the header does not prove that a node of the cluster sent it.
        """
        target = _target(scope)
        node = hop.verify(self.secret(), value, _now_ms(), scope["method"], target)
        scope[FORWARDED_BY] = node

    async def forward(self, scope: Scope, body: bytes, url: str) -> Response:
        """Send the request of ``scope`` with ``body`` to the node at ``url``; its answer.

        For handlers that find the owner in the body; :class:`Forwarding` does the rest.

        Raises:
            Unavailable: the request was forwarded to this node already (one hop only), or
                the peer cannot be reached, fails, or does not answer in time.
        """
        answer = await self.call(scope, url, scope["method"], _target(scope), body)
        return _Relayed(answer.status, answer.headers, answer.body)

    async def call(self, scope: Scope, url: str, method: str, target: bytes, body: bytes) -> Answer:
        """Send ``method target`` with ``body`` to the node at ``url`` as the client's request
        of ``scope`` (its headers, its key), signed as this node's one hop; the answer.

        For :meth:`forward`, and for what a node asks its peers on a client's behalf
        (``cluster/peers.py``).

        Raises:
            Unavailable: as :meth:`forward`.
        """
        if FORWARDED_BY in scope:
            log.info(
                "%s %s came forwarded, and %s owns it now", scope["method"], scope["path"], url
            )
            raise Unavailable(
                "the object's shard moved to another node while the request was forwarded,"
                " and a request is forwarded only once; retry"
            )
        secret = self.secret()
        if not secret:
            raise Unavailable("starting: the cluster's secret is not loaded yet")
        cluster = self.cluster()
        headers = _sent_headers(scope["headers"])
        request_id = logs.request_id.get()
        if request_id is not None:
            headers.append((b"x-request-id", request_id.encode("ascii")))
        if method == "HEAD":  # see Http1Client.request; this node's server drops the body
            method = "GET"
        headers.append((hop.HEADER, hop.sign(secret, cluster.node_id, _now_ms(), method, target)))
        try:
            answer = await self.client.request(
                method,
                url,
                target,
                headers,
                body,
                timeout=self.timeout,
                max_body=MAX_ANSWER_BYTES,
            )
        except TimeoutError:
            log.warning("%s %s: %s did not answer in time", method, target.decode("latin-1"), url)
            message = f"the node that owns this object did not answer within {self.timeout:g} s"
            raise Unavailable(message) from None
        except (HttpError, InvalidUrl) as exc:
            # The node's URL goes to the log, not to the client: it is the cluster's own.
            log.warning("cannot send %s %s to %s: %s", method, target.decode("latin-1"), url, exc)
            message = "the node that owns this object cannot be reached; retry"
            raise Unavailable(message) from exc
        if not answer.complete:
            message = (
                f"the answer of the node that owns this object is over {MAX_ANSWER_BYTES} bytes"
            )
            raise Unavailable(message)
        return answer


class Forwarding:
    """The ASGI layer: a request about an object owned elsewhere goes to its owner."""

    def __init__(self, app: ASGIApp, forwarder: Forwarder) -> None:
        self.app = app
        self.forwarder = forwarder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        forwarder = self.forwarder
        for name, value in scope["headers"]:
            if name == hop.HEADER:
                forwarder.verify(scope, value)  # on every path: a handler may forward too
                break
        cluster = forwarder.cluster()
        object_id = object_of(scope["path"])
        if object_id is not None:
            url = cluster.owner_url(shard_of(object_id, cluster.total))
        elif (scope_name := keyed.key_scope(scope["method"], scope["path"])) is not None and (
            not _too_large(scope)
        ):
            body = await _read_body(scope, receive)
            receive = keyed.replay(body, receive)
            key = keyed.idempotency_key(body)
            url = (
                None
                if key is None
                else cluster.owner_url(key_shard(scope_name, key, cluster.total))
            )
            if url is not None:
                await self._forward(scope, receive, send, url, body)
                return
        else:
            url = None
        if url is None:
            await self.app(scope, receive, send)
            return
        await self._forward(scope, receive, send, url, await _read_body(scope, receive))

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, url: str, body: bytes
    ) -> None:
        scope["route"] = FORWARDED_ROUTE
        response = await self.forwarder.forward(scope, body, url)
        await response(scope, receive, send)


class _Relayed(Response):
    """An owner's answer, with the headers this node's server does not set itself."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = [
            (name, value) for name, value in headers if name.lower() not in _NOT_RELAYED
        ]
        self.raw_headers.append((b"content-length", b"%d" % len(body)))


def _target(scope: Scope) -> bytes:
    """The request target as it arrived (ASGI leaves ``raw_path`` optional)."""
    raw_path = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
    return hop.target_of(raw_path, scope.get("query_string", b""))


def _sent_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's headers but the hop's own and those its ``Connection`` names."""
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return [(n, v) for n, v in headers if n not in _NOT_SENT and n not in named]


def _too_large(scope: Scope) -> bool:
    """Whether the request says its body is over :data:`MAX_BODY_BYTES`."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            return True
    return False


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """The whole body, refusing more than :data:`MAX_BODY_BYTES` (413)."""
    if _too_large(scope):
        raise PayloadTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    return await receive_body(receive)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
