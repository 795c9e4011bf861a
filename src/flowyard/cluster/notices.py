"""What the nodes of a cluster tell each other between lease renewals, over PostgreSQL's
``LISTEN``/``NOTIFY``: nothing polls for it.

- **Ready hints** (:data:`READY`, ``<node> <project> <queue>``): a pull job became ready on a
  node where no claim waits for it, the first since that queue ran dry there. The others
  remember the hint: a claim that finds nothing at home asks the hinted nodes
  (``cluster/peers.py``), and a long-poll waiting on the queue is woken to do so. A node
  whose queue had fewer jobs than a claim asked is forgotten until it hints again.
- **Settings** (:data:`SETTINGS`, ``<node> <kind> <id...>``): a queue's settings, a webhook or
  an archived blueprint changed; every node keeps those in memory and reads them again.
- **Members** (:data:`MEMBERS`): a node joined, left or handed shards over; the others renew
  (and take or give shards) at once rather than at their next renewal.

One connection of the node listens to the three and sends them, several at once in one
statement. A notice lost with that connection (the node is cut off) costs a wake-up, not
work: ready jobs stay claimable where they are, and the next hint or claim finds them.
"""

import logging
from collections.abc import Callable
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus

log = logging.getLogger("flowyard.cluster")

MEMBERS = "flowyard_cluster"
SETTINGS = "flowyard_config"
READY = "flowyard_ready"
_SEND = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)"
_FAILURES = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


class Notices:
    """This node's side of the notices: what it sends, what it heard."""

    def __init__(
        self, db_url: str, node_id: str, session: str, urls: Callable[[], dict[str, str]]
    ) -> None:
        self.db_url = db_url
        self.node_id = node_id
        self._session = session  # the application_name of the node's sessions
        self._urls = urls  # the live nodes' URLs, by id
        self._hints: dict[tuple[str, str], dict[str, int]] = {}  # queue -> node -> number
        self._numbered = 0
        self._outgoing: dict[tuple[str, str], None] = {}  # (channel, payload), in order
        self._wake = anyio.Event()
        self._conn: asyncpg.Connection | None = None
        self.on_ready: Callable[[str, str], None] | None = None  # wakes a queue's claims
        self.on_settings: Callable[[str], None] | None = None  # another node changed some
        self.on_member: Callable[[], None] | None = None  # a node joined or left

    # ----------------------------------------------------------------- sending

    def announce(self, queue: Any) -> None:
        """A pull job became ready in ``queue`` and nobody here waits for it (a queue's
        ``on_ready``)."""
        self._send(READY, f"{self.node_id} {queue.project_id} {queue.name}")

    def publish(self, change: str) -> None:
        """Settings every node keeps in memory changed here, committed: ``<kind> <id>``."""
        self._send(SETTINGS, f"{self.node_id} {change}")

    def _send(self, channel: str, payload: str) -> None:
        self._outgoing[(channel, payload)] = None
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen, then send what is announced, until cancelled."""
        await self.listen()
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            channels = [channel for channel, _ in self._outgoing]
            payloads = [payload for _, payload in self._outgoing]
            self._outgoing.clear()
            try:
                conn = await self._connection()
                await conn.execute(_SEND, channels, payloads)
            except _FAILURES as exc:
                log.warning("notices to the other nodes not sent: %s", exc)
                self._drop()

    # ----------------------------------------------------------------- hearing

    async def listen(self) -> None:
        """Connect and listen, unless listening already (called at every renewal)."""
        try:
            await self._connection()
        except _FAILURES as exc:
            log.warning("cannot listen to the other nodes: %s", exc)
            self._drop()

    def hinted(self, project_id: str, queue: str) -> list[tuple[str, str, int]]:
        """The live nodes that said they have ready jobs in ``queue``: (node, url, hint)."""
        hints = self._hints.get((project_id, queue))
        if not hints:
            return []
        urls = self._urls()
        return [(node, urls[node], hint) for node, hint in hints.items() if node in urls]

    def drained(self, project_id: str, queue: str, node: str, hint: int) -> None:
        """A claim at ``node`` found fewer jobs than it asked for: forget its hint, unless a
        newer one came meanwhile."""
        hints = self._hints.get((project_id, queue))
        if hints is not None and hints.get(node) == hint:
            del hints[node]

    def _heard_ready(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        node, _, rest = str(payload).partition(" ")
        project_id, _, queue = rest.partition(" ")
        if node == self.node_id or not queue:
            return
        self._numbered += 1
        self._hints.setdefault((project_id, queue), {})[node] = self._numbered
        if self.on_ready is not None:
            self.on_ready(project_id, queue)

    def _heard_settings(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        node, _, change = str(payload).partition(" ")
        if node != self.node_id and change and self.on_settings is not None:
            self.on_settings(change)

    def _heard_member(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        if self.on_member is not None:
            self.on_member()

    # ----------------------------------------------------------------- the connection

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = conn = await asyncpg.connect(
                self.db_url, server_settings={"application_name": self._session}
            )
            await conn.add_listener(READY, self._heard_ready)
            await conn.add_listener(SETTINGS, self._heard_settings)
            await conn.add_listener(MEMBERS, self._heard_member)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
