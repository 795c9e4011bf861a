"""The execution actors' writes: a transition's effects turned into rows, committed, then
carried out; and the job messages waiting in a mailbox committed as one batch.

``_prepare`` builds everything a transition writes (new jobs, withdrawn ones, item rows)
without storing anything; ``_writes`` is what it adds to the execution's own commit;
``_after`` hands the new jobs to their queues and arms deadlines once it is durable.
"""

import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import msgspec

from flowyard.actors.children import Children
from flowyard.actors.execution import decide
from flowyard.actors.execution_records import (
    Carry,
    DeadlineTimer,
    ExecutionActor,
    keep_items,
    tag_queued,
    with_item_jobs,
    with_jobs,
)
from flowyard.actors.jobs import Change, JobEngine
from flowyard.actors.signals import Signals
from flowyard.billing import JOB_WRITE, WORKFLOW_WRITE
from flowyard.errors import FlowyardError
from flowyard.jobs.model import Job, Run
from flowyard.metrics import Metrics
from flowyard.storage import workflows as store
from flowyard.storage.intents import Intent
from flowyard.workflows.state import (
    ArmDeadline,
    CancelChild,
    CancelExecution,
    Effect,
    Event,
    ExecutionState,
    JobFinished,
    JobStarted,
    Message,
    PauseExecution,
    PutItems,
    QueueJob,
    ResumeExecution,
    SendSignal,
    Start,
    StartChild,
    WithdrawJob,
)

log = logging.getLogger("flowyard.workflows")

replace = msgspec.structs.replace

BATCH = 64
"""Job messages of one actor committed together at most."""
JOB_MESSAGES = (JobStarted, JobFinished)
COMMANDS = (Start, CancelExecution, PauseExecution, ResumeExecution, SendSignal)
"""Messages a client sends: each pays for the call; the others are the engine's own."""


class SplitBatch(Exception):
    """A transition of a batch withdraws a job the batch itself created: it waits."""


@dataclass
class Prepared:
    """What a transition's effects come to before the commit: job changes and the runs they
    close, new jobs, deadlines to arm, item rows."""

    changes: list[Change]
    runs: list[Run]
    created: list[Job]
    deadlines: list[int]
    item_changes: list[PutItems]
    more: list[Intent]
    """Rows of other records the transition writes (signals)."""
    effects: list[Effect]
    """Every effect, for what is carried out after the commit (signal timeouts)."""
    children: list[CancelChild | StartChild]
    """Child executions to cancel or start after the commit."""

    @classmethod
    def of(cls, carry: Carry | None) -> "Prepared":
        """Starting from the job transition a message carries, if any."""
        changes = [carry[0]] if carry else []
        return cls(changes, list(carry[1]) if carry else [], [], [], [], [], [], [])

    def merge(self, other: "Prepared") -> None:
        self.changes += other.changes
        self.runs += other.runs
        self.created += other.created
        self.deadlines += other.deadlines
        self.item_changes += other.item_changes
        self.more += other.more
        self.effects += other.effects
        self.children += other.children


