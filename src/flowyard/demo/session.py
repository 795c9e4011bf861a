"""One demo run against a ready server: workers in this process, the blueprint, the orders,
progress as executions end, and a clean stop (workers drain before the caller stops the server).
"""

import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import httpx
from anyio import CancelScope

from flowyard.client import AsyncClient, FlowyardAPIError
from flowyard.demo import orders
from flowyard.demo.handlers import demo_worker
from flowyard.demo.tally import Order, Tally
from flowyard.worker import Worker

POLL_SECONDS = 0.25


@dataclass
class Session:
    """What one run needs and what came of it.

    Attributes:
        url: the server's base URL.
        api_key: a key of the ``demo`` project.
        executions: how many orders to trigger.
        exit_when_done: stop once every execution has ended (else serve until a signal).
        timeout: with ``exit_when_done``, the longest wait for the executions to end.
    """

    url: str
    api_key: str
    executions: int
    exit_when_done: bool
    timeout: float
    run_id: str = field(default_factory=orders.new_run_id)
    tally: Tally = field(default_factory=Tally)
    failed: bool = False
    interrupted: bool = False

    def status(self) -> int:
        """The exit status: 0 after a clean run (with ``--exit``: every order as planned)."""
        if self.failed:
            return 1
        if self.exit_when_done:
            return 0 if not self.interrupted and not self.tally.unplanned() else 1
        return 0

    async def run(self) -> int:
        """Run the workers and the show until done (``--exit``) or until SIGINT/SIGTERM."""
        worker = demo_worker(self.url, self.api_key)
        show = CancelScope()
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as watch:
                watch.start_soon(self._on_signals, signals, show, worker)
                async with anyio.create_task_group() as work:
                    work.start_soon(self._work, worker, show)
                    async with AsyncClient(self.url, self.api_key) as client:
                        with show:
                            await self._show(client)
                    say("stopping the workers (they finish the jobs they hold)")
                    worker.stop()
                watch.cancel_scope.cancel()
        return self.status()

    async def _on_signals(
        self, signals: AsyncIterator[signal.Signals], show: CancelScope, worker: Worker
    ) -> None:
        async for signum in signals:
            if not self.interrupted:
                self.interrupted = True
                say(f"{signal.Signals(signum).name}: shutting down")
                show.cancel()
            else:  # a second signal: do not wait for the jobs held
                worker.stop(force=True)

    async def _work(self, worker: Worker, show: CancelScope) -> None:
        try:
            await worker.arun()
        except (FlowyardAPIError, httpx.HTTPError) as exc:
            say(f"the workers stopped: {exc}")
            self.failed = True
            show.cancel()

    async def _show(self, client: AsyncClient) -> None:
        try:
            blueprint_id = await self._blueprint(client)
            say(f"dashboard: {self.url}/dashboard")
            say(f"sign in with the API key: {self.api_key}")
            await self._trigger(client, blueprint_id)
            if self.exit_when_done:
                with anyio.move_on_after(self.timeout) as waited:
                    await self._follow(client, blueprint_id)
                if waited.cancelled_caught:
                    say(f"not every execution ended within {self.timeout:g} s")
            else:
                await self._follow(client, blueprint_id)
            for line in self.tally.verdict():
                say(line)
        except (FlowyardAPIError, httpx.HTTPError) as exc:
            say(f"error: {exc}")
            self.failed = True
            return
        if not self.exit_when_done:
            say(f"serving {self.url}/dashboard with the demo workers; Ctrl-C stops both")
            await anyio.sleep_forever()

    async def _blueprint(self, client: AsyncClient) -> str:
        """The demo blueprint: the one an earlier run created, else a new one."""
        cursor: str | None = None
        while True:
            page = await client.workflows.list_blueprints(limit=100, cursor=cursor)
            for found in page.items:
                if (found.name, found.description) == (
                    orders.BLUEPRINT_NAME,
                    orders.BLUEPRINT_DESCRIPTION,
                ):
                    say(f"blueprint {found.name} {found.id} (from an earlier run)")
                    return found.id
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        created = await client.workflows.create_blueprint(orders.BLUEPRINT)
        say(f"blueprint {created.name} {created.id} created")
        return created.id

    async def _trigger(self, client: AsyncClient, blueprint_id: str) -> None:
        for number in range(1, self.executions + 1):
            started = await client.workflows.trigger(
                blueprint_id,
                orders.order(self.run_id, number),
                idempotency_key=orders.idempotency_key(self.run_id, number),
            )
            order_id = orders.order_id(self.run_id, number)
            self.tally.add(Order(order_id, started.execution_id, orders.planned(number)))
        refused = sum(orders.refused(n) for n in range(1, self.executions + 1))
        say(
            f"triggered {self.executions} orders (run {self.run_id}); {refused} of them"
            " ship to a P.O. box, which the carrier refuses: their charge is refunded and they"
            " end compensated, the others completed"
        )

    async def _follow(self, client: AsyncClient, blueprint_id: str) -> None:
        """Poll the blueprint's executions (newest first, so this run's come first) until
        every one of ours has ended, printing a line as each does."""
        while not self.tally.done:
            await anyio.sleep(POLL_SECONDS)
            wanted = self.tally.open
            cursor: str | None = None
            while wanted:
                page = await client.workflows.list_executions(
                    blueprint_id=blueprint_id, limit=100, cursor=cursor
                )
                for execution in page.items:
                    wanted.discard(execution.id)
                    line = self.tally.record(execution)
                    if line is not None:
                        say(line)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor


def say(line: str) -> None:
    """One line of the demo's story, on stdout at once."""
    print(line, flush=True)
