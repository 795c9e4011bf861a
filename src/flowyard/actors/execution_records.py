"""An execution actor's record, and the pure changes the workflow engine makes to a state
outside ``decide``: a failure it contains, a job id it learns, an input it lacks."""

from typing import Any

import msgspec

from flowyard.actors.jobs import Change
from flowyard.actors.mailbox import Mailbox
from flowyard.errors import FlowyardError, Invalid
from flowyard.jobs.model import Run
from flowyard.storage.workflows import Blueprint
from flowyard.workflows.blueprint import Graph
from flowyard.workflows.state import (
    LIVE,
    Event,
    ExecutionState,
    ExecutionStatus,
    ItemState,
    Message,
    ParentRef,
    PutItems,
    StepError,
    StepState,
)

replace = msgspec.structs.replace


Carry = tuple[Change, list[Run], float]
"""A job transition to commit together with the execution's own, and when (``perf_counter``)
its result reached the workflow engine (for ``flowyard_step_handoff_seconds``)."""


class DeadlineTimer(msgspec.Struct, frozen=True, gc=False):
    """A timer key: the execution's ``max_duration_sec`` window ends at ``at``."""

    execution_id: str
    at: int


class ExecutionActor:
    """One execution: its state, its graph, and a mailbox while it has messages."""

    __slots__ = ("busy", "graph", "items", "mailbox", "request_id", "state")

    def __init__(
        self,
        state: ExecutionState,
        graph: Graph,
        items: dict[str, list[ItemState]] | None = None,
    ) -> None:
        self.state = state
        self.graph = graph
        self.items: dict[str, list[ItemState]] = items or {}
        """The items of its for_each steps, as committed (``decide`` reads them)."""
        self.mailbox: Mailbox[tuple[Message, Carry | None]] | None = None
        self.busy = False
        self.request_id: str | None = None
        """The id of the request that triggered it, while it is in memory (never stored)."""

    def keep_items(self, changes: list[PutItems]) -> None:
        """Apply committed item changes to the actor's copy."""
        keep_items(self.items, changes)


def keep_items(items: dict[str, list[ItemState]], changes: list[PutItems]) -> None:
    """Apply item changes to ``items`` (step id -> items in index order)."""
    for change in changes:
        found = items.setdefault(change.step_id, [])
        for item in change.items:
            if item.index < len(found):
                found[item.index] = item
            else:
                found.append(item)


def failed_execution(
    state: ExecutionState, exc: Exception, now: int
) -> tuple[ExecutionState, list[Event]]:
    """A live execution failed with ``internal_error`` (an ended one as it is), and its event."""
    if state.status not in LIVE:
        return state, []
    error = StepError("internal_error", f"{type(exc).__name__}: {exc}"[:500])
    failed = replace(state, status=ExecutionStatus.FAILED, error=error, completed_at=now)
    return failed, [Event("failed", now, None, {"error": msgspec.to_builtins(error)})]


def new_execution(
    execution_id: str,
    blueprint: Blueprint,
    input_data: dict[str, Any],
    key: str | None,
    now: int,
    *,
    parent: ParentRef | None = None,
    depth: int = 0,
) -> ExecutionState:
    """A new execution of ``blueprint``, every step pending, its deadline set."""
    max_ms = blueprint.max_duration_sec * 1000
    return ExecutionState(
        id=execution_id,
        project_id=blueprint.project_id,
        blueprint_id=blueprint.id,
        input_data=input_data,
        idempotency_key=key,
        started_at=now,
        deadline_at=now + max_ms,
        max_duration_ms=max_ms,
        steps={step.id: StepState(step_id=step.id) for step in blueprint.steps},
        parent=parent,
        depth=depth,
    )


def with_jobs(state: ExecutionState, jobs: dict[str, str]) -> ExecutionState:
    """The state with the jobs of steps' attempts known (step id -> job id)."""
    steps = dict(state.steps)
    for step_id, job_id in jobs.items():
        steps[step_id] = replace(steps[step_id], job_id=job_id)
    return replace(state, steps=steps)


def tag_queued(events: list[Event], jobs: dict[str, str]) -> list[Event]:
    """The events with the job id added to each step's ``step_queued`` (step id -> job id)."""
    return [
        replace(e, data={**e.data, "job_id": jobs[e.step_id]})
        if e.type == "step_queued" and e.step_id in jobs
        else e
        for e in events
    ]


def with_item_jobs(change: PutItems, jobs: dict[tuple[str, int], str]) -> PutItems:
    """Item changes with the ids of the jobs created for them filled in."""
    if not jobs:
        return change
    items = tuple(
        replace(item, job_id=jobs[change.step_id, item.index])
        if (change.step_id, item.index) in jobs
        else item
        for item in change.items
    )
    return replace(change, items=items)


def missing_inputs(paths: list[str]) -> FlowyardError:
    """The 400 of a trigger whose ``input_data`` lacks what the templates read."""
    details = [{"path": f"$.input_data{p[len('input') :]}", "message": "missing"} for p in paths]
    return Invalid(f"input_data lacks {', '.join(paths)}", details)
