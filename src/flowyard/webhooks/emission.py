"""Which events a job or execution change emits: pure, from the record before and after (and,
for a job, the runs the change closed)."""

from collections.abc import Iterable
from typing import Any

from flowyard.clock import rfc3339
from flowyard.jobs.model import Job, JobStatus, Run, RunStatus, workflow_view
from flowyard.workflows.state import ExecutionState, ExecutionStatus, StepStatus


def job_event(old: Job | None, new: Job, runs: Iterable[Run]) -> tuple[str, dict[str, Any]] | None:
    """``(topic, data)`` when the change ends an attempt of ``new``, else None.

    An attempt ends when the change closes the job's open run (``old.run_id``) with an
    outcome; a withdrawal (cancel) or a restart's interruption emits nothing.
    """
    if old is None or old.run_id is None or new.status is JobStatus.CANCELLED:
        return None
    closed = next((run for run in runs if run.id == old.run_id), None)
    if closed is None or closed.status is RunStatus.RUNNING:
        return None
    data: dict[str, Any] = {
        "job_id": new.id,
        "name": new.name,
        "run_id": closed.id,
        "attempt": closed.attempt,
    }
    if closed.status is RunStatus.COMPLETED:
        topic = "jobs.completed"
        data["result"] = new.result
    elif new.run_at is not None and new.status in (JobStatus.PENDING, JobStatus.SCHEDULED):
        if new.attempt < closed.attempt:
            return None  # interrupted by a restart: delivered again, not a failure
        topic = "jobs.failed"
        data["error"] = new.error
        data["retry_at"] = rfc3339(new.run_at)
    else:
        topic = "jobs.dead"
        data["error"] = new.error
        data["max_attempts"] = new.max_attempts
    if new.workflow is not None:
        data["workflow"] = workflow_view(new.workflow)
    return topic, data


ENDED = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.COMPENSATED,
        ExecutionStatus.CANCELLED,
    }
)
"""Execution statuses whose arrival is announced (``workflows.execution.<status>``)."""


def execution_events(old: ExecutionState, new: ExecutionState) -> list[tuple[str, dict[str, Any]]]:
    """``(topic, data)`` of each step that started waiting for a signal or failed for good in
    the change, then of the execution's end if it ended."""
    found: list[tuple[str, dict[str, Any]]] = []
    for step_id, step in new.steps.items():
        before = old.steps.get(step_id)
        if step.status is StepStatus.WAITING and (
            before is None
            or before.status is not StepStatus.WAITING
            or before.attempt != step.attempt
        ):
            data = {"execution_id": new.id, "step_id": step_id, "signal": step.signal}
            found.append(("workflows.step.waiting", data))
        if step.status is StepStatus.FAILED and (
            before is None or before.status is not StepStatus.FAILED
        ):
            found.append(
                (
                    "workflows.step.failed",
                    {
                        "execution_id": new.id,
                        "step_id": step_id,
                        "attempt": step.attempt,
                        "error": step.error,
                    },
                )
            )
    if new.status in ENDED and new.status is not old.status:
        found.append(
            (
                f"workflows.execution.{new.status.value}",
                {
                    "execution_id": new.id,
                    "blueprint_id": new.blueprint_id,
                    "status": new.status,
                    "result": {
                        s.step_id: s.output
                        for s in new.steps.values()
                        if s.status is StepStatus.COMPLETED
                    },
                    "error": new.error,
                },
            )
        )
    return found
