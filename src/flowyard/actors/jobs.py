"""The jobs engine: every live job in memory, its queues and timers, SQLite underneath.

Rules that hold everywhere here:

* Commit before acting. A transition is applied to memory at once (so that no other task can
  claim or deliver the same job), written with the group-commit writer, and only then are its
  effects run (a job made ready, a timer armed, a reply sent). If the commit fails the memory
  change is undone.
* Terminal jobs leave memory; reads of jobs go to SQLite.
* Timers and heap entries are never removed; each is checked against the job when it fires.
"""

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from contextlib import AbstractContextManager as ContextManager

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus
from msgspec import Raw

from flowyard.actors.accounts import Accounts
from flowyard.actors.dispatcher import Dispatcher, Outcome
from flowyard.actors.push import PushDelivery
from flowyard.actors.queues import Queue
from flowyard.actors.timers import Timers
from flowyard.billing import JOB_WRITE
from flowyard.clock import now_ms
from flowyard.errors import Conflict, NotFound, Unavailable, invalid_field
from flowyard.ids import new_id, url_token
from flowyard.jobs.attempts import begin_attempt, close_run, is_cron
from flowyard.jobs.backoff import retry_delay_seconds
from flowyard.jobs.cron import next_fire_ms
from flowyard.jobs.model import (
    NULL,
    QUEUE_TRIGGERS,
    TERMINAL,
    Delayed,
    Job,
    JobStatus,
    PullQueue,
    Run,
    RunStatus,
    Scheduled,
    WorkflowRef,
)
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
from flowyard.settings import Settings
from flowyard.storage import jobs as store
from flowyard.storage.sqlite import RETRY_MS, RETRY_SECONDS, Database, Op

log = logging.getLogger("flowyard.jobs")

replace = msgspec.structs.replace

Change = tuple[Job | None, Job]
"""A job before (None when new) and after a transition."""

JobSettled = Callable[[Change, list[Run]], Awaitable[None]]
"""Commits a workflow step job's final transition together with the step transition."""


