"""What the rest of the service asks of the cluster: who owns a shard, and the nodes.

:class:`Solo` is the cluster of a server without ``--node-url``: one node owning every
shard. The PostgreSQL cluster (``leases.Leases``) answers the same questions from its lease
table.
"""

from typing import Protocol

import msgspec

from flowyard.cluster.shards import DEFAULT_SHARDS


class Node(msgspec.Struct, frozen=True, gc=False):
    """One node as ``GET /admin/cluster`` shows it."""

    node_id: str
    url: str
    started_at: int  # ms since the epoch
    last_seen_at: int  # its last lease renewal, ms since the epoch
    shards: list[int]  # the shards it owns, in order


class ClusterState(msgspec.Struct, frozen=True, gc=False):
    """``GET /admin/cluster``'s body."""

    nodes: list[Node]
    shards: dict[str, int]  # {"total": ..., "unowned": ...}


class Cluster(Protocol):
    """The cluster as the HTTP layer and the engines see it."""

    node_id: str
    url: str
    total: int
    """How many shards the database was created with."""

    def mine(self, shard: int) -> bool:
        """Whether this node owns ``shard`` now."""

    def owner_url(self, shard: int) -> str | None:
        """Where to send a request about ``shard``: None to serve it here, else the owner's
        base URL.

        Raises:
            Unavailable: no live node owns it right now (it is being taken over: retry).
        """

    def peers(self) -> list[str]:
        """The base URLs of the other live nodes."""

    async def state(self) -> ClusterState:
        """The nodes and the shards' ownership, as the database has them."""


class Solo:
    """A server that is the whole cluster: it owns every shard."""

    def __init__(self, url: str, started_at: int, total: int = DEFAULT_SHARDS) -> None:
        self.node_id = "solo"
        self.url = url
        self.total = total
        self.started_at = started_at

    def mine(self, shard: int) -> bool:
        return True

    def owner_url(self, shard: int) -> str | None:
        return None

    def peers(self) -> list[str]:
        return []

    async def state(self) -> ClusterState:
        from flowyard.clock import now_ms

        node = Node(self.node_id, self.url, self.started_at, now_ms(), list(range(self.total)))
        return ClusterState([node], {"total": self.total, "unowned": 0})
