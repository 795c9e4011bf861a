"""Shard leases on PostgreSQL: which node owns which shard, renewal, takeover and hand-over.

Two tables (``postgres_schema``, version 6): ``cluster_nodes`` (one row per running node: its
URL, its lease ``epoch`` and ``last_seen_at``) and ``cluster_shards`` (one row per shard: its
owner and an epoch bumped at each change of owner). Times are the database's clock, so the
nodes' clocks do not matter.

- **Renewal.** Every second a node sets its ``last_seen_at``; that renews the leases of all
  its shards at once. The update names the node's epoch: if another node fenced it, no row
  matches and the node knows it lost its shards.
- **Liveness.** A node is alive while its lease is younger than :data:`LEASE_SECONDS` and its
  lease session (``application_name`` ``flowyard <node_id>``) is connected. ``kill -9`` closes
  the session, so its shards are taken over at the others' next renewal, not 5 s later; a
  paused or cut-off node keeps its session and loses its lease after 5 s.
- **Takeover.** A node takes free shards (unowned, or owned by a dead node) up to its share
  (``total / live nodes``). In the same transaction it bumps the old owner's node epoch: the
  fence. Every commit of a node's writer begins by reading its own epoch ``FOR SHARE``
  (``PostgresDatabase.fence``), so a takeover waits for a stale node's transaction in
  flight, and the stale node's next commit fails: it drops everything and starts again from
  the database. The dead node's sessions are terminated first, so that a paused node's open
  transaction cannot hold the takeover up.
- **Hand-over.** A node above its share while another is below gives shards away: the
  supervisor stops its engines and drains its writer, then the rows are released and the
  others are told at once (``NOTIFY``). SIGTERM hands over every shard the same way.

Changes of ownership are made here; the supervisor applies them to memory
(``Supervisor._serve_shards``): while a change is applied (:attr:`moving`), the API answers
503 with a retry, as it does while starting.
"""

import logging
import random
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus

from flowyard.cluster.notices import MEMBERS, Notices
from flowyard.cluster.shards import DEFAULT_SHARDS, MAX_SHARDS
from flowyard.cluster.view import ClusterState, Node
from flowyard.errors import Unavailable
from flowyard.ids import new_id

log = logging.getLogger("flowyard.cluster")

RENEW_SECONDS = 1.0
LEASE_SECONDS = 5.0
_NOW = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
_NODES = (
    "SELECT n.node_id, n.url, n.epoch, n.started_at, n.last_seen_at, n.leaving,"
    " EXISTS (SELECT 1 FROM pg_stat_activity a"
    "  WHERE a.application_name = 'flowyard ' || n.node_id) AS connected,"
    f" {_NOW} AS now FROM cluster_nodes n ORDER BY n.node_id"
)


def session_name(node_id: str) -> str:
    """The ``application_name`` of every database session of node ``node_id``."""
    return f"flowyard {node_id}"


