"""The jobs engine: the facade the HTTP layer and the workflow engine call.

It owns every pending, running and scheduled job (:mod:`~flowyard.actors.live_jobs`), and
puts together the parts that move them: the pure lifecycle rules
(:mod:`flowyard.jobs.transitions`), the timers and effects (:mod:`~flowyard.actors.scheduling`),
the pull protocol (:mod:`~flowyard.actors.claims`), the end of attempts
(:mod:`~flowyard.actors.settling`) and push delivery (:mod:`~flowyard.actors.push`).

Commit before acting: a transition is applied to memory at once, written with the
group-commit writer, and only then are its effects run (a job made ready, a timer armed, a
reply sent). If the commit fails the memory change is undone.
"""

import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager as ContextManager

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from flowyard import logs
from flowyard.actors.accounts import Accounts
from flowyard.actors.claims import Claims
from flowyard.actors.dispatcher import Dispatcher
from flowyard.actors.live_jobs import Change, LiveJobs
from flowyard.actors.push import PushDelivery
from flowyard.actors.queues import Queue
from flowyard.actors.scheduling import Scheduler, TimerHook
from flowyard.actors.settling import Settling
from flowyard.actors.timers import Timers
from flowyard.billing import JOB_WRITE
from flowyard.clock import SYSTEM_CLOCK, Clock
from flowyard.cluster.keyed import JOBS_SCOPE
from flowyard.cluster.shards import Placement
from flowyard.errors import Conflict, NotFound, Unavailable, invalid_field
from flowyard.jobs.events import Interrupted, RetryRequested, Transition, TriggerRequested
from flowyard.jobs.model import Delayed, Job, PushQueue, Run, Scheduled, WorkflowRef, holder_id
from flowyard.jobs.spec import (
    JobPatch,
    JobSpec,
    TriggerPatch,
    check_payload,
    check_schedule,
    check_timezone,
    check_url,
    validate_spec,
)
from flowyard.jobs.transitions import created, edited, transition
from flowyard.metrics import Metrics
from flowyard.settings import Settings
from flowyard.storage import jobs as store
from flowyard.storage.intents import Intent
from flowyard.storage.jobs import QueueSettings
from flowyard.storage.port import Store

__all__ = ["Change", "JobEngine", "JobSettled"]

log = logging.getLogger("flowyard.jobs")

JobSettled = Callable[[Change, list[Run]], Awaitable[None]]
"""Commits a workflow step job's final transition together with the step transition."""
JobsSettled = Callable[[list[tuple[Change, list[Run]]]], Awaitable[list[BaseException | None]]]
"""As ``JobSettled`` for several jobs at once (an exchange's acks); per job, None or the error
(the jobs of one execution may share a commit)."""


