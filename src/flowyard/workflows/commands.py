"""How ``decide`` carries out an execution's commands: cancel, pause, resume (a retry or an
override of one step, or of every failed one) and the deadline. A part of the transition's
working copy (``_Draft`` in ``actors/execution.py``), kept apart from the scheduling of steps."""

from typing import TYPE_CHECKING, Any

import msgspec

from flowyard.errors import Conflict, Invalid
from flowyard.workflows.draft import DraftPart
from flowyard.workflows.state import (
    ACTIVE,
    CANCELLABLE,
    FINISHED,
    LIVE,
    ArmDeadline,
    CancelChild,
    DeadlinePassed,
    ExecutionStatus,
    ResumeExecution,
    StepError,
    StepStatus,
    WithdrawJob,
)

if TYPE_CHECKING:
    from flowyard.actors.execution_maps import MapRunner


class Commands(DraftPart):
    """The commands' side of a transition's working copy."""

    maps: "MapRunner"

    def cancel(self) -> None:
        if self.status not in CANCELLABLE:
            raise Conflict(f"cannot cancel an execution that is {self.status}")
        self.withdraw_queued()
        self.maps.cancel_children()
        self.cancel_children()
        self.update(status=ExecutionStatus.CANCELLED, cancelled_at=self.now)
        self.event("cancelled")

    def withdraw_queued(self) -> None:
        self.maps.withdraw_live()
        for step_id in self.graph.order:
            step = self.steps[step_id]
            if step.status in (StepStatus.QUEUED, StepStatus.WAITING):
                self.set_step(step_id, status=StepStatus.CANCELLED, completed_at=self.now)
                if step.job_id is not None:
                    self.effects.append(WithdrawJob(step_id, step.job_id))
                self.event("step_cancelled", step_id, {"job_id": step.job_id})

    def pause(self, reason: str | None) -> None:
        if self.status is not ExecutionStatus.RUNNING:
            raise Conflict(f"cannot pause an execution that is {self.status}")
        self.update(status=ExecutionStatus.PAUSED, paused_at=self.now, pause_reason=reason)
        self.event("paused", data={"reason": reason} if reason else None)

    def deadline(self, message: DeadlinePassed) -> None:
        if message.deadline_at != self.state.deadline_at or self.status not in LIVE:
            return
        self.withdraw_queued()
        error = StepError("timed_out", "the execution ran past its max_duration_sec")
        self.update(status=ExecutionStatus.FAILED, error=error, completed_at=self.now)
        self.event("timed_out", data={"deadline_at": message.deadline_at})
        self.event("failed", data={"error": msgspec.to_builtins(error)})

    def resume(self, message: ResumeExecution) -> None:
        step_id = message.step_id
        if step_id is not None and step_id not in self.steps:
            raise Invalid(
                f"unknown step_id {step_id!r}",
                [{"path": "$.step_id", "message": f"no step {step_id!r} in this blueprint"}],
            )
        if message.override and step_id is None:
            raise Invalid(
                "override_output needs a step_id",
                [{"path": "$.override_output", "message": "requires step_id"}],
            )
        if self.status in FINISHED:
            raise Conflict(f"cannot resume an execution that is {self.status}")
        if step_id is not None and message.override:
            self.override(step_id, message.output, message.reason)
        elif step_id is not None:
            self.retry(step_id)
        else:
            if self.status is ExecutionStatus.RUNNING:
                raise Conflict("the execution is running: name a step_id to retry or override")
            for sid in self.graph.order:
                if self.steps[sid].status in (StepStatus.FAILED, StepStatus.CANCELLED):
                    self.retry(sid)
        deadline = self.now + self.state.max_duration_ms
        self.update(
            status=ExecutionStatus.RUNNING,
            resumed_at=self.now,
            pause_reason=None,
            error=None,
            completed_at=None,
            deadline_at=deadline,
        )
        self.effects.append(ArmDeadline(deadline))
        self.event("resumed", step_id, {"reason": message.reason, "deadline_at": deadline})
        self.schedule()

    def override(self, step_id: str, output: Any, reason: str | None) -> None:
        step = self.steps[step_id]
        allowed = (
            StepStatus.FAILED,
            StepStatus.CANCELLED,
            StepStatus.QUEUED,
            StepStatus.RUNNING,
            StepStatus.WAITING,
        )
        if step.status not in allowed:
            raise Conflict(f"cannot override step {step_id!r} while it is {step.status}")
        if step.status in ACTIVE and step.job_id is not None:
            self.effects.append(WithdrawJob(step_id, step.job_id))
        if step.status in ACTIVE and step.items is not None:
            self.maps.withdraw(step_id, running=True)
        if self.is_child_running(step_id):
            self.effects.append(CancelChild(step_id, step.attempt, step.child_execution_id))
        self.set_step(
            step_id,
            status=StepStatus.COMPLETED,
            output=output,
            error=None,
            caught_by=None,
            completed_at=self.now,
        )
        self.event("output_overridden", step_id, {"output": output, "reason": reason})
        self.unskip_below(step_id)

    def retry(self, step_id: str) -> None:
        step = self.steps[step_id]
        if step.status not in (StepStatus.FAILED, StepStatus.CANCELLED):
            raise Conflict(f"cannot retry step {step_id!r} while it is {step.status}")
        self.set_step(step_id, status=StepStatus.PENDING, error=None, caught_by=None)
        self.event("step_pending", step_id, {"reason": "resume", "retry": True})
        self.unskip_below(step_id)

    def unskip_below(self, step_id: str) -> None:
        """Descendants skipped because ``step_id``'s failure was caught go back to pending.

        One that is also below another caught failure stays skipped: that failure still holds.
        """
        held: set[str] = set()
        for sid, step in self.steps.items():
            if step.status is StepStatus.FAILED and step.caught_by is not None:
                held |= self.graph.descendants[sid]
        for descendant in self.below(step_id, StepStatus.SKIPPED):
            if descendant in held or self.steps[descendant].done:
                continue  # held by another failure, or skipped by its own when: final
            self.set_step(descendant, status=StepStatus.PENDING)
            self.event("step_pending", descendant, {"reason": f"{step_id} resumed"})