class JobEngine:
    """Owns every pending, running and scheduled job; the HTTP layer calls its methods."""

    def __init__(
        self, db: Database, settings: Settings, dispatcher: Dispatcher, accounts: Accounts
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.settings = settings
        self.dispatcher = dispatcher
        self.jobs: dict[str, Job] = {}
        self.runs: dict[str, Run] = {}
        self.queues: dict[tuple[str, str], Queue] = {}
        self.timers = Timers(self._on_timer)
        self.workflow_settled: JobSettled | None = None
        self.workflow_starting: Callable[[Job], list[Op]] | None = None
        self.timer_hooks: dict[str, Callable[[tuple[object, ...]], None]] = {}
        self._creating_keys: set[tuple[str, str]] = set()
        self.push = PushDelivery(self, settings, dispatcher)
        self.tg: TaskGroup | None = None
        self.stopping = False

    # ----------------------------------------------------------------- life cycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Rehydrate from SQLite, then run timers and push delivery until cancelled."""
        async with anyio.create_task_group() as tg:
            self.tg = tg
            await self._rehydrate()
            await tg.start(self.timers.run)
            await tg.start(self.push.run)
            task_status.started()

    def begin_shutdown(self) -> None:
        """Answer long-poll claims now (empty) and start no new deliveries."""
        self.stopping = True
        for queue in self.queues.values():
            queue.wake_all()

    async def _rehydrate(self) -> None:
        for project_id, name, queue_settings in await store.all_queue_settings(self.db):
            self.queues[(project_id, name)] = Queue(project_id, name, queue_settings)
        live = await store.live_jobs(self.db)
        open_runs = {
            run.id: run
            for run in await store.get_runs(self.db, [job.run_id for job in live if job.run_id])
        }
        interrupted: list[tuple[Job | None, Job]] = []
        ops: list[Op] = []
        now = now_ms()
        for job in live:
            run = open_runs.get(job.run_id) if job.run_id else None
            if run is not None and not job.is_pull and job.callback_deadline is None:
                # A push delivery was in flight at the crash: deliver it again.
                closed = close_run(run, now, RunStatus.FAILED, "interrupted by a restart")
                ops.append(store.put_run(closed))
                job = replace(
                    job,
                    status=JobStatus.SCHEDULED if is_cron(job) else JobStatus.PENDING,
                    attempt=max(0, job.attempt - 1),
                    run_id=None,
                    run_at=now,
                )
                ops.append(store.put_job(job))
                interrupted.append((None, job))
            elif run is not None:
                self.runs[run.id] = run
            self._index(None, job)
        await self.db.commit(ops)
        for job in self.jobs.values():
            self._admit(job)
        log.info("rehydrated %d live jobs (%d redelivered)", len(self.jobs), len(interrupted))

    # ----------------------------------------------------------------- memory bookkeeping

    def queue(self, project_id: str, name: str) -> Queue:
        """The queue named ``name`` in the project (created on first use)."""
        key = (project_id, name)
        found = self.queues.get(key)
        if found is None:
            found = self.queues[key] = Queue(project_id, name)
        return found

    def _index(self, old: Job | None, new: Job) -> None:
        """Apply a job change to memory: the live map and its queue's counts."""
        old_queue = old.queue if old is not None else None
        if old is not None and old_queue is not None:
            queue = self.queue(old.project_id, old_queue)
            queue.pending.pop(old.id, None)
            queue.running.discard(old.id)
            if new.status is not JobStatus.PENDING or not new.enabled:
                queue.discard(old.id)
        if new.status in TERMINAL:
            self.jobs.pop(new.id, None)
            return
        self.jobs[new.id] = new
        new_queue = new.queue
        if new_queue is not None:
            queue = self.queue(new.project_id, new_queue)
            if new.status is JobStatus.PENDING:
                queue.pending[new.id] = new.created_at
            elif new.status is JobStatus.RUNNING:
                queue.running.add(new.id)

    async def commit(
        self,
        changes: Sequence[tuple[Job | None, Job]],
        runs: Iterable[Run] = (),
        extra: Sequence[Op] = (),
    ) -> None:
        """Apply ``changes`` to memory, write them (with ``runs``), undo on failure."""
        for old, new in changes:
            self._index(old, new)
        for run in runs:
            if run.status is RunStatus.RUNNING:
                self.runs[run.id] = run
            else:
                self.runs.pop(run.id, None)
        ops = [store.put_job(new) for _, new in changes]
        ops += [store.put_run(run) for run in runs]
        try:
            await self.db.commit([*ops, *extra])
        except BaseException:
            for old, new in reversed(changes):
                if old is None:
                    self._index(new, replace(new, status=JobStatus.CANCELLED))
                else:
                    self._index(new, old)
            raise

    def is_ready(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        return (
            job is not None
            and (job.enabled or is_cron(job))  # a disabled cron job runs only when triggered
            and job.run_id is None
            and job.run_at is not None
            and job.run_at <= now_ms()
            and (
                job.status is JobStatus.PENDING
                or (job.status is JobStatus.SCHEDULED and is_cron(job))
            )
        )

    def _admit(self, job: Job) -> None:
        """After a commit: make the job ready now or arm the timer for when it will be."""
        if job.callback_deadline is not None:
            # Also for a cron fire waiting on its 202 callback (status stays ``scheduled``).
            self.timers.arm(job.callback_deadline, ("callback", job.id, job.run_id))
        if job.status is JobStatus.RUNNING:
            if job.claimed_until is not None:
                self.timers.arm(job.claimed_until, ("lease", job.id, job.claim_token))
            return
        if job.status is JobStatus.SCHEDULED and job.run_at is None and job.next_run_at:
            if job.enabled:
                self.timers.arm(job.next_run_at, ("fire", job.id, job.next_run_at))
            return
        if (not job.enabled and not is_cron(job)) or job.run_at is None or job.run_id:
            return
        if job.run_at > now_ms():
            self.timers.arm(job.run_at, ("due", job.id))
            return
        self._make_ready(job)

    def _make_ready(self, job: Job) -> None:
        if isinstance(job.trigger, QUEUE_TRIGGERS):
            pull = isinstance(job.trigger, PullQueue)
            queue = self.queue(job.project_id, job.trigger.queue)
            queue.push(job.id, job.priority, job.created_at, pull=pull)
            if not pull:
                self.push.queue_ready(job.project_id, job.trigger.queue)
        else:
            self.push.ready(job.id)

    def _on_timer(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        kind, job_id, *rest = key
        hook = self.timer_hooks.get(kind)
        if hook is not None:
            hook(key)
            return
        job = self.jobs.get(job_id)
        if kind == "push":
            self.push.wake()
        elif job is None:
            return
        elif kind == "due":
            if self.is_ready(job_id):
                self._make_ready(job)
        elif kind == "fire":
            self._fire(job, rest[0])
        elif kind == "lease":
            if job.claim_token == rest[0] and job.claimed_until and job.claimed_until <= now_ms():
                self.spawn(self._expire_lease, job_id, rest[0], again=key)
        elif kind == "callback":
            deadline = job.callback_deadline
            if job.run_id == rest[0] and deadline is not None and deadline <= now_ms():
                self.spawn(self.push.expire_callback, job_id, rest[0], again=key)

    def spawn(
        self, func: Callable[..., Awaitable[object]], *args: object, again: Hashable = None
    ) -> None:
        """Run a transition in the background; if storage refuses it, fire timer ``again``."""
        assert self.tg is not None
        self.tg.start_soon(self._guarded, func, args, again)

    async def _guarded(
        self, func: Callable[..., Awaitable[object]], args: tuple[object, ...], again: Hashable
    ) -> None:
        try:
            await func(*args)
        except Unavailable as exc:
            log.warning("%s%r refused (%s); trying again", func.__name__, args, exc)
            if again is not None:
                self.timers.arm(now_ms() + RETRY_MS, again)
        except Exception:
            log.exception("background job transition failed: %s%r", func.__name__, args)

    def retry_soon(self, job_id: str) -> None:
        """Storage refused a job's start: make the job ready again a little later."""
        self.timers.arm(now_ms() + RETRY_MS, ("due", job_id))

    async def settle_when_possible(self, job: Job, outcome: Outcome) -> None:
        """:meth:`settle`, tried again while storage refuses it (the outcome waits in memory).

        It stops if the attempt was closed meanwhile; after a restart the job is delivered
        again instead (at-least-once).
        """
        while True:
            try:
                await self.settle(job, outcome)
                return
            except Unavailable as exc:
                log.warning("could not record the outcome of %s (%s); trying again", job.id, exc)
            await anyio.sleep(RETRY_SECONDS)
            current = self.jobs.get(job.id)
            if current is None or current.run_id != job.run_id:
                return
            job = current

    # ----------------------------------------------------------------- create

    def new_job(
        self, project_id: str, spec: JobSpec, now: int, workflow: WorkflowRef | None = None
    ) -> Job:
        """The record for a job created from ``spec`` at ``now`` (not yet stored)."""
        trigger = spec.trigger
        run_at: int | None = now
        next_run_at = None
        status = JobStatus.PENDING
        if isinstance(trigger, Delayed):
            run_at = now + trigger.delay_seconds * 1000
        elif isinstance(trigger, Scheduled):
            status = JobStatus.SCHEDULED
            run_at = None
            next_run_at = next_fire_ms(trigger.schedule, trigger.timezone, now)
        return Job(
            id=new_id("job"),
            project_id=project_id,
            trigger=trigger,
            handler=spec.handler,
            payload=spec.payload,
            name=spec.name,
            status=status,
            enabled=spec.enabled,
            priority=spec.priority,
            max_attempts=spec.max_attempts,
            timeout=spec.timeout,
            backoff=spec.backoff,
            idempotency_key=spec.idempotency_key,
            created_at=now,
            run_at=run_at,
            next_run_at=next_run_at,
            callback_url=spec.callback_url,
            workflow=workflow,
        )

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
            now = now_ms()
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
                    fresh.append(job)
                    results.append(job)
            with self._paying(project_id, JOB_WRITE * len(specs)):
                await self.commit([(None, job) for job in fresh])
        finally:
            self._creating_keys.difference_update(keys)
        for job in fresh:
            self._admit(job)
        return results

    def _paying(self, project_id: str, nanos: int) -> ContextManager[None]:
        """Charge a client's write to the project's balance (402 if short), refunded on failure."""
        return self.accounts.paying(project_id, nanos, "infra/jobs")

    def admit_one(self, job: Job) -> None:
        """After a commit made elsewhere: schedule a new or changed job."""
        self._admit(job)

    def admit(self, jobs: Iterable[Job]) -> None:
        """After a commit made elsewhere: schedule new or changed jobs."""
        for job in jobs:
            self._admit(job)

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
        change, runs = self.withdrawal(job, "cancelled")
        with self._paying(project_id, JOB_WRITE):
            if job.workflow is not None and self.workflow_settled is not None:
                await self._settle_step(change, runs)
            else:
                await self.commit([change], runs)
        self.withdrawn(change[1], runs)
        return change[1]

    async def _settle_step(self, change: Change, runs: list[Run]) -> None:
        """A step job ended: its execution commits the job with the step's transition.

        The job is marked ended in memory first, so that a second ack cannot race this one.
        """
        old, new = change
        assert old is not None and self.workflow_settled is not None
        self._index(old, new)
        try:
            await self.workflow_settled(change, runs)
        except BaseException:
            self._index(new, old)
            raise

    def withdrawal(self, job: Job, reason: str) -> tuple[Change, list[Run]]:
        """The transition that cancels a live job and closes its open run (not yet stored)."""
        now = now_ms()
        run = self.runs.get(job.run_id) if job.run_id else None
        runs = [close_run(run, now, RunStatus.FAILED, reason)] if run else []
        new = replace(
            job,
            status=JobStatus.CANCELLED,
            completed_at=now,
            run_id=None,
            claim_token=None,
            claimed_until=None,
            callback_deadline=None,
            error=job.error if reason == "cancelled" else reason,
        )
        return (job, new), runs

    def withdrawn(self, job: Job, runs: list[Run]) -> None:
        """After a withdrawal is stored: tell the job's ``callback_url``."""
        self.push.notify(job, runs[0] if runs else None)

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
        now = now_ms()
        trigger_patch = patch.trigger
        if trigger_patch is not None:
            changes.update(_patched_trigger(stored, trigger_patch, now))
        job = self._live(stored, "update")
        if job.status is JobStatus.RUNNING or job.run_id is not None:
            raise Conflict("cannot update a job while it runs")
        new = replace(job, **changes)
        if isinstance(new.trigger, Scheduled) and trigger_patch is not None:
            new = replace(
                new, next_run_at=next_fire_ms(new.trigger.schedule, new.trigger.timezone, now)
            )
        with self._paying(project_id, JOB_WRITE):
            await self.commit([(job, new)])
        self._admit(new)
        return new

    async def retry(self, project_id: str, job_id: str) -> Job:
        """Send a failed job back to pending with fresh attempts; 409 unless failed."""
        job = await self.require(project_id, job_id)
        if job.status is not JobStatus.FAILED or job.id in self.jobs:
            raise Conflict(f"only a failed job can be retried; this one is {job.status}")
        new = replace(
            job,
            status=JobStatus.PENDING,
            attempt=0,
            error=None,
            result=NULL,
            completed_at=None,
            run_at=now_ms(),
        )
        with self._paying(project_id, JOB_WRITE):
            await self.commit([(None, new)])
        self._admit(new)
        return new

    async def trigger(self, project_id: str, job_id: str) -> Job:
        """Fire a scheduled job now (or run a waiting job now); 409 if it is busy or ended."""
        job = self._live(await self.require(project_id, job_id), "trigger")
        if job.status is JobStatus.RUNNING or job.run_id is not None:
            raise Conflict("the job is running")
        if job.status is JobStatus.SCHEDULED and job.run_at is not None:
            raise Conflict("the job is already firing")
        new = replace(job, run_at=now_ms(), attempt=0 if is_cron(job) else job.attempt)
        with self._paying(project_id, JOB_WRITE):
            await self.commit([(job, new)])
        if not new.enabled:
            self._make_ready(new)  # a manual trigger fires even a disabled job
        else:
            self._admit(new)
        return new

    # ----------------------------------------------------------------- pull protocol

    async def claim(
        self, project_id: str, queue_name: str, count: int, visibility: int, wait: float
    ) -> list[Job]:
        """Claim up to ``count`` ready jobs, long-polling up to ``wait`` seconds for one."""
        queue = self.queue(project_id, queue_name)
        deadline = time.monotonic() + wait
        while True:
            picked: list[Job] = []
            if not queue.settings.paused and not self.stopping:
                while len(picked) < count:
                    job_id = queue.pop(self.is_ready, pull=True)
                    if job_id is None:
                        break
                    picked.append(self.jobs[job_id])
            if picked:
                return await self._start_claims(picked, visibility)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stopping:
                return []
            waiter = queue.waiter()
            # The wait ends with a timer that sets the event rather than a cancel scope:
            # every waiting claim comes this way, and a scope costs several times more.
            timeout = asyncio.get_running_loop().call_later(remaining, queue.expire, waiter)
            try:
                await waiter.wait()
            finally:
                timeout.cancel()
                queue.forget_waiter(waiter)

    async def _start_claims(self, picked: list[Job], visibility: int) -> list[Job]:
        now = now_ms()
        changes, runs = [], []
        for job in picked:
            new, run = begin_attempt(
                job,
                now,
                status=JobStatus.RUNNING,
                claim_token=url_token(18),
                claimed_until=now + visibility * 1000,
            )
            changes.append((job, new))
            runs.append(run)
        started = [new for _, new in changes]
        try:
            await self.commit(changes, runs, self.step_starts(started))
        except BaseException:
            for job in picked:
                self._admit(job)
            raise
        for new in started:
            self._admit(new)
        return started

    def step_starts(self, jobs: Iterable[Job]) -> list[Op]:
        """The writes that record workflow steps starting with these jobs' attempts.

        They go into the same transaction as the jobs' own start.
        """
        if self.workflow_starting is None:
            return []
        return [op for job in jobs if job.workflow for op in self.workflow_starting(job)]

    def _claimed(self, job: Job, claim_token: str) -> Job:
        live = self.jobs.get(job.id)
        if live is None or live.status is not JobStatus.RUNNING or not live.is_pull:
            raise Conflict(f"job {job.id} is not running")
        if not secrets.compare_digest((live.claim_token or "").encode(), claim_token.encode()):
            raise Conflict("stale or wrong claim_token")
        return live

    async def ack(
        self,
        job: Job,
        claim_token: str,
        *,
        completed: bool,
        result: Raw | None,
        error: str | None,
        retryable: bool,
    ) -> Job:
        """Record a worker's outcome for a job it holds; 409 for a stale claim."""
        live = self._claimed(job, claim_token)
        if live.claimed_until is not None and live.claimed_until < now_ms():
            await self._expire_lease(live.id, claim_token)
            raise Conflict("the lease expired before the ack")
        outcome = Outcome(
            "completed" if completed else "failed",
            result=result,
            error=None if completed else (error or "failed"),
        )
        return await self.settle(live, outcome, retryable=retryable)

    async def heartbeat(self, job: Job, claim_token: str, visibility: int) -> Job:
        """Extend the lease of a job a worker holds."""
        live = self._claimed(job, claim_token)
        now = now_ms()
        if live.claimed_until is not None and live.claimed_until < now:
            await self._expire_lease(live.id, claim_token)
            raise Conflict("the lease expired before the heartbeat")
        new = replace(live, claimed_until=now + visibility * 1000)
        await self.commit([(live, new)])
        self._admit(new)
        return new

    async def _expire_lease(self, job_id: str, claim_token: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.claim_token != claim_token or job.status is not JobStatus.RUNNING:
            return
        seconds = ((job.claimed_until or 0) - (job.last_run_at or 0)) / 1000
        await self.settle(
            job, Outcome("failed", error=f"lease_expired: no ack within {seconds:g}s")
        )

    # ----------------------------------------------------------------- settling attempts

    async def settle(self, job: Job, outcome: Outcome, *, retryable: bool = True) -> Job:
        """Close the current attempt of ``job`` with ``outcome`` and decide what comes next."""
        now = now_ms()
        run = self.runs.get(job.run_id) if job.run_id else None
        ok = outcome.kind == "completed"
        closed = (
            close_run(
                run,
                now,
                RunStatus.COMPLETED if ok else RunStatus.FAILED,
                outcome.error,
                outcome.handler_status,
            )
            if run
            else None
        )
        common = {
            "run_id": None,
            "claim_token": None,
            "claimed_until": None,
            "callback_deadline": None,
        }
        cron = is_cron(job)
        if ok:
            new = replace(
                job,
                **common,
                status=JobStatus.SCHEDULED if cron else JobStatus.COMPLETED,
                result=outcome.result if outcome.result is not None else NULL,
                error=None,
                completed_at=now,
                run_at=None,
            )
        elif retryable and job.attempt < job.max_attempts:
            delay = retry_delay_seconds(
                job.backoff, job.attempt, self.settings.retry_base_seconds, random.random()
            )
            new = replace(
                job,
                **common,
                status=JobStatus.SCHEDULED if cron else JobStatus.PENDING,
                error=outcome.error,
                run_at=now + int(delay * 1000),
            )
        else:
            new = replace(
                job,
                **common,
                status=JobStatus.SCHEDULED if cron else JobStatus.FAILED,
                error=outcome.error,
                completed_at=now,
                run_at=None,
            )
        if cron and new.run_at is None and new.next_run_at is not None:
            new = replace(new, next_run_at=max(new.next_run_at, _next_fire(new, now)))
        runs = [closed] if closed else []
        if new.workflow is not None and new.status in TERMINAL and self.workflow_settled:
            await self._settle_step((job, new), runs)
        else:
            await self.commit([(job, new)], runs)
        self._admit(new)
        if new.status in TERMINAL:
            self.push.notify(new, closed)
        return new

    # ----------------------------------------------------------------- cron

    def _fire(self, job: Job, due: int) -> None:
        if job.status is not JobStatus.SCHEDULED or job.next_run_at != due or not job.enabled:
            return
        now = now_ms()
        following = _next_fire(job, now)
        firing = job.run_at is None and job.run_id is None
        if not firing:
            # Still busy with the previous fire: skip this one.
            new = replace(job, next_run_at=following)
        else:
            # run_at is the cron slot, so the run's scheduled_at names the fire it serves.
            new = replace(job, run_at=due, attempt=0, next_run_at=following)
        self._index(job, new)
        self.timers.arm(following, ("fire", job.id, following))
        if firing:
            self._make_ready(new)

    # ----------------------------------------------------------------- queues

    async def set_queue(
        self,
        project_id: str,
        name: str,
        *,
        concurrency: int | None | msgspec.UnsetType,
        rate_limit_per_second: float | None | msgspec.UnsetType,
        paused: bool | msgspec.UnsetType,
    ) -> Queue:
        """Change a queue's limits or pause it; unset fields keep their value."""
        queue = self.queue(project_id, name)
        current = queue.settings
        updated = store.QueueSettings(
            concurrency=current.concurrency if concurrency is msgspec.UNSET else concurrency,
            rate_limit_per_second=(
                current.rate_limit_per_second
                if rate_limit_per_second is msgspec.UNSET
                else rate_limit_per_second
            ),
            paused=current.paused if paused is msgspec.UNSET else paused,
        )
        # Billed to the family of the route it answers (``PUT /infra/queues/{name}``).
        with self.accounts.paying(project_id, JOB_WRITE, "infra/queues"):
            await self.db.commit([store.put_queue(project_id, name, updated)])
        queue.settings = updated
        if not updated.paused:
            queue.wake_all()
            if queue.has_deliverable:
                self.push.queue_ready(project_id, name)
        return queue

    def project_queues(self, project_id: str) -> list[Queue]:
        """Every queue of the project that has settings or jobs, by name."""
        return sorted(
            (q for (pid, _), q in self.queues.items() if pid == project_id),
            key=lambda q: q.name,
        )

    @property
    def ready(self) -> bool:
        """Whether rehydration has finished."""
        return self.tg is not None and not self.stopping

    def check_available(self) -> None:
        """Raise 503 while shutting down."""
        if self.stopping:
            raise Unavailable("shutting down")


def _next_fire(job: Job, after: int) -> int:
    trigger = job.trigger
    assert isinstance(trigger, Scheduled)
    return next_fire_ms(trigger.schedule, trigger.timezone, after)


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
