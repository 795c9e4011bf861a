"""What a node asks its peers on a client's behalf: claims, acks and queue counts.

Each request is the client's own (its key, so the peer authenticates, scopes and charges it as
usual), signed as one internal hop (``cluster/hop.py``), so that the peer serves it from its
own shards only and never asks further:

- **Claims.** A claim that finds no ready job here asks the nodes that said they have some in
  that queue (their ready hints, ``Leases.hinted``) and takes what they claimed for it. A node
  that had fewer than asked is forgotten until it says so again.
- **Acks of an exchange** whose jobs are owned elsewhere go to their owners, one exchange per
  owner, and their answers take their places in the client's answer.
- **Queue counts** (``GET /infra/queues``) add up every node's.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
from msgspec import Raw
from starlette.types import Scope

from flowyard.actors.claims import AckRequest, Elsewhere
from flowyard.cluster.forward import FORWARDED_BY, Forwarder
from flowyard.egress.connection import Answer
from flowyard.errors import FlowyardError, Unavailable

if TYPE_CHECKING:  # asyncpg, which it needs, is needed only by those who use PostgreSQL
    from flowyard.cluster.leases import Leases

log = logging.getLogger("flowyard.cluster")


class Peers:
    """The other nodes, as one client request of this node reaches them."""

    def __init__(self, leases: "Leases", forwarder: Forwarder, scope: Scope) -> None:
        self.leases = leases
        self._forwarder = forwarder
        self._scope = scope

    @classmethod
    def of(cls, leases: "Leases | None", forwarder: Forwarder, scope: Scope) -> "Peers | None":
        """The peers of a cluster node's request; None on a server alone, and for a request
        another node sent here (it asks nobody further: one hop)."""
        if leases is None or FORWARDED_BY in scope:
            return None
        return cls(leases, forwarder, scope)

    async def call(self, url: str, method: str, target: bytes, body: bytes) -> Answer:
        """Send ``method target body`` to the node at ``url`` as the client's request."""
        return await self._forwarder.call(self._scope, url, method, target, body)

    def claims(self, project_id: str, queue: str, visibility: int) -> Elsewhere:
        """A claim's way to the jobs of ``queue`` that other nodes hold."""
        return claims_elsewhere(self.leases, self.call, project_id, queue, visibility)

    async def acks(
        self, acks: Sequence[AckRequest], owners: Sequence[str]
    ) -> list[dict[str, Any] | FlowyardError]:
        """Apply ``acks`` at their owners (see :func:`acks_elsewhere`)."""
        return await acks_elsewhere(self.call, acks, owners)

    async def queues(self) -> list[dict[str, Any]]:
        """The other nodes' views of the client's queues."""
        return await queues_elsewhere(self.leases, self.call)


Call = Callable[[str, str, bytes, bytes], Awaitable[Answer]]
"""Send ``method target body`` to the node at the URL, as the client's request, one hop."""

_JOBS = msgspec.json.Decoder(list[Raw])
_EXCHANGED = msgspec.json.Decoder(dict[str, list[Raw]])
_QUEUES = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder().encode


def claims_elsewhere(
    leases: "Leases", call: Call, project_id: str, queue: str, visibility: int
) -> Elsewhere:
    """A claim's way to the jobs of ``queue`` that other nodes hold (see ``Claims.claim``)."""

    async def elsewhere(count: int) -> list[Raw]:
        found: list[Raw] = []
        for node, url, hint in leases.notices.hinted(project_id, queue):
            wanted = count - len(found)
            body = _encode({"queue": queue, "count": wanted, "visibility_timeout": visibility})
            try:
                answer = await call(url, "POST", b"/infra/jobs/claim", body)
            except Unavailable as exc:
                log.warning("claim at %s failed: %s", url, exc)
                continue
            if answer.status != 200:
                log.warning("claim at %s answered %d", url, answer.status)
                continue
            jobs = _JOBS.decode(answer.body)
            if len(jobs) < wanted:
                leases.notices.drained(project_id, queue, node, hint)
            found += jobs
            if len(found) >= count:
                break
        return found

    return elsewhere


async def acks_elsewhere(
    call: Call, acks: Sequence[AckRequest], owners: Sequence[str]
) -> list[dict[str, Any] | FlowyardError]:
    """Apply ``acks`` at their owners (``owners[i]``, base URLs): each one's answer, as the
    owner's exchange gave it, or the error that kept it from its owner."""
    answers: list[dict[str, Any] | FlowyardError] = [Unavailable("not sent")] * len(acks)
    by_owner: dict[str, list[int]] = {}
    for index, url in enumerate(owners):
        by_owner.setdefault(url, []).append(index)
    for url, indexes in by_owner.items():
        body = _encode({"acks": [_ack_body(acks[i]) for i in indexes]})
        try:
            answer = await call(url, "POST", b"/infra/jobs/exchange", body)
            if answer.status != 200:
                raise Unavailable(f"the node {url} answered {answer.status}; retry")
            given = _EXCHANGED.decode(answer.body).get("acks", [])
        except Unavailable as exc:
            for i in indexes:
                answers[i] = exc
            continue
        for i, raw in zip(indexes, given, strict=False):
            answers[i] = msgspec.json.decode(raw)
    return answers


def _ack_body(ack: AckRequest) -> dict[str, Any]:
    return {
        "job_id": ack.job_id,
        "claim_token": ack.claim_token,
        "status": "completed" if ack.completed else "failed",
        "result": ack.result,
        "error": ack.error,
        "retryable": ack.retryable,
    }


async def queues_elsewhere(leases: "Leases", call: Call) -> list[dict[str, Any]]:
    """Every other node's views of the client's queues (their own counts)."""
    views: list[dict[str, Any]] = []
    for url in leases.peers():
        target = b"/infra/queues?limit=100"
        for _ in range(100):  # a bound on the pages read from one node
            answer = await call(url, "GET", target, b"")
            if answer.status != 200:
                raise Unavailable(f"the node {url} answered {answer.status}; retry")
            page = _QUEUES.decode(answer.body)
            views += page.get("queues", [])
            cursor = page.get("next_cursor")
            if not cursor:
                break
            target = b"/infra/queues?limit=100&cursor=" + quote(str(cursor)).encode()
    return views


def merged_views(views: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Queue views of several nodes, by name, their counts added up."""
    merged: dict[str, dict[str, Any]] = {}
    for view in views:
        name = view["name"]
        seen = merged.get(name)
        if seen is None:
            merged[name] = dict(view)
            continue
        seen["depth"] += view["depth"]
        seen["running"] += view["running"]
        ages = (seen["oldest_pending_age_seconds"], view["oldest_pending_age_seconds"])
        known = [age for age in ages if age is not None]
        seen["oldest_pending_age_seconds"] = max(known) if known else None
    return merged
