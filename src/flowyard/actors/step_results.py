"""What the workflow engine does when step jobs start and end. The starts of one claim are
recorded in the claim's own commit, one execution row per execution. Each job's end goes to
its execution's actor, which commits it with the step transition it causes; the ends of one
call (an exchange's acks) that belong to one idle execution go to it as one batch, one commit.
"""

import logging
from time import perf_counter
from typing import Any

import msgspec

from flowyard import logs
from flowyard.actors.execution import decide
from flowyard.actors.execution_records import Carry, ExecutionActor
from flowyard.actors.jobs import Change, JobEngine
from flowyard.errors import FlowyardError, NotFound
from flowyard.jobs.model import Job, JobStatus, Run
from flowyard.storage import workflows as store
from flowyard.storage.intents import Intent
from flowyard.workflows.state import Event, JobFinished, JobStarted, Message, PutItems

log = logging.getLogger("flowyard.workflows")

replace = msgspec.structs.replace


OUTCOMES = {JobStatus.COMPLETED: "completed", JobStatus.CANCELLED: "cancelled"}
"""A step job's outcome by its final status (any other: ``failed``)."""


def _finished(job: Job) -> JobFinished:
    """The message that tells a step's execution that its job ended."""
    ref = job.workflow
    assert ref is not None
    outcome = OUTCOMES.get(job.status, "failed")
    output = msgspec.json.decode(job.result) if outcome == "completed" else None
    return JobFinished(
        ref.step_id, ref.attempt, job.id, outcome, output, job.error, max(job.attempt, 1), ref.item
    )


