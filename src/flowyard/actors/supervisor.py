"""The supervisor: owns the task group, the database and the engines, and shuts down in order.

Start: open SQLite, start the writer, load the webhooks and re-arm every pending delivery,
rehydrate every live execution and job, re-arm every timer (workflow schedules' fires too),
then report ready. Stop: stop taking work, cancel the engines, let the writer commit what it
holds, close.

A core service (the writer, the accounts, the execution actors' host, the job engine with its
timers, queues and push delivery) that crashes is not restarted in place: its memory may no
longer match SQLite. The supervisor turns ``/readyz`` to 503 and asks the server to stop, so
that the process exits non-zero and its own supervisor restarts it from SQLite.
"""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskStatus

from flowyard.actors.accounts import Accounts
from flowyard.actors.dispatcher import Dispatcher
from flowyard.actors.jobs import JobEngine
from flowyard.actors.outbox import Outbox
from flowyard.actors.schedules import Schedules
from flowyard.actors.webhooks import Webhooks
from flowyard.actors.workflows import WorkflowEngine
from flowyard.clock import SYSTEM_CLOCK, Clock, now_ms
from flowyard.cluster.shards import Placement
from flowyard.cluster.view import Cluster, Solo
from flowyard.errors import Unavailable
from flowyard.metrics import Metrics
from flowyard.settings import Settings
from flowyard.storage.projects import server_secret
from flowyard.storage.stores import store_for

if TYPE_CHECKING:
    from flowyard.cluster.leases import Leases
    from flowyard.storage.postgres import PostgresDatabase

log = logging.getLogger("flowyard")

SHUTDOWN_GRACE_SECONDS = 10.0