class JobEngine:
    """Owns every pending, running and scheduled job; the HTTP layer calls its methods."""

    def __init__(
        self,
        db: Store,
        settings: Settings,
        dispatcher: Dispatcher,
        accounts: Accounts,
        metrics: Metrics,
        clock: Clock = SYSTEM_CLOCK,
        placement: Placement | None = None,
    ) -> None:
        self.db = db
        # The shards held here: the jobs rehydrated, and where new ones go.
        self.placement = placement or Placement.everything()
        self.accounts = accounts
        self.settings = settings
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.clock = clock
        self.live = LiveJobs(db, metrics)
        self.jobs: dict[str, Job] = self.live.jobs
        self.runs: dict[str, Run] = self.live.runs
        self.queues: dict[tuple[str, str], Queue] = self.live.queues
        self.scheduler = Scheduler(self, clock)
        self.timers: Timers = self.scheduler.timers
        self.timer_hooks: dict[type, TimerHook] = self.scheduler.hooks
        self.claims = Claims(self)
        self.settling = Settling(self)
        self.workflow_settled: JobSettled | None = None
        self.workflow_settled_together: JobsSettled | None = None
        self.workflow_starting: Callable[[list[Job]], list[Intent]] | None = None
        self._creating_keys: set[tuple[str, str]] = set()
        # A cluster node's: tells the other nodes that shared settings changed here.
        self.changed: Callable[[str], None] | None = None
        self.push = PushDelivery(self, settings, dispatcher)
        self.tg: TaskGroup | None = None
        self.stopping = False
        # The parts' entry points, called as the engine's own.
        self.queue = self.live.queue
        self.project_queues = self.live.project_queues
        self.commit = self.live.commit
        self.is_ready = self.scheduler.is_ready
        self.admit_one = self.scheduler.admit
        self.spawn = self.scheduler.spawn
        self.retry_soon = self.scheduler.retry_soon
        self.claim = self.claims.claim
        self.heartbeat = self.claims.heartbeat
        self.ack = self.claims.ack
        self.ack_each = self.claims.ack_each
        self.settle = self.settling.settle
        self.settle_when_possible = self.settling.settle_when_possible

    # ----------------------------------------------------------------- life cycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Rehydrate from SQLite, then run timers and push delivery until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                await self._rehydrate()
                await tg.start(self.timers.run)
                await tg.start(self.push.run)
                task_status.started()
        finally:
            self.tg = None  # stopped (a cluster node's shards changed): see ``spawn``

    def begin_shutdown(self) -> None:
        """Answer long-poll claims now (empty) and start no new deliveries."""
        self.stopping = True
        for queue in self.queues.values():
            queue.wake_all()

    async def _rehydrate(self) -> None:
        for project_id, name, queue_settings in await store.all_queue_settings(self.db):
            self.queue(project_id, name).settings = queue_settings
        holds = self.placement.holds
        live = [job for job in await store.live_jobs(self.db) if holds(holder_id(job))]
        open_runs = {
            run.id: run
            for run in await store.get_runs(self.db, [job.run_id for job in live if job.run_id])
        }
        redelivered = 0
        ops: list[Intent] = []
        now = self.clock.now_ms()
        for job in live:
            run = open_runs.get(job.run_id) if job.run_id else None
            if run is not None and not job.is_pull and job.callback_deadline is None:
                # A push delivery was in flight at the crash: deliver it again.
                done = transition(job, run, Interrupted(), now)
                job = done.job
                ops += [store.put_run(closed) for closed in done.runs]
                ops.append(store.put_job(job))
                redelivered += 1
            elif run is not None:
                self.runs[run.id] = run
            self.live.index(None, job)
        await self.db.commit(ops)
        for job in self.jobs.values():
            self.admit_one(job)
        log.info("rehydrated %d live jobs (%d redelivered)", len(self.jobs), redelivered)

    # ----------------------------------------------------------------- create
    def new_job(
        self, project_id: str, spec: JobSpec, now: int, workflow: WorkflowRef | None = None
    ) -> Job:
        """The record for a job created from ``spec`` at ``now`` (not yet stored)."""
        place = self.placement
        if workflow is not None:
            job_id = place.beside("job", workflow.execution_id)
        elif spec.idempotency_key:
            job_id = place.keyed("job", JOBS_SCOPE, spec.idempotency_key)
        else:
            job_id = place.new_id("job")
        return created(job_id, project_id, spec, now, workflow)

    async def create(
        self, project_id: str, specs: list[JobSpec], *, batch: bool = False
    ) -> list[Job]:
        """Create jobs all or nothing; an idempotency key seen before returns that job.

        With ``batch`` (or several specs) problems are named ``$.jobs[i]...``, else ``$...``.
        """
        for index, spec in enumerate(specs):
            validate_spec(spec, f"$.jobs[{index}]" if batch or len(specs) > 1 else "$")
        keys = [(project_id, s.idempotency_key) for s in specs if s.idempotency_key]
        if len(set(keys)) != len(keys):
            raise invalid_field("$.jobs", "idempotency_key repeated within one batch")
        while any(key in self._creating_keys for key in keys):
            await anyio.sleep(0.001)  # another request is creating that key right now
        self._creating_keys.update(keys)
        try:
            now = self.clock.now_ms()
            results: list[Job] = []
            fresh: list[Job] = []
            for spec in specs:
                existing = None
                if spec.idempotency_key:
                    existing = await store.find_by_idempotency_key(
                        self.db, project_id, spec.idempotency_key
                    )
                if existing is not None:
                    results.append(existing)
                else:
                    job = self.new_job(project_id, spec, now)
                    self.live.keep_request_id(job, logs.request_id.get())
                    fresh.append(job)
                    results.append(job)
            with self._paying(project_id, JOB_WRITE * len(specs)):
                await self.commit([(None, job) for job in fresh])
        finally:
            self._creating_keys.difference_update(keys)
        created_by = self.metrics.jobs_created_by
        for job in fresh:
            created_by[job.trigger_type].inc()
            self.admit_one(job)
        return results

    def _paying(self, project_id: str, nanos: int) -> ContextManager[None]:
        """Charge a client's write to the project's balance (402 if short), refunded on failure."""
        return self.accounts.paying(project_id, nanos, "infra/jobs")

    def admit(self, jobs: Iterable[Job]) -> None:
        """After a commit made elsewhere: schedule new or changed jobs."""
        for job in jobs:
            self.admit_one(job)

    def step_starts(self, jobs: Iterable[Job]) -> list[Intent]:
        """The writes that record workflow steps starting with these jobs' attempts.

        They go into the same transaction as the jobs' own start.
        """
        if self.workflow_starting is None:
            return []
        return self.workflow_starting([job for job in jobs if job.workflow])

    # ----------------------------------------------------------------- lookups

    async def require(self, project_id: str, job_id: str) -> Job:
        """The job (live from memory, else from SQLite), or 404."""
        job = self.jobs.get(job_id)
        if job is not None and job.project_id == project_id:
            return job
        stored = await store.get_job(self.db, project_id, job_id)
        if stored is None:
            raise NotFound(f"job {job_id} not found")
        return stored

    def _live(self, job: Job, action: str) -> Job:
        live = self.jobs.get(job.id)
        if live is None:
            raise Conflict(f"cannot {action} a job that is {job.status}")
        return live

    # ----------------------------------------------------------------- client commands

    async def cancel(self, project_id: str, job_id: str) -> Job:
        """Cancel a job that has not ended; 409 if it has."""
        job = self._live(await self.require(project_id, job_id), "cancel")
        done = self.settling.withdrawal(job, "cancelled")
        with self._paying(project_id, JOB_WRITE):
            if job.workflow is not None and self.workflow_settled is not None:
                await self.settling.settle_step((job, done.job), done.runs)
            else:
                await self.commit([(job, done.job)], done.runs)
        self.scheduler.run_effects(done)
        return done.job

    def withdrawal(self, job: Job, reason: str) -> tuple[Change, list[Run]]:
        """The change that cancels a live job for its workflow, and the run it closes (not yet
        stored; its timers are dropped when they fire)."""
        done = self.settling.withdrawal(job, reason)
        return (job, done.job), done.runs

    async def patch(self, project_id: str, job_id: str, patch: JobPatch) -> Job:
        """Change a job that has not run yet; 409 once it runs or has ended.

        The body is checked (400/413) before the job's state (409), as DESIGN §2 orders them.
        """
        stored = await self.require(project_id, job_id)
        changes: dict[str, object] = {}
        if patch.handler is not None:
            problems = check_url(patch.handler, "$.handler")
            if problems:
                raise invalid_field("$.handler", problems[0]["message"])
            changes["handler"] = patch.handler
        if not isinstance(patch.payload, msgspec.UnsetType):
            check_payload(patch.payload, "$.payload")
            changes["payload"] = patch.payload
        if patch.enabled is not None:
            changes["enabled"] = patch.enabled
        now = self.clock.now_ms()
        if patch.trigger is not None:
            changes.update(_patched_trigger(stored, patch.trigger, now))
        job = self._live(stored, "update")
        done = edited(job, changes, now, reschedule=patch.trigger is not None)
        return await self._client_write(job, done)

    async def retry(self, project_id: str, job_id: str) -> Job:
        """Send a failed job back to pending with fresh attempts; 409 unless failed."""
        job = await self.require(project_id, job_id)
        if job.id in self.jobs:
            raise Conflict(f"only a failed job can be retried; this one is {job.status}")
        done = transition(job, None, RetryRequested(), self.clock.now_ms())
        return await self._client_write(None, done)

    async def trigger(self, project_id: str, job_id: str) -> Job:
        """Fire a scheduled job now (or run a waiting job now); 409 if it is busy or ended."""
        job = self._live(await self.require(project_id, job_id), "trigger")
        done = transition(job, None, TriggerRequested(), self.clock.now_ms())
        return await self._client_write(job, done)

    async def _client_write(self, old: Job | None, done: Transition) -> Job:
        """Commit a client's change to one job, paid for; then run its effects."""
        with self._paying(done.job.project_id, JOB_WRITE):
            await self.commit([(old, done.job)], done.runs)
        self.scheduler.run_effects(done)
        return done.job

    # ----------------------------------------------------------------- pull protocol

    async def expire_lease(self, job_id: str, claim_token: str) -> None:
        """The lease named by ``claim_token`` ran out: the attempt failed."""
        await self.claims.expire_lease(job_id, claim_token)

    # ----------------------------------------------------------------- queues

    async def set_queue(
        self,
        project_id: str,
        name: str,
        *,
        concurrency: int | None | msgspec.UnsetType,
        rate_limit_per_second: float | None | msgspec.UnsetType,
        paused: bool | msgspec.UnsetType,
        handler: str | None | msgspec.UnsetType = msgspec.UNSET,
    ) -> Queue:
        """Change a queue's limits, pause it or set its default handler; unset fields keep
        their value. A new handler starts delivering the jobs that waited for one."""
        queue = self.queue(project_id, name)
        current = queue.settings
        updated = msgspec.structs.replace(
            current,
            **{
                field: value
                for field, value in (
                    ("concurrency", concurrency),
                    ("rate_limit_per_second", rate_limit_per_second),
                    ("paused", paused),
                    ("handler", handler),
                )
                if value is not msgspec.UNSET
            },
        )
        # Billed to the family of the route it answers (``PUT /infra/queues/{name}``).
        with self.accounts.paying(project_id, JOB_WRITE, "infra/queues"):
            await self.db.commit([store.put_queue(project_id, name, updated)])
        self.apply_settings(queue, updated)
        if self.changed is not None:
            self.changed(f"queue {project_id} {name}")
        return queue

    async def reload_queues(self) -> None:
        """Another node of the cluster changed a queue's settings: take them all again."""
        for project_id, name, settings in await store.all_queue_settings(self.db):
            queue = self.queue(project_id, name)
            if queue.settings != settings:
                self.apply_settings(queue, settings)

    def apply_settings(self, queue: Queue, updated: QueueSettings) -> None:
        """Committed settings of a queue take effect: a new handler starts delivering the
        jobs that waited for one, an unpaused queue wakes its claims and deliveries."""
        current = queue.settings
        queue.settings = updated
        project_id, name = queue.project_id, queue.name
        if updated.handler is not None and current.handler is None:
            # Jobs without a handler of their own were passed over while there was none.
            for job_id in list(queue.pending):
                job = self.jobs.get(job_id)
                if job is not None and _waits_for_handler(job) and self.is_ready(job_id):
                    self.scheduler.make_ready(job)
        if not updated.paused:
            queue.wake_all()
            if queue.has_deliverable:
                self.push.queue_ready(project_id, name)

    @property
    def ready(self) -> bool:
        """Whether rehydration has finished."""
        return self.tg is not None and not self.stopping

    def check_available(self) -> None:
        """Raise 503 while shutting down."""
        if self.stopping:
            raise Unavailable("shutting down")


