"""Ending attempts and withdrawing jobs: what an outcome means, and where it is committed.

An outcome (a handler's answer, an ack, a callback, a lease or callback window that ran out)
goes through the pure transition; a workflow step job's final transition is handed to its
execution, which commits it together with the step's own; any other is committed here. Only
after the commit do its effects run (the next timer, the ``callback_url`` notice).
"""

import logging
import random
from typing import TYPE_CHECKING

import anyio

from flowyard.actors.dispatcher import Outcome
from flowyard.actors.live_jobs import Change
from flowyard.errors import Unavailable
from flowyard.jobs.events import AttemptEnded, Transition, Withdrawn
from flowyard.jobs.model import TERMINAL, Job, Run
from flowyard.jobs.transitions import transition
from flowyard.storage.sqlite import RETRY_SECONDS

if TYPE_CHECKING:
    from flowyard.actors.jobs import JobEngine

log = logging.getLogger("flowyard.jobs")


class Settling:
    """Closes attempts and withdraws jobs for the engine."""

    def __init__(self, engine: "JobEngine") -> None:
        self.engine = engine
        self.clock = engine.clock

    async def settle(self, job: Job, outcome: Outcome, *, retryable: bool = True) -> Job:
        """Close the current attempt of ``job`` with ``outcome`` and decide what comes next."""
        return await self.apply(job, self.ending(job, outcome, retryable=retryable))

    def ending(self, job: Job, outcome: Outcome, *, retryable: bool = True) -> Transition:
        """The transition that closes the current attempt of ``job`` (not yet applied)."""
        event = AttemptEnded(
            completed=outcome.kind == "completed",
            result=outcome.result,
            error=outcome.error,
            handler_status=outcome.handler_status,
            retryable=retryable,
            retry_base_seconds=self.engine.settings.retry_base_seconds,
            draw=random.random(),
        )
        return transition(job, self.engine.live.open_run(job), event, self.clock.now_ms())

    def ends_step(self, done: Transition) -> bool:
        """Whether ``done`` ends a workflow step's job, which its execution commits."""
        new = done.job
        return (
            new.workflow is not None
            and new.status in TERMINAL
            and (self.engine.workflow_settled is not None)
        )

    async def apply(self, job: Job, done: Transition) -> Job:
        """Commit ``done`` (with its step's transition, for a step's job), then its effects."""
        engine = self.engine
        new = done.job
        if self.ends_step(done):
            await self.settle_step((job, new), done.runs)
        else:
            await engine.commit([(job, new)], done.runs)
        engine.scheduler.run_effects(done)
        return new

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
                log.warning(
                    "could not record the outcome of %s (%s); trying again",
                    job.id,
                    exc,
                    extra={"job_id": job.id},
                )
            await anyio.sleep(RETRY_SECONDS)
            current = self.engine.jobs.get(job.id)
            if current is None or current.run_id != job.run_id:
                return
            job = current

    async def settle_step(self, change: Change, runs: list[Run]) -> None:
        """A step job ended: its execution commits the job with the step's transition.

        The job is marked ended in memory first, so that a second ack cannot race this one.
        """
        engine = self.engine
        old, new = change
        assert old is not None and engine.workflow_settled is not None
        engine.live.index(old, new)
        try:
            await engine.workflow_settled(change, runs)
        except BaseException:
            engine.live.index(new, old)
            raise

    def withdrawal(self, job: Job, reason: str) -> Transition:
        """The transition that cancels a live job and closes its open run (not yet stored)."""
        return transition(
            job, self.engine.live.open_run(job), Withdrawn(reason), self.clock.now_ms()
        )