class Leases:
    """This node's membership of the cluster: the :class:`~flowyard.cluster.view.Cluster`
    of a ``--node-url`` server."""

    def __init__(self, db_url: str, node_url: str, shards: int = DEFAULT_SHARDS) -> None:
        self.db_url = db_url
        self.url = node_url.rstrip("/")
        self.node_id = new_id("node")
        self.total = shards  # replaced by the database's own count in ``join``
        self.epoch = 0
        self.started_at = 0
        self.owned: frozenset[int] = frozenset()  # what this node's engines hold
        self.moving = False  # a change of ownership is being applied to memory
        self.fenced = False  # another node took this node's shards: start again
        self._owners: list[str | None] = []  # per shard, its owner at the last renewal
        self._urls: dict[str, str] = {}  # live nodes' URLs
        self._releasing: frozenset[int] = frozenset()
        self._taken: frozenset[int] = frozenset()
        self._conn: asyncpg.Connection | None = None
        self._lock = anyio.Lock()  # one user of the connection at a time
        # What the nodes tell each other between renewals (ready jobs, settings, members).
        self.notices = Notices(db_url, self.node_id, session_name(self.node_id), self._live_urls)
        self.notices.on_member = self._woken
        self._wake = anyio.Event()
        self.changed = anyio.Event()  # set when ``owned`` should change: see ``settle``

    # ----------------------------------------------------------------- the Cluster protocol

    def mine(self, shard: int) -> bool:
        return shard in self.owned

    def owner_url(self, shard: int) -> str | None:
        if shard in self.owned:
            return None
        owner = self._owners[shard] if shard < len(self._owners) else None
        url = self._urls.get(owner) if owner is not None else None
        if url is None or owner == self.node_id:
            raise Unavailable(f"shard {shard} is moving between nodes; retry")
        return url

    def peers(self) -> list[str]:
        return [url for node, url in self._urls.items() if node != self.node_id]

    async def state(self) -> ClusterState:
        async with self._lock:
            conn = await self._connection()
            nodes = await conn.fetch(_NODES)
            shards = await conn.fetch("SELECT shard, node_id FROM cluster_shards ORDER BY shard")
        alive = {row["node_id"] for row in nodes if _alive(row)}
        owned: dict[str, list[int]] = {}
        for row in shards:
            if row["node_id"] is not None:
                owned.setdefault(row["node_id"], []).append(row["shard"])
        listed = [
            Node(
                row["node_id"],
                row["url"],
                row["started_at"],
                row["last_seen_at"],
                owned.get(row["node_id"], []),
            )
            for row in nodes
            if row["node_id"] in alive or row["node_id"] in owned
        ]
        unowned = sum(1 for row in shards if row["node_id"] not in alive)
        return ClusterState(listed, {"total": self.total, "unowned": unowned})

    # ----------------------------------------------------------------- joining and leaving

    async def join(self, shards_wanted: int) -> None:
        """Register this node, create the shard rows of a new database, take a first share."""
        conn = await self._connection()
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('shards', $1) ON CONFLICT (key) DO NOTHING",
                str(min(shards_wanted, MAX_SHARDS)),
            )
            self.total = int(await conn.fetchval("SELECT value FROM meta WHERE key = 'shards'"))
            await conn.execute(
                "INSERT INTO cluster_shards (shard, node_id, epoch)"
                " SELECT s, NULL, 0 FROM generate_series(0, $1 - 1) AS s ON CONFLICT DO NOTHING",
                self.total,
            )
            row = await conn.fetchrow(
                "INSERT INTO cluster_nodes (node_id, url, epoch, started_at, last_seen_at)"
                f" VALUES ($1, $2, 1, {_NOW}, {_NOW}) RETURNING epoch, started_at",
                self.node_id,
                self.url,
            )
            await conn.execute("SELECT pg_notify($1, $2)", MEMBERS, self.node_id)
        assert row is not None
        self.epoch, self.started_at = row["epoch"], row["started_at"]
        if shards_wanted != self.total:
            log.warning(
                "the database has %d shards (fixed when it was created); --shards %d ignored",
                self.total,
                shards_wanted,
            )
        async with self._lock:
            await self._renew(decide=True)
        self.owned, self._taken, self._releasing = self._taken, frozenset(), frozenset()
        self.moving = False
        self.changed = anyio.Event()
        log.info(
            "joined the cluster as %s (%s), owning %d shards",
            self.node_id,
            self.url,
            len(self.owned),
        )

    async def leave(self) -> None:
        """Hand every shard over (SIGTERM): the engines have stopped and the writer drained."""
        try:
            async with self._lock:
                if self._conn is not None and self._conn.is_in_transaction():
                    await self._reconnect()  # a renewal cut short by the shutdown
                conn = await self._connection()
                async with conn.transaction():
                    await conn.execute(
                        "UPDATE cluster_shards SET node_id = NULL WHERE node_id = $1", self.node_id
                    )
                    await conn.execute("DELETE FROM cluster_nodes WHERE node_id = $1", self.node_id)
                    await conn.execute("SELECT pg_notify($1, $2)", MEMBERS, self.node_id)
            log.info("handed %d shards over", len(self.owned))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not hand the shards over (%s); their leases will expire", exc)
        finally:
            self.owned = frozenset()
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
            await self.notices.close()

    # ----------------------------------------------------------------- renewal

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Renew every second (or at once when a node joins or leaves), and send this node's
        ready hints, until cancelled."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.notices.run)
            task_status.started()
            await self._keep_leases()

    async def _keep_leases(self) -> None:
        while True:
            with anyio.move_on_after(RENEW_SECONDS):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.notices.listen()  # again, if its connection was lost
                async with self._lock:
                    await self._renew(decide=not self.moving)
            except (
                OSError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,  # a session ended while this process was stopped
            ) as exc:
                log.warning("lease renewal failed: %s", exc)
                await self._reconnect()

    async def _renew(self, *, decide: bool) -> None:
        """Renew this node's lease; with ``decide``, take or give shards to even the shares
        (not while the last change is still being applied)."""
        conn = await self._connection()
        renewed = await conn.fetchval(
            f"UPDATE cluster_nodes SET last_seen_at = {_NOW}"
            " WHERE node_id = $1 AND epoch = $2 RETURNING epoch",
            self.node_id,
            self.epoch,
        )
        if renewed is None:
            self._change(fenced=True)
            return
        nodes = await conn.fetch(_NODES)
        shards = await conn.fetch("SELECT shard, node_id FROM cluster_shards ORDER BY shard")
        alive = [row["node_id"] for row in nodes if _alive(row)]
        self._urls = {row["node_id"]: row["url"] for row in nodes if row["node_id"] in alive}
        self._owners = [row["node_id"] for row in shards]
        if not decide or self.node_id not in alive:
            return  # (this node's own session looks gone: wait for the next renewal)
        mine = [s for s, owner in enumerate(self._owners) if owner == self.node_id]
        free = [s for s, owner in enumerate(self._owners) if owner not in self._urls]
        share = _shares(self.total, alive)
        want = share[self.node_id] - len(mine)
        if want > 0 and free:
            dead = {self._owners[s] for s in free} - {None}
            random.shuffle(free)  # nodes taking at once mostly take different shards
            await self._take(conn, free[:want], sorted(dead))  # type: ignore[arg-type]
        elif want < 0:
            counts = {node: 0 for node in alive}
            for owner in self._owners:
                if owner in counts:
                    counts[owner] += 1
            short = sum(max(0, share[node] - counts[node]) for node in alive) - len(free)
            if short > 0:
                self._releasing = frozenset(sorted(mine)[-min(-want, short) :])
                self._change()

    async def _take(self, conn: asyncpg.Connection, shards: list[int], dead: list[str]) -> None:
        if dead:  # a paused node's open transaction must not hold the takeover up
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = ANY($1)",
                [session_name(node) for node in dead],
            )
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '2s'")
            await conn.execute(
                "UPDATE cluster_nodes SET epoch = epoch + 1 WHERE node_id = ANY($1)", dead
            )
            rows = await conn.fetch(
                "UPDATE cluster_shards SET node_id = $1, epoch = epoch + 1"
                " WHERE shard = ANY($2) AND (node_id IS NULL OR node_id = ANY($3))"
                " RETURNING shard",
                self.node_id,
                shards,
                dead,
            )
            await conn.execute(
                "DELETE FROM cluster_nodes n WHERE node_id = ANY($1) AND NOT EXISTS"
                " (SELECT 1 FROM cluster_shards s WHERE s.node_id = n.node_id)",
                dead,
            )
            # The others learn the new owners now, and one that came up short takes the rest.
            await conn.execute("SELECT pg_notify($1, $2)", MEMBERS, self.node_id)
        taken = frozenset(row["shard"] for row in rows)
        if taken:
            for shard in taken:
                self._owners[shard] = self.node_id
            log.info("took over %d shards: %s", len(taken), sorted(taken))
            self._taken = taken
            self._change()

    def lost(self) -> None:
        """The writer found this node fenced: start again from the database."""
        if not self.fenced:
            self._change(fenced=True)

    def _change(self, *, fenced: bool = False) -> None:
        """Ask the supervisor to apply a change of ownership (see :meth:`settle`)."""
        self.fenced = self.fenced or fenced
        self.moving = True
        self.changed.set()

    async def settle(self) -> frozenset[int]:
        """Apply the pending change once the engines stopped and the writer drained: release
        the shards handed over, start again after a fence; the shards to hold from now on."""
        async with self._lock:
            return await self._settle()

    async def _settle(self) -> frozenset[int]:
        conn = await self._connection()
        if self.fenced:
            self.epoch = await conn.fetchval(
                "UPDATE cluster_nodes SET epoch = epoch + 1, last_seen_at = "
                f"{_NOW} WHERE node_id = $1 RETURNING epoch",
                self.node_id,
            ) or await self._register_again(conn)
            log.warning("this node lost its lease: it starts again from the database")
        elif self._releasing:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE cluster_shards SET node_id = NULL"
                    " WHERE node_id = $1 AND shard = ANY($2)",
                    self.node_id,
                    sorted(self._releasing),
                )
                await conn.execute("SELECT pg_notify($1, $2)", MEMBERS, self.node_id)
            log.info("handed over %d shards: %s", len(self._releasing), sorted(self._releasing))
        rows = await conn.fetch("SELECT shard FROM cluster_shards WHERE node_id = $1", self.node_id)
        self.owned = frozenset(row["shard"] for row in rows)
        self.fenced = False
        self._releasing = self._taken = frozenset()
        self.changed = anyio.Event()
        return self.owned

    def settled(self) -> None:
        """The engines hold :attr:`owned` now: serve again."""
        self.moving = False

    async def _register_again(self, conn: asyncpg.Connection) -> int:
        """This node's row was deleted with its last shard: make it again, with an epoch it
        never had (a write fenced once stays fenced)."""
        epoch: int = await conn.fetchval(
            "INSERT INTO cluster_nodes (node_id, url, epoch, started_at, last_seen_at)"
            f" VALUES ($1, $2, $3, $4, {_NOW}) RETURNING epoch",
            self.node_id,
            self.url,
            self.epoch + 1,
            self.started_at,
        )
        return epoch

    # ----------------------------------------------------------------- the connection

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.db_url, server_settings={"application_name": session_name(self.node_id)}
            )
        return self._conn

    async def _reconnect(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    def _live_urls(self) -> dict[str, str]:
        return self._urls

    def _woken(self) -> None:
        self._wake.set()


def _alive(row: Any) -> bool:
    return (
        bool(row["connected"])
        and not row["leaving"]
        and (row["now"] - row["last_seen_at"] <= LEASE_SECONDS * 1000)
    )


def _shares(total: int, nodes: list[str]) -> dict[str, int]:
    """Each live node's share of the shards: as even as can be, in node order."""
    base, extra = divmod(total, len(nodes))
    return {node: base + (1 if index < extra else 0) for index, node in enumerate(sorted(nodes))}
