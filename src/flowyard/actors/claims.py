"""The pull protocol: claims (with long-poll waits), heartbeats that extend a lease, acks,
and leases that run out.

A claim takes ready jobs off their queue's pull heap and commits their attempts' start (and
the workflow steps they start) before answering; a claim token names the lease, and an ack or
heartbeat with another token, or after the lease ran out, is 409. An exchange's acks
(:meth:`Claims.ack_each`) are applied one after the other, the steps' jobs of one execution
in one batch.
"""

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import msgspec
from msgspec import Raw

from flowyard.actors.dispatcher import Outcome
from flowyard.actors.queues import Queue
from flowyard.errors import Conflict, FlowyardError, Unavailable
from flowyard.ids import new_id, url_token
from flowyard.jobs.events import Claimed, LeaseExtended, Transition
from flowyard.jobs.model import Job, JobStatus
from flowyard.jobs.spec import check_payload
from flowyard.jobs.transitions import is_ready, transition

if TYPE_CHECKING:
    from flowyard.actors.jobs import JobEngine


class AckRequest(msgspec.Struct, frozen=True, gc=False):
    """One ack of an exchange: the job it names and the worker's outcome.

    A Struct, not a frozen dataclass: one is built per ack, and a frozen dataclass sets each
    field through ``object.__setattr__``.
    """

    job_id: str
    claim_token: str
    completed: bool
    result: Raw
    error: str | None
    retryable: bool
    path: str
    """Where the ack sits in the request (``$.acks[0]``), for the problems it names."""


AckOutcome = Job | FlowyardError
"""What became of one ack: the job after it, or why it was refused."""
Elsewhere = Callable[[int], Awaitable[list[Raw]]]
"""A cluster node's claim at the other nodes that said they have ready jobs in the queue:
up to that many jobs, claimed there, as the JSON the API shows them (``cluster/claims.py``)."""