def _waits_for_handler(job: Job) -> bool:
    """A push-queue job that names no handler: its queue's default handler receives it."""
    return isinstance(job.trigger, PushQueue) and job.handler is None


def _patched_trigger(job: Job, patch: TriggerPatch, now: int) -> dict[str, object]:
    trigger = job.trigger
    if isinstance(trigger, Scheduled):
        if patch.delay_seconds is not None:
            raise invalid_field("$.trigger.delay_seconds", "only a delayed job has a delay")
        schedule = patch.schedule or trigger.schedule
        timezone = patch.timezone or trigger.timezone
        problems = check_schedule(schedule, "$.trigger.schedule")
        problems += check_timezone(timezone, "$.trigger.timezone")
        if problems:
            raise invalid_field(problems[0]["path"], problems[0]["message"])
        return {"trigger": Scheduled(schedule=schedule, timezone=timezone)}
    if patch.schedule is not None or patch.timezone is not None:
        raise invalid_field("$.trigger.schedule", "only a scheduled job has a schedule")
    if patch.delay_seconds is not None:
        if not isinstance(trigger, Delayed):
            raise invalid_field("$.trigger.delay_seconds", "only a delayed job has a delay")
        return {
            "trigger": Delayed(delay_seconds=patch.delay_seconds),
            "run_at": now + patch.delay_seconds * 1000,
        }
    return {}
