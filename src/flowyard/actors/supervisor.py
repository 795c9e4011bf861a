"""The supervisor: owns the task group, the database and the engines, and shuts down in order.

Start: open SQLite, start the writer, rehydrate every live job, re-arm every timer, then report
ready. Stop: stop taking work, cancel the engines, let the writer commit what it holds, close.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from flowyard.actors.accounts import Accounts
from flowyard.actors.dispatcher import Dispatcher
from flowyard.actors.jobs import JobEngine
from flowyard.actors.workflows import WorkflowEngine
from flowyard.errors import Unavailable
from flowyard.settings import Settings
from flowyard.storage.projects import server_secret
from flowyard.storage.sqlite import Database

log = logging.getLogger("flowyard")

SHUTDOWN_GRACE_SECONDS = 10.0


class Supervisor:
    """Everything that runs inside ``flowyard serve`` except HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.db, sync=settings.sync)
        own = frozenset({settings.host, "127.0.0.1", "::1", "0.0.0.0"})
        self.dispatcher = Dispatcher(handler_network=settings.handler_network, own_hosts=own)
        self.accounts = Accounts(self.db)
        self.jobs = JobEngine(self.db, settings, self.dispatcher, self.accounts)
        self.workflows = WorkflowEngine(self.db, self.jobs, settings)
        self.ready = anyio.Event()

    def check_ready(self) -> None:
        """Raise 503 until rehydration is done, and while shutting down."""
        if not self.ready.is_set():
            raise Unavailable("starting: live state is being restored")
        self.jobs.check_available()

    @asynccontextmanager
    async def running(self) -> AsyncIterator["Supervisor"]:
        """Run the runtime for the duration of the block."""
        await self.db.open()
        try:
            async with anyio.create_task_group() as outer:
                await outer.start(self.db.run_writer)
                self.jobs.push.server_secret = await server_secret(self.db)
                async with anyio.create_task_group() as engines:
                    engines.start_soon(self._start, engines)
                    try:
                        yield self
                    finally:
                        self.jobs.begin_shutdown()
                        engines.cancel_scope.cancel()
                self.db.close_writer()
        finally:
            with anyio.CancelScope(shield=True):
                await self.dispatcher.aclose()
                await self.db.close()

    async def _start(self, tg: anyio.abc.TaskGroup) -> None:
        await tg.start(self.accounts.run)
        # Executions first: rehydrated jobs may report results to them at once.
        await tg.start(self.workflows.run)
        await tg.start(self.jobs.run)
        self.ready.set()
        log.info("ready")
