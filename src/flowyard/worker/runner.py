"""The :class:`Worker`: handler registration, claim loops, and a graceful stop."""

import functools
import logging
import math
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import httpx
from anyio.abc import TaskGroup, TaskStatus

from flowyard.client import AsyncClient, Client, RetryPolicy
from flowyard.client.errors import BadRequest, FlowyardAPIError, Forbidden, NotFound, Unauthorized
from flowyard.client.models import ClaimedJob
from flowyard.worker.acks import AckBox
from flowyard.worker.job import (
    RETRY_BACKOFF,
    HandlerFn,
    Outcome,
    Route,
    ack_item,
    refused,
    run_job,
    send_ack,
)
from flowyard.worker.slots import Slots

log = logging.getLogger("flowyard.worker")

F = TypeVar("F", bound=HandlerFn)

MAX_CLAIM = 100
"""The most jobs one claim may ask for (the API's limit)."""
FATAL = (BadRequest, Unauthorized, Forbidden, NotFound)
"""Claim errors that retrying cannot fix: the worker stops with them."""


class Worker:
    """Runs handlers for pull queues (see the module's docstring).

    Args:
        client: an :class:`AsyncClient` to use as is, a :class:`Client` whose settings to copy,
            a base URL, or None for ``FLOWYARD_URL``.
        api_key: the key when ``client`` is a URL or None (default ``FLOWYARD_API_KEY``).
        concurrency: jobs held and run at once, across queues.
        visibility_timeout: seconds of each lease (renewed while the handler runs).
        wait_seconds: how long one claim long-polls (0..20); a stop waits for the claim in
            flight, so this bounds how long a stop takes to begin draining.
        shutdown_timeout: seconds a stop waits for held jobs before cancelling them (None:
            as long as they take).
        timeout, retry: for the client the worker creates.
    """

    def __init__(
        self,
        client: AsyncClient | Client | str | None = None,
        api_key: str | None = None,
        *,
        concurrency: int = 10,
        visibility_timeout: int = 30,
        wait_seconds: float = 2.0,
        shutdown_timeout: float | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 <= wait_seconds <= 20:
            raise ValueError("wait_seconds must be 0..20")
        self._client_arg = client
        self._api_key = api_key
        self._timeout = timeout
        self._retry = retry
        self.concurrency = concurrency
        self.visibility_timeout = visibility_timeout
        self.wait_seconds = wait_seconds
        self.shutdown_timeout = shutdown_timeout
        self.routes: dict[str, Route] = {}
        self.stopping = False
        self.forced = False
        self._scopes: set[anyio.CancelScope] = set()  # waits that a stop interrupts
        self._jobs_scope: anyio.CancelScope | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._thread: int | None = None
        self._fatal: FlowyardAPIError | None = None
        self.client: AsyncClient
        self._slots: Slots
        self._threads: anyio.CapacityLimiter
        self._batch: int
        self._boxes: dict[str, AckBox] = {}

    # ------------------------------------------------------------------ registration

    def handler(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        visibility_timeout: int | None = None,
    ) -> Callable[[F], F]:
        """Decorator: ``fn`` handles the jobs of pull queue ``queue``.

        ``concurrency`` caps this queue's jobs within the worker's overall limit;
        ``visibility_timeout`` overrides the worker's for this queue.
        """

        def register(fn: F) -> F:
            self.add_handler(queue, fn, concurrency=concurrency, visibility_timeout=vt)
            return fn

        vt = visibility_timeout
        return register

    def add_handler(
        self,
        queue: str,
        fn: HandlerFn,
        *,
        concurrency: int | None = None,
        visibility_timeout: int | None = None,
    ) -> None:
        """Register ``fn`` for ``queue`` (see :meth:`handler`)."""
        if queue in self.routes:
            raise ValueError(f"queue {queue!r} already has a handler")
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        vt = self.visibility_timeout if visibility_timeout is None else visibility_timeout
        self.routes[queue] = Route.of(queue, fn, concurrency, vt)

    # ----------------------------------------------------------------------- running

    def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; the exit status: 0 after a drain, 1 if jobs were cancelled.

        With ``handle_signals`` (in the main thread), the first SIGTERM or SIGINT stops
        claiming and drains; a second one cancels the jobs still running.
        """
        return anyio.run(self._main, handle_signals)

    async def _main(self, handle_signals: bool) -> int:
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            if handle_signals and threading.current_thread() is threading.main_thread():
                await tg.start(self._watch_signals)
            try:
                await self.arun()
            except Exception as exc:  # raised as it is, not inside an ExceptionGroup
                error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        return 1 if self.forced else 0

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                if not self.stopping:
                    log.info("%s: finishing held jobs, then exiting", signal.Signals(signum).name)
                    self.stop()
                else:
                    log.warning("%s again: cancelling running jobs", signal.Signals(signum).name)
                    self.stop(force=True)

    async def arun(self) -> None:
        """Claim and run jobs until :meth:`stop`; returns once every held job is acked.

        A stop requested before the call makes it return at once; after it returns, the
        worker may be run again.
        """
        if not self.routes:
            raise RuntimeError("no handlers registered")
        self.forced = False
        self._fatal = None
        self._token = anyio.lowlevel.current_token()
        self._thread = threading.get_ident()
        try:
            await self._run()
        finally:
            self.stopping = False
            self._thread = self._token = self._jobs_scope = None
        if self._fatal is not None:
            raise self._fatal

    async def _run(self) -> None:
        self._slots = Slots(self.concurrency)
        self._threads = anyio.CapacityLimiter(self.concurrency)
        share = max(1, math.ceil(self.concurrency / len(self.routes)))
        self._batch = min(MAX_CLAIM, share)
        async with AsyncExitStack() as stack:
            if isinstance(self._client_arg, AsyncClient):
                self.client = self._client_arg  # the caller's to close
            else:
                self.client = await stack.enter_async_context(self._new_client())
            log.info("claiming from %s at %s", ", ".join(self.routes), self.client.base_url)
            async with anyio.create_task_group() as jobs:
                self._jobs_scope = jobs.cancel_scope
                async with anyio.create_task_group() as loops:
                    for route in self.routes.values():
                        loops.start_soon(self._claim_loop, route, Slots(route.concurrency), jobs)
                if self.shutdown_timeout is not None and not self.forced:
                    with anyio.move_on_after(self.shutdown_timeout) as waited:
                        await self._slots.wait_empty()
                    if waited.cancelled_caught:
                        log.warning("shutdown_timeout: cancelling %d jobs", self._slots.used)
                        self.stop(force=True)

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming and drain held jobs (``force``: cancel them). Any thread may call it."""
        if self._thread is not None and threading.get_ident() != self._thread:
            anyio.from_thread.run_sync(self._stop, force, token=self._token)
        else:
            self._stop(force)

    def _stop(self, force: bool) -> None:
        self.stopping = True
        for scope in self._scopes:
            scope.cancel()
        if force:
            self.forced = True
            if self._jobs_scope is not None:
                self._jobs_scope.cancel()

    @property
    def held(self) -> int:
        """Jobs claimed and not yet acked (plus claims in flight)."""
        slots: Slots | None = getattr(self, "_slots", None)
        return slots.used if slots else 0

    @property
    def api_key(self) -> str | None:
        """The key the worker's client sends: its own client's or key, else
        ``FLOWYARD_API_KEY`` (read now); None when there is none."""
        source = self._client_arg
        if isinstance(source, AsyncClient | Client):
            return source.connection.api_key
        return self._api_key or os.environ.get("FLOWYARD_API_KEY") or None

    def _new_client(self) -> AsyncClient:
        source = self._client_arg
        assert not isinstance(source, AsyncClient)
        limits = httpx.Limits(max_connections=2 * self.concurrency + len(self.routes) + 4)
        if isinstance(source, Client):
            connection = source.connection
            return AsyncClient(
                connection.base_url,
                connection.api_key,
                timeout=connection.timeout,
                retry=connection.retry,
                limits=limits,
            )
        return AsyncClient(
            source, self._api_key, timeout=self._timeout, retry=self._retry, limits=limits
        )

    # ------------------------------------------------------------------------ claims

    async def _interruptible(self, wait: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``wait`` unless a stop comes first; whether it finished."""
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                if self.stopping:
                    scope.cancel()
                await wait()
            finally:
                self._scopes.discard(scope)
        return not scope.cancelled_caught

    async def _claim_loop(self, route: Route, queue_slots: Slots, jobs: TaskGroup) -> None:
        """Exchange the acks handed to ``box`` for new jobs of ``route`` until a stop; then
        send the acks still handed over, and return."""
        box = AckBox()
        self._boxes[route.queue] = box
        pause = RETRY_BACKOFF[0]
        try:
            while True:
                acks = box.take()
                if self.stopping:
                    if acks:
                        await self._exchange(route, queue_slots, jobs, acks, 0, claim=False)
                    return
                if acks:
                    wanted = queue_slots.take_nowait(self._batch)
                    reserved = self._slots.take_nowait(wanted)
                    queue_slots.give(wanted - reserved)
                else:
                    reserved = await self._reserve(queue_slots, box)
                    acks = box.take()
                    if self.stopping or not (acks or reserved):
                        self._release(queue_slots, reserved)
                        box.pending[:0] = acks  # flushed on the way out
                        continue
                if not await self._exchange(route, queue_slots, jobs, acks, reserved, claim=True):
                    await self._interruptible(functools.partial(anyio.sleep, pause))
                    pause = min(pause * 2, RETRY_BACKOFF[1])
                else:
                    pause = RETRY_BACKOFF[0]
                if self._fatal is not None:
                    return
        finally:
            self._boxes.pop(route.queue, None)

    async def _reserve(self, queue_slots: Slots, box: AckBox) -> int:
        """Wait for free slots (taking up to a batch of them), until a stop or an ack handed
        to ``box`` interrupts the wait; the slots taken (maybe none)."""
        reserved = 0

        async def reserve() -> None:
            nonlocal reserved
            wanted = await queue_slots.take(self._batch)
            try:
                reserved = await self._slots.take(wanted)
            finally:
                queue_slots.give(wanted - reserved)

        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            box.waiting = scope
            try:
                if self.stopping or box.pending:
                    scope.cancel()
                await reserve()
            finally:
                box.waiting = None
                self._scopes.discard(scope)
        return reserved

    async def _exchange(
        self,
        route: Route,
        queue_slots: Slots,
        jobs: TaskGroup,
        acks: list[tuple[ClaimedJob, Outcome]],
        reserved: int,
        *,
        claim: bool,
    ) -> bool:
        """Send ``acks`` and claim jobs for the ``reserved`` slots and the acks' own (none
        without ``claim``); start the jobs claimed. Whether the request went through.

        The acks' slots count as reserved: their jobs are done. If the request fails, each
        ack is sent again on its own, holding its slot until then.
        """
        count = min(MAX_CLAIM, reserved + len(acks)) if claim else 0
        held = reserved + len(acks)
        # Not interruptible: jobs the server hands to a request we gave up on would stay
        # leased to nobody until their visibility timeout.
        try:
            answer = await self.client.jobs.exchange(
                [ack_item(job, outcome) for job, outcome in acks],
                queue=route.queue if count else None,
                count=count,
                visibility_timeout=route.visibility_timeout,
                wait_seconds=self.wait_seconds,
            )
        except (FlowyardAPIError, httpx.HTTPError) as exc:
            self._release(queue_slots, held - len(acks))
            for job, outcome in acks:
                jobs.start_soon(self._ack_alone, queue_slots, job, outcome, name=f"ack {job.id}")
            if isinstance(exc, FATAL) and not acks:
                log.error("claim on %r refused (%s): stopping", route.queue, exc)
                self._fatal = self._fatal or exc
                self.stop(force=True)
            else:
                log.warning("claim on %r failed (%s); retrying", route.queue, exc)
            return False
        self._release(queue_slots, held - len(answer.jobs))
        for (job, outcome), done in zip(acks, answer.acks, strict=True):
            again = None if done.ok else refused(job, outcome, done)
            if again is not None:  # its slot went to the claim: it is sent again without one
                jobs.start_soon(send_ack, self.client, job, again, name=f"ack {job.id}")
        for job in answer.jobs:
            jobs.start_soon(self._process, route, queue_slots, job, name=f"job {job.id}")
        return True

    def _release(self, queue_slots: Slots, count: int) -> None:
        self._slots.give(count)
        queue_slots.give(count)

    async def _process(self, route: Route, queue_slots: Slots, job: ClaimedJob) -> None:
        """Run the job; its ack goes with the queue's next claim if the claim loop is waiting
        for a slot (the job's slot goes with it), else on its own at once."""
        handed = False
        try:
            outcome = await run_job(self.client, route, job, self._threads)
            box = self._boxes.get(route.queue)
            handed = box is not None and not self.stopping and box.offer(job, outcome)
            if not handed:
                await send_ack(self.client, job, outcome)
        finally:
            if not handed:
                self._release(queue_slots, 1)

    async def _ack_alone(self, queue_slots: Slots, job: ClaimedJob, outcome: Outcome) -> None:
        try:
            await send_ack(self.client, job, outcome)
        finally:
            self._release(queue_slots, 1)