class Supervisor:
    """Everything that runs inside ``flowyard serve`` except HTTP."""

    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock  # the one clock of timers, leases, cron, backoff and accounts
        self.metrics = metrics = Metrics()  # handed to each part that moves a metric
        self.db = store_for(settings.db, sync=settings.sync, serving=True, metrics=metrics)
        url = settings.node_url or settings.public_url or f"http://{settings.host}:{settings.port}"
        self.cluster: Cluster = Solo(url, now_ms(), settings.shards)
        self.leases: Leases | None = None  # a cluster node's (``--node-url``)
        self._fenced_store: PostgresDatabase | None = None  # its store, fenced by the leases
        if settings.node_url is not None:
            self.cluster = self.leases = self._node(settings.node_url)
        own = {settings.host, "127.0.0.1", "::1", "0.0.0.0"}
        if settings.public_url and (public := urlsplit(settings.public_url).hostname):
            own.add(public)  # this server as handlers reach it
        self.dispatcher = Dispatcher(
            handler_network=settings.handler_network, own_hosts=frozenset(own)
        )
        self.accounts = Accounts(self.db, clock)
        self._build(Placement.everything(settings.shards))
        self.metrics.watch(self._queue_depths, lambda: len(self.workflows.actors))
        self.ready = anyio.Event()
        self._store_open = False
        self.failure: str | None = None  # set when a core service crashed
        # Called once a core service crashed: the server stops itself (``flowyard serve``
        # then exits non-zero). Without it the process stays up, answering 503.
        self.on_failure: Callable[[], None] | None = None

    def _node(self, node_url: str) -> "Leases":
        """This server as a node of its database's cluster: its leases, and its writer
        fenced by them."""
        # Imported here: asyncpg is needed only by those who use PostgreSQL.
        from flowyard.cluster.leases import Leases, session_name
        from flowyard.storage.postgres import PostgresDatabase

        if not isinstance(self.db, PostgresDatabase):
            raise ValueError("a cluster node (node_url) needs a PostgreSQL database")
        leases = Leases(self.settings.db, node_url)
        self.db.session_name = session_name(leases.node_id)
        self.db.on_fenced = leases.lost
        self._fenced_store = self.db
        return leases

    def _fence(self, leases: "Leases") -> None:
        """From now on the writer commits only under this node's current lease epoch."""
        assert self._fenced_store is not None
        self._fenced_store.fence = (leases.node_id, leases.epoch)

    def _build(self, placement: Placement) -> None:
        """The engines of the shards ``placement`` holds (all of them but on a cluster)."""
        settings, metrics = self.settings, self.metrics
        self.jobs = JobEngine(
            self.db, settings, self.dispatcher, self.accounts, metrics, self.clock, placement
        )
        self.workflows = WorkflowEngine(self.db, self.jobs, settings, metrics)
        self.schedules = Schedules(self.workflows)
        self.outbox = Outbox(self.db, settings, self.dispatcher, self.jobs, metrics)
        self.webhooks = Webhooks(self.db, self.outbox, self.accounts)
        self.workflows.emit = self.outbox.subscriptions.execution_change
        self.workflows.emitted = self.outbox.enqueue
        if self.leases is not None:
            notices = self.leases.notices
            self.jobs.live.on_ready = notices.announce
            notices.on_ready = self._ready_elsewhere
            notices.on_settings = self._changed_elsewhere
            self.jobs.changed = self.workflows.blueprints.changed = notices.publish

    def _changed_elsewhere(self, change: str) -> None:
        """Another node changed settings every node keeps in memory: take them again."""
        kind, _, rest = change.partition(" ")
        if kind == "blueprint":
            self.workflows.blueprints.forget(rest)
        elif self.jobs.tg is not None:
            reload = {"queue": self.jobs.reload_queues, "webhook": self.outbox.reload}.get(kind)
            if reload is not None:
                self.jobs.tg.start_soon(reload)

    def _ready_elsewhere(self, project_id: str, name: str) -> None:
        """Another node has a ready job in a queue: a claim waiting here goes for it."""
        queue = self.jobs.queues.get((project_id, name))
        if queue is not None:
            queue.wake_one()

    def _queue_depths(self) -> dict[str, int]:
        """Pending jobs per queue name, summed over the projects (as ``GET /infra/queues``
        counts a queue's depth)."""
        depths: dict[str, int] = {}
        for queue in list(self.jobs.queues.values()):
            depths[queue.name] = depths.get(queue.name, 0) + len(queue.pending)
        return depths

    def check_ready(self) -> None:
        """Raise 503 until rehydration is done, while shutting down, and after a crash."""
        if self.failure is not None:
            raise Unavailable(f"{self.failure}; the server is stopping")
        if not self.ready.is_set():
            raise Unavailable("starting: live state is being restored")
        if self.leases is not None and self.leases.moving:
            raise Unavailable("shards are moving between nodes; retry")
        self.jobs.check_available()

    def check_health(self) -> None:
        """What ``/readyz`` reports: :meth:`check_ready`, and 503 while storage is failing.

        API reads keep working while the disk is full or read-only (they only check
        :meth:`check_ready`); readiness says that writes would be refused.
        """
        self.check_ready()
        self.db.check_writable()

    async def open_store(self) -> None:
        """Open the store (once): ``flowyard serve`` does it before it starts serving, so that
        a database another server holds stops it at once.

        Raises:
            DatabaseInUse: another server holds the (PostgreSQL) database.
        """
        if not self._store_open:
            await self.db.open()
            self._store_open = True

    @asynccontextmanager
    async def running(self) -> AsyncIterator["Supervisor"]:
        """Run the runtime for the duration of the block."""
        await self.open_store()
        try:
            async with anyio.create_task_group() as outer:
                await outer.start(self._contained, "the writer", self.db.run_writer)
                self._secret = await server_secret(self.db)
                if self.leases is not None:
                    await self._join(self.leases)
                self.jobs.push.server_secret = self._secret
                async with anyio.create_task_group() as engines:
                    engines.start_soon(self._contained, "the engines", self._start)
                    try:
                        yield self
                    finally:
                        self.jobs.begin_shutdown()
                        engines.cancel_scope.cancel()
                self.db.close_writer()
            if self.leases is not None:
                await self.leases.leave()  # SIGTERM: hand every shard over
        finally:
            with anyio.CancelScope(shield=True):
                await self.dispatcher.aclose()
                await self.db.close()

    async def _start(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with anyio.create_task_group() as tg:
            await tg.start(self.accounts.run)
            if self.leases is None:
                await tg.start(self._engines)
                self.ready.set()
                log.info("ready")
                return
            await tg.start(self.leases.run)
            await self._serve_shards(self.leases)

    async def _engines(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Rehydrate and run the engines of the shards held, until cancelled."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.outbox.run)  # subscriptions before any transition emits
            # Executions first: rehydrated jobs may report results to them at once.
            await tg.start(self.workflows.run)
            await tg.start(self.jobs.run)
            await tg.start(self.schedules.run)  # missed fires fire once the rest is up
            task_status.started()

    async def _join(self, leases: "Leases") -> None:
        """Join the cluster: register, take a first share of the shards, build their engines."""
        await leases.join(self.settings.shards)
        self._fence(leases)
        self._build(Placement(leases.total, leases.owned))

    async def _serve_shards(self, leases: "Leases") -> None:
        """Hold the shards the node owns; rebuild the engines whenever that changes.

        A change (shards taken over from a dead node, handed over to a new one, or all lost
        to a fence) stops the engines, waits for the writer to commit what they wrote, applies
        the change in the database (``Leases.settle``) and rehydrates the shards now held.
        Meanwhile the API answers 503 (retry), as it does while starting.
        """
        while True:
            async with anyio.create_task_group() as held:
                await held.start(self._engines)
                self.ready.set()
                leases.settled()
                log.info("ready, holding %d shards", len(leases.owned))
                await leases.changed.wait()
                self.jobs.begin_shutdown()
                held.cancel_scope.cancel()
            await self.db.submit([]).done  # what the engines wrote is committed (or failed)
            owned = await leases.settle()
            self._fence(leases)
            self._build(Placement(leases.total, owned))
            self.jobs.push.server_secret = self._secret

    async def _contained(
        self,
        name: str,
        service: Callable[..., Awaitable[None]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run a core service; if it crashes, fail the process instead of the task group.

        Left to propagate, the error would cancel the lifespan while the HTTP server went on
        answering every request with 500 (or 503 forever).
        """
        try:
            await service(task_status=task_status)
        except Exception as exc:
            cause = _first_leaf(exc)
            self.fail(f"{name} crashed ({type(cause).__name__}: {cause})"[:500], exc)

    def fail(self, reason: str, exc: BaseException | None = None) -> None:
        """A core service is gone: report not ready, then ask the server to stop."""
        if self.failure is not None:
            return
        self.failure = reason
        log.critical("%s; stopping so that the process can be restarted", reason, exc_info=exc)
        if self.on_failure is not None:
            self.on_failure()


def _first_leaf(exc: BaseException) -> BaseException:
    """The first error inside (nested) task group exception groups: the one worth naming."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
