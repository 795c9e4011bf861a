"""Push delivery: which push jobs go out when (queue limits, rate, pause), and the HTTP part.

The engine owns the jobs and decides what an outcome means; this class picks ready push jobs,
starts each attempt (committed before the POST), hands the handler's answer back to the engine,
and signs callback URLs (``callback_url`` notices go through the webhook outbox).
"""

import hashlib
import hmac
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from flowyard import logs
from flowyard.actors.dispatcher import Dispatcher, Outcome
from flowyard.actors.queues import Queue
from flowyard.errors import Conflict, NotFound, Unavailable
from flowyard.ids import new_id
from flowyard.jobs.events import DeliveryStarted, HandlerAccepted
from flowyard.jobs.model import Job, JobStatus
from flowyard.jobs.transitions import transition
from flowyard.logs import new_request_id
from flowyard.settings import Settings
from flowyard.storage.projects import signing_secret

if TYPE_CHECKING:
    from flowyard.actors.jobs import JobEngine

log = logging.getLogger("flowyard.push")

replace = msgspec.structs.replace


class PushDelivery:
    """Ready push jobs, the deliveries in flight, and the callbacks they expect."""

    def __init__(self, engine: "JobEngine", settings: Settings, dispatcher: Dispatcher) -> None:
        self.engine = engine
        self.settings = settings
        self.dispatcher = dispatcher
        self.public_url = settings.public_url or _own_url(settings.host, settings.port)
        self.server_secret = ""
        self._secrets: dict[str, str] = {}
        self._ready: deque[str] = deque()
        self._queues: set[tuple[str, str]] = set()
        self._wake = anyio.Event()
        self._in_flight = 0
        engine.timer_hooks[RateWait] = lambda _: self.wake()

    def ready(self, job_id: str) -> None:
        """A job without a queue is due: deliver it when a slot is free."""
        self._ready.append(job_id)
        self._wake.set()

    def queue_ready(self, project_id: str, name: str) -> None:
        """A push queue has a ready job (or was unpaused)."""
        self._queues.add((project_id, name))
        self._wake.set()

    def wake(self) -> None:
        """Look again (a rate limit may allow a delivery now)."""
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        limit = self.settings.push_concurrency
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                if self.engine.stopping:
                    continue
                while self._ready and self._in_flight < limit:
                    job_id = self._ready.popleft()
                    if self.engine.is_ready(job_id):
                        self._in_flight += 1
                        tg.start_soon(self._deliver, job_id)
                self._dispatch_queues(tg, limit)

    def _dispatch_queues(self, tg: TaskGroup, limit: int) -> None:
        now = self.engine.clock.now_ms()
        for key in list(self._queues):
            queue = self.engine.queues[key]
            while self._in_flight < limit and queue.has_deliverable:
                if not queue.may_dispatch(now):
                    if queue.settings.rate_limit_per_second and not queue.settings.paused:
                        self.engine.timers.arm(queue.next_token_ms(now), RateWait(*key))
                    break
                job_id = queue.pop(self._deliverable(queue), pull=False)
                if job_id is None:
                    break
                queue.took_token()
                queue.running.add(job_id)  # counts against concurrency before the commit
                self._in_flight += 1
                tg.start_soon(self._deliver, job_id)
            if not queue.has_deliverable:
                self._queues.discard(key)

    def _deliverable(self, queue: Queue) -> Callable[[str], bool]:
        """Whether a job of ``queue`` may go out now: ready, and with a handler to go to (its
        own or the queue's; one that has neither waits, pending, for the queue's)."""
        engine = self.engine
        if queue.settings.handler is not None:
            return engine.is_ready

        def deliverable(job_id: str) -> bool:
            job = engine.jobs.get(job_id)
            return job is not None and job.handler is not None and engine.is_ready(job_id)

        return deliverable

    async def _deliver(self, job_id: str) -> None:
        job = self.engine.jobs.get(job_id)
        request_id = self.engine.live.request_ids.get(job_id) or new_request_id()
        workflow = job.workflow if job is not None else None
        try:
            with logs.bound(
                request=request_id,
                project=job.project_id if job is not None else None,
                execution=workflow.execution_id if workflow is not None else None,
                job=job_id,
            ):
                try:
                    await self._deliver_once(job_id, request_id)
                except Exception:
                    log.exception("delivery of %s failed", job_id)
        finally:
            job = self.engine.jobs.get(job_id)
            if job is not None and job.queue is not None and job.status is not JobStatus.RUNNING:
                # Counted against the queue's concurrency before the delivery started.
                self.engine.queue(job.project_id, job.queue).running.discard(job_id)
            self._in_flight -= 1
            self._wake.set()

    async def _deliver_once(self, job_id: str, request_id: str) -> None:
        engine = self.engine
        job = engine.jobs[job_id]
        handler = job.handler
        if handler is None and job.queue is not None:
            handler = engine.queue(job.project_id, job.queue).settings.handler
        if handler is None:
            return  # the queue's handler was removed meanwhile: the job waits for a new one
        start = transition(job, None, DeliveryStarted(new_id("run")), engine.clock.now_ms())
        started, run = start.job, start.runs[0]
        try:
            await engine.commit([(job, started)], start.runs, engine.step_starts([started]))
        except Unavailable:
            engine.retry_soon(job.id)  # storage refused the start: deliver it later
            raise
        secret = await self.secret(job.project_id)
        callback = self.callback_url(job.id, run.id)
        headers = {
            "X-Flowyard-Job-Id": job.id,
            "X-Flowyard-Run-Id": run.id,
            "X-Flowyard-Attempt": str(started.attempt),
            "X-Flowyard-Callback-Url": callback,
            "X-Request-Id": request_id,
        }
        outcome = await self.dispatcher.post(
            handler, bytes(job.payload), headers, secret, job.timeout
        )
        current = engine.jobs.get(job_id)
        if current is None or current.run_id != run.id:
            return  # cancelled or overridden while the handler worked: its answer is moot
        if outcome.kind == "failed":
            log.info(
                "delivery of %s (attempt %d) failed: %s", job_id, started.attempt, outcome.error
            )
        if outcome.kind == "accepted":
            window = int(self.settings.callback_window_seconds * 1000)
            now = engine.clock.now_ms()
            accepted = HandlerAccepted(now + window, outcome.handler_status)
            waiting = transition(current, engine.runs.get(run.id), accepted, now)
            await engine.commit([(current, waiting.job)], waiting.runs)
            engine.scheduler.run_effects(waiting)
            return
        await engine.settle_when_possible(current, outcome)

    def callback_url(self, job_id: str, run_id: str) -> str:
        """The signed URL a handler that answered 202 posts its result to."""
        sig = _callback_signature(self.server_secret, job_id, run_id)
        return f"{self.public_url}/infra/jobs/{job_id}/runs/{run_id}/callback?sig={sig}"

    def check_callback(self, job_id: str, run_id: str, sig: str) -> None:
        """``NotFound`` unless ``sig`` signs this callback URL.

        Cheap and needing no body, so the route checks it before it reads one: an unsigned
        caller cannot make the service read (and hold) a body.
        """
        expected = _callback_signature(self.server_secret, job_id, run_id)
        if not secrets.compare_digest(expected.encode(), sig.encode()):  # sig: any text
            raise NotFound("unknown callback")

    async def callback(self, job_id: str, run_id: str, sig: str, outcome: Outcome) -> Job:
        """A deferred (202) result arriving on its signed callback URL."""
        self.check_callback(job_id, run_id, sig)
        job = self.engine.jobs.get(job_id)
        # A callback may overtake its own 202 answer (delivery still in flight): accept it;
        # the delivery then sees the run settled and drops the handler's answer.
        if job is None or job.run_id != run_id or job.is_pull:
            raise Conflict("this run is not waiting for a callback")
        return await self.engine.settle(job, outcome)

    async def expire_callback(self, job_id: str, run_id: str) -> None:
        job = self.engine.jobs.get(job_id)
        if job is None or job.run_id != run_id:
            return
        await self.engine.settle(
            job, Outcome("failed", error="callback_timeout: no callback in time")
        )

    async def secret(self, project_id: str) -> str:
        secret = self._secrets.get(project_id)
        if secret is None:
            secret = await signing_secret(self.engine.db, project_id) or ""
            self._secrets[project_id] = secret
        return secret

    def forget_secret(self, project_id: str) -> None:
        """Drop a cached signing secret (after a rotation)."""
        self._secrets.pop(project_id, None)


class RateWait(msgspec.Struct, frozen=True, gc=False):
    """A timer key: a push queue's rate limit allows a delivery again."""

    project_id: str
    queue: str


def _callback_signature(secret: str, job_id: str, run_id: str) -> str:
    return hmac.new(secret.encode(), f"{job_id}.{run_id}".encode(), hashlib.sha256).hexdigest()


def _own_url(host: str, port: int) -> str:
    """Where handlers reach this server: a wildcard bind address is reached on loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