class Commits:
    """The write side of :class:`~flowyard.actors.workflows.WorkflowEngine`."""

    jobs: JobEngine
    signals: Signals
    children: Children
    metrics: Metrics

    def _step_job(self, state: ExecutionState, effect: QueueJob, now: int) -> Job:
        raise NotImplementedError

    async def _record(
        self,
        old: ExecutionState,
        new: ExecutionState,
        events: list[Event],
        changes: list[Change],
        runs: list[Run],
        more: list[Intent] | None = None,
    ) -> ExecutionState:
        raise NotImplementedError

    async def _apply(
        self,
        actor: ExecutionActor,
        new: ExecutionState,
        effects: list[Effect],
        events: list[Event],
        carry: Carry | None,
        now: int,
    ) -> ExecutionState:
        prepared = Prepared.of(carry)
        new, events = self._prepare(new, effects, events, now, prepared)
        actor.state = await self._record(actor.state, new, events, *self._writes(new, prepared))
        actor.keep_items(prepared.item_changes)
        self._after(new, prepared)
        if prepared.children:
            await self._children_after(actor, prepared.children)
        if carry is not None and prepared.created:
            self.metrics.step_handoff.observe(perf_counter() - carry[2])
        return actor.state

    def _prepare(
        self,
        new: ExecutionState,
        effects: list[Effect],
        events: list[Event],
        now: int,
        prepared: "Prepared",
        batch_jobs: frozenset[str] = frozenset(),
    ) -> tuple[ExecutionState, list[Event]]:
        """Turn effects into job records, job changes and item rows (nothing stored yet);
        the state and events with the new jobs' ids.

        Raises:
            SplitBatch: an effect withdraws a job of ``batch_jobs`` (created by a transition
                of the same batch, not yet stored): that transition must wait for the commit.
        """
        step_jobs: dict[str, str] = {}
        item_jobs: dict[tuple[str, int], str] = {}
        item_changes: list[PutItems] = []
        for effect in effects:
            match effect:
                case QueueJob(item_index=None):
                    job = self._step_job(new, effect, now)
                    prepared.created.append(job)
                    step_jobs[effect.step_id] = job.id
                case QueueJob(item_index=int(index)):
                    job = self._step_job(new, effect, now)
                    prepared.created.append(job)
                    item_jobs[effect.step_id, index] = job.id
                case PutItems():
                    item_changes.append(effect)
                case WithdrawJob():
                    if effect.job_id in batch_jobs:
                        raise SplitBatch
                    live = self.jobs.jobs.get(effect.job_id)
                    if live is not None:
                        change, closed = self.jobs.withdrawal(live, "withdrawn by the workflow")
                        prepared.changes.append(change)
                        prepared.runs += closed
                case ArmDeadline():
                    prepared.deadlines.append(effect.deadline_at)
                case CancelChild() | StartChild():
                    prepared.children.append(effect)
        if step_jobs:
            new = with_jobs(new, step_jobs)
            events = tag_queued(events, step_jobs)
        if item_jobs:
            events = tag_item_jobs(events, item_jobs)
            item_changes = [with_item_jobs(change, item_jobs) for change in item_changes]
        prepared.item_changes += item_changes
        prepared.more += self.signals.writes(new.id, effects, now)
        prepared.effects += effects
        return new, events

    def _writes(
        self, new: ExecutionState, prepared: "Prepared"
    ) -> tuple[list[Change], list[Run], list[Intent]]:
        """What the commit of ``new`` carries besides the execution and its events: the job
        changes and new jobs, the runs they close, the item and signal rows."""
        items: list[Intent] = [
            i for c in prepared.item_changes for i in store.put_items(new.id, c.step_id, c.items)
        ]
        jobs = [*prepared.changes, *((None, j) for j in prepared.created)]
        return jobs, prepared.runs, [*items, *prepared.more]

    def _after(self, new: ExecutionState, prepared: "Prepared") -> None:
        """Once committed: the new jobs enter their queues, deadlines and signal timeouts are
        armed (children are the caller's: :meth:`_children_after`)."""
        if prepared.created:
            self.jobs.admit(prepared.created)
            self.metrics.jobs_created_by["workflow"].inc(len(prepared.created))
        for at in prepared.deadlines:
            self.jobs.timers.arm(at, DeadlineTimer(new.id, at))
        self.signals.arm(new.id, prepared.effects)

    async def _children_after(
        self, actor: ExecutionActor, children: list[CancelChild | StartChild]
    ) -> None:
        """Once committed and the rest carried out: children are cancelled, then started."""
        for effect in children:
            if isinstance(effect, CancelChild):
                await self.children.cancel(actor.state, effect)
        for effect in children:
            if isinstance(effect, StartChild):
                await self.children.started(actor, effect)

    async def _results(
        self, actor: ExecutionActor, messages: list[tuple[Message, Carry | None]]
    ) -> tuple[list[Any], int]:
        """Job starts and results that waited in the mailbox, as one commit: each goes
        through ``decide`` in turn (the next one sees what the previous one did), and their
        writes share one transaction, so a busy map does not take one commit per item.

        Returns the outcomes of the messages handled and how many were (a withdrawal of a
        job created in the same batch ends the batch before its transition). Anything
        unusual (a refusal, an execution that cannot pay, an error) is left to the one by one
        path: nothing is stored before the commit, so handling the messages again is safe.
        """
        now = self.jobs.clock.now_ms()
        state, events = actor.state, list[Event]()
        items = {sid: list(found) for sid, found in actor.items.items()}
        total = Prepared.of(None)
        price, done = 0, 0
        arrivals: list[float] = []  # of the results that queued jobs
        try:
            for message, carry in messages:
                new, effects, more = decide(state, message, now, actor.graph, items)
                prepared = Prepared.of(carry)
                batch_jobs = frozenset(j.id for j in total.created)
                new, more = self._prepare(new, effects, more, now, prepared, batch_jobs)
                price += price_of(message, effects)
                if carry is not None and prepared.created:
                    arrivals.append(carry[2])
                state, events = new, events + more
                total.merge(prepared)
                keep_items(items, prepared.item_changes)
                done += 1
        except SplitBatch:
            pass
        except Exception:
            return [], 0
        if not done or not self.jobs.accounts.can_pay(actor.state.project_id, price):
            return [], 0
        try:
            with self.jobs.accounts.paying(actor.state.project_id, price, "infra/workflows"):
                writes = self._writes(state, total)
                actor.state = await self._record(actor.state, state, events, *writes)
        except FlowyardError as exc:
            return [exc] * done, done
        except Exception:
            log.exception("execution %s: a batch of job results failed; one by one", state.id)
            return [], 0
        actor.items = items
        self._after(state, total)
        if total.children:
            await self._children_after(actor, total.children)
        if arrivals:
            handed = perf_counter()
            for arrived in arrivals:
                self.metrics.step_handoff.observe(handed - arrived)
        return [actor.state] * done, done


def tag_item_jobs(events: list[Event], jobs: dict[tuple[str, int], str]) -> list[Event]:
    """The events with each ``item_queued`` given the id of the job created for it."""
    out = []
    for event in events:
        if event.type == "item_queued" and event.step_id is not None:
            job_id = jobs.get((event.step_id, event.data["index"]))
            if job_id is not None:
                event = replace(event, data={**event.data, "job_id": job_id})
        out.append(event)
    return out


def price_of(message: Message, effects: list[Effect]) -> int:
    """What a transition costs: the call for a command, and every job it creates."""
    jobs = JOB_WRITE * sum(isinstance(effect, QueueJob) for effect in effects)
    return WORKFLOW_WRITE + jobs if isinstance(message, COMMANDS) else jobs