class Claims:
    """Claims, heartbeats and acks of pull jobs."""

    def __init__(self, engine: "JobEngine") -> None:
        self.engine = engine
        self.clock = engine.clock

    async def claim(
        self,
        project_id: str,
        queue_name: str,
        count: int,
        visibility: int,
        wait: float,
        elsewhere: Elsewhere | None = None,
    ) -> Sequence[Job | Raw]:
        """Claim up to ``count`` ready jobs, long-polling up to ``wait`` seconds for one.

        With ``elsewhere`` (a cluster node), a claim that finds none here takes them from the
        nodes that have some; a claim waiting here is woken when one says so.
        """
        engine = self.engine
        queue = engine.queue(project_id, queue_name)
        deadline = time.monotonic() + wait
        while True:
            now = self.clock.now_ms()  # one read for the jobs this claim takes
            picked = self._pick(queue, count, now)
            if picked:
                return await self._start(picked, visibility, now)
            if elsewhere is not None and not engine.stopping and not queue.settings.paused:
                found = await elsewhere(count)
                if found:
                    return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or engine.stopping:
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

    def _pick(self, queue: Queue, count: int, now: int) -> list[Job]:
        """Up to ``count`` jobs taken off the queue's pull heap, ready at ``now``."""
        engine = self.engine
        if queue.settings.paused or engine.stopping:
            return []
        jobs = engine.jobs

        def ready(job_id: str) -> bool:
            job = jobs.get(job_id)
            return job is not None and is_ready(job, now)

        picked: list[Job] = []
        while len(picked) < count:
            job_id = queue.pop(ready, pull=True)
            if job_id is None:
                break
            picked.append(jobs[job_id])
        return picked

    async def _start(self, picked: list[Job], visibility: int, now: int) -> list[Job]:
        engine = self.engine
        done = [
            transition(job, None, Claimed(new_id("run"), url_token(18), visibility), now)
            for job in picked
        ]
        started = [t.job for t in done]
        try:
            await engine.commit(
                [(job, t.job) for job, t in zip(picked, done, strict=True)],
                [run for t in done for run in t.runs],
                engine.step_starts(started),
            )
        except BaseException:
            for job in picked:
                engine.admit_one(job)
            raise
        for t in done:
            engine.scheduler.run_effects(t)
        return started

    def _claimed(self, job: Job, claim_token: str) -> Job:
        live = self.engine.jobs.get(job.id)
        if live is None or live.status is not JobStatus.RUNNING or not live.is_pull:
            raise Conflict(f"job {job.id} is not running")
        # Compared as text when it is ASCII, as every token made here is (no encoding).
        if not (
            claim_token.isascii() and secrets.compare_digest(live.claim_token or "", claim_token)
        ):
            raise Conflict("stale or wrong claim_token")
        return live

    async def _holding(self, job: Job, claim_token: str, action: str) -> Job:
        """The live job if ``claim_token`` holds its lease; 409 otherwise (a lease that ran
        out is expired now: the attempt failed)."""
        live = self._claimed(job, claim_token)
        if live.claimed_until is not None and live.claimed_until < self.clock.now_ms():
            await self.expire_lease(live.id, claim_token)
            raise Conflict(f"the lease expired before the {action}")
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
        live = await self._holding(job, claim_token, "ack")
        return await self.engine.settle(
            live, _outcome(completed, result, error), retryable=retryable
        )

    async def ack_each(self, project_id: str, acks: Sequence[AckRequest]) -> list[AckOutcome]:
        """Apply each ack as ``POST /infra/jobs/{id}/ack`` would, in order; one refused ack
        does not stop the others. Returns each one's outcome, in order, once every ack is
        committed.

        One after the other, not side by side (a task per ack cost more instructions than it
        saved the writer: ``bench/README.md``, "Worker protocol: exchange"), except that the
        steps' jobs wait to the end: each is marked ended in memory at its turn (a job acked
        twice in one call is a conflict the second time), then they go to their executions
        together, and the jobs of one execution (a diamond's B and C) share one transition
        batch and one commit.
        """
        engine = self.engine
        together = engine.workflow_settled_together
        outcomes: list[AckOutcome | None] = [None] * len(acks)
        steps: list[tuple[int, Job, Transition]] = []
        jobs = engine.jobs
        now = self.clock.now_ms()  # one read for the batch: its acks arrived together
        for index, ack in enumerate(acks):
            try:
                # A live job held by an unexpired lease (nearly every ack) is checked without
                # a coroutine; any other goes the long way (404, 409, a lease that ran out).
                job = jobs.get(ack.job_id)
                if job is None or job.project_id != project_id:
                    job = await engine.require(project_id, ack.job_id)
                check_payload(ack.result, f"{ack.path}.result")
                live = self._claimed(job, ack.claim_token)
                until = live.claimed_until
                if until is not None and until < now:
                    live = await self._holding(job, ack.claim_token, "ack")
                outcome = _outcome(ack.completed, ack.result, ack.error)
                done = engine.settling.ending(live, outcome, retryable=ack.retryable)
                if together is not None and engine.settling.ends_step(done):
                    engine.live.index(live, done.job)
                    steps.append((index, live, done))
                else:
                    outcomes[index] = await engine.settling.apply(live, done)
            except FlowyardError as exc:
                outcomes[index] = exc
        if steps:
            assert together is not None
            try:
                errors = await together([((old, done.job), done.runs) for _, old, done in steps])
            except BaseException:
                for _, old, done in steps:
                    engine.live.index(done.job, old)
                raise
            for (index, old, done), error in zip(steps, errors, strict=True):
                if error is None:
                    engine.scheduler.run_effects(done)
                    outcomes[index] = done.job
                else:
                    engine.live.index(done.job, old)
                    outcomes[index] = (
                        error if isinstance(error, FlowyardError) else Unavailable(str(error))
                    )
        return [outcome for outcome in outcomes if outcome is not None]

    async def heartbeat(self, job: Job, claim_token: str, visibility: int) -> Job:
        """Extend the lease of a job a worker holds."""
        live = await self._holding(job, claim_token, "heartbeat")
        done = transition(live, None, LeaseExtended(visibility), self.clock.now_ms())
        await self.engine.commit([(live, done.job)])
        self.engine.scheduler.run_effects(done)
        return done.job

    async def expire_lease(self, job_id: str, claim_token: str) -> None:
        """The lease named by ``claim_token`` ran out: the attempt failed."""
        job = self.engine.jobs.get(job_id)
        if job is None or job.claim_token != claim_token or job.status is not JobStatus.RUNNING:
            return
        seconds = ((job.claimed_until or 0) - (job.last_run_at or 0)) / 1000
        await self.engine.settle(
            job, Outcome("failed", error=f"lease_expired: no ack within {seconds:g}s")
        )


def _outcome(completed: bool, result: Raw | None, error: str | None) -> Outcome:
    return Outcome(
        "completed" if completed else "failed",
        result=result,
        error=None if completed else (error or "failed"),
    )