class StepResults:
    """The step-job side of :class:`~flowyard.actors.workflows.WorkflowEngine` (a mixin
    placed after the classes that define what it uses)."""

    jobs: JobEngine
    actors: dict[str, ExecutionActor]

    async def _actor(self, execution_id: str, project_id: str | None = None) -> ExecutionActor:
        raise NotImplementedError

    async def _ask(
        self, actor: ExecutionActor, message: Message, carry: Carry | None = None
    ) -> Any:
        raise NotImplementedError

    async def _results(
        self, actor: ExecutionActor, messages: list[tuple[Message, Carry | None]]
    ) -> tuple[list[Any], int]:
        raise NotImplementedError

    async def _process(self, actor: ExecutionActor, message: Message, carry: Carry | None) -> Any:
        raise NotImplementedError

    def _rest(self, actor: ExecutionActor) -> None:
        raise NotImplementedError

    def _tell(self, actor: ExecutionActor, message: Message) -> None:
        raise NotImplementedError

    def _jobs_starting(self, jobs: list[Job]) -> list[Intent]:
        """The writes that record the steps starting with these jobs' attempts; they join
        the jobs' own start. An idle actor records its steps' starts at once, as one row of
        the execution and its events, however many of its steps start; a busy one gets each
        start through its mailbox.

        Nothing follows from a start (no effects), so the actor need not wait for the commit;
        the writes are queued before any later write of the execution, so the order of the
        execution's rows and events holds.
        """
        started: dict[str, _Started] = {}
        for job in jobs:
            ref = job.workflow
            actor = self.actors.get(ref.execution_id) if ref else None
            if ref is None or actor is None:
                continue
            message = JobStarted(ref.step_id, ref.attempt, job.id, ref.item)
            if not actor.busy:
                try:
                    self._record_start(actor, message, started)
                    continue
                except Exception:
                    # Not the job's fault: the actor contains it (the execution fails) on its own.
                    log.exception(
                        "execution %s failed to record a start",
                        actor.state.id,
                        extra={"execution_id": actor.state.id, "job_id": job.id},
                    )
            try:
                self._tell(actor, message)
            except FlowyardError:
                log.warning(
                    "could not record the start of %s (mailbox full)",
                    job.id,
                    extra={"execution_id": actor.state.id, "job_id": job.id},
                )
        ops: list[Intent] = []
        for execution_id, found in started.items():
            state = found.actor.state
            ops += [store.put_execution(state), store.put_events(state.id, found.seq, found.events)]
            for change in found.items:
                ops += store.put_items(execution_id, change.step_id, change.items)
        return ops

    def _record_start(
        self, actor: ExecutionActor, message: JobStarted, started: dict[str, "_Started"]
    ) -> None:
        """A step's start, decided and kept in the actor (its writes gathered in ``started``)."""
        now = self.jobs.clock.now_ms()
        new, effects, events = decide(actor.state, message, now, actor.graph, actor.items)
        if not events:
            return
        changes = [e for e in effects if isinstance(e, PutItems)]
        assert len(changes) == len(effects)  # a start changes an item at most
        seq = actor.state.event_seq
        actor.state = replace(new, event_seq=seq + len(events))
        actor.keep_items(changes)
        found = started.get(new.id)
        if found is None:
            started[new.id] = _Started(actor, seq + 1, events, changes)
        else:
            found.events += events
            found.items += changes

    async def _job_settled(
        self, change: Change, runs: list[Run], arrived: float | None = None
    ) -> None:
        """``arrived``: when the job's end reached the engine (``perf_counter``; now if None)."""
        arrived = perf_counter() if arrived is None else arrived
        _, job = change
        ref = job.workflow
        assert ref is not None
        try:
            actor = self.actors.get(ref.execution_id) or await self._actor(ref.execution_id)
        except Exception as exc:
            if not isinstance(exc, NotFound):
                log.exception(
                    "execution %s cannot take %s's result",
                    ref.execution_id,
                    job.id,
                    extra={"execution_id": ref.execution_id, "job_id": job.id},
                )
            await self.jobs.commit([change], runs)  # an orphan job: record it alone
            return
        await self._ask(actor, _finished(job), (change, runs, arrived))

    async def _jobs_settled(self, settled: list[tuple[Change, list[Run]]]) -> list[Any]:
        """Step jobs that ended in one call (an exchange's acks), each as :meth:`_job_settled`
        would take it; those of one idle execution go through its actor as one batch (one
        decide after the other, one commit), in this task. Returns, per job, None or the
        error it met."""
        arrived = perf_counter()
        groups: dict[str, list[int]] = {}
        for index, (change, _) in enumerate(settled):
            ref = change[1].workflow
            assert ref is not None
            groups.setdefault(ref.execution_id, []).append(index)
        errors: list[Any] = [None] * len(settled)
        for execution_id, indexes in groups.items():
            actor = self.actors.get(execution_id)
            if actor is not None and not actor.busy:
                batch: list[tuple[Message, Carry | None]] = [
                    (_finished(settled[i][0][1]), (*settled[i], arrived)) for i in indexes
                ]
                outcomes = await self._batch(actor, batch)
                for index, outcome in zip(indexes, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        errors[index] = outcome
                continue
            for index in indexes:
                try:
                    await self._job_settled(*settled[index], arrived)
                except FlowyardError as exc:
                    errors[index] = exc
        return errors

    async def _batch(
        self, actor: ExecutionActor, batch: list[tuple[Message, Carry | None]]
    ) -> list[Any]:
        """Job messages for an idle actor, handled in the caller's task as its mailbox's drain
        would handle them: as one commit, or one by one what the batch leaves."""
        actor.busy = True
        token = logs.execution_id.set(actor.state.id)  # the asker's request id stays
        try:
            outcomes, done = await self._results(actor, batch)
            outcomes = list(outcomes)
            for message, carry in batch[done:]:
                outcomes.append(await self._process(actor, message, carry))
        finally:
            logs.execution_id.reset(token)
            self._rest(actor)
        return outcomes


class _Started:
    """The writes of the steps of one execution that start in one claim."""

    __slots__ = ("actor", "events", "items", "seq")

    def __init__(
        self, actor: ExecutionActor, seq: int, events: list[Event], items: list[PutItems]
    ) -> None:
        self.actor = actor
        self.seq = seq
        """The number of its first event."""
        self.events = events
        self.items = items
