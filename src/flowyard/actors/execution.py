"""The brain of an execution: ``decide(state, message, now, graph)``, pure and synchronous.

It returns the new state, the effects the shell must carry out after committing (jobs to
queue or withdraw, a deadline to arm) and the events to append to the log. No clock, no I/O,
no randomness: time comes in as ``now`` and job ids are filled in by the shell.
"""

from typing import Any

import msgspec

from flowyard.actors.execution_maps import MapRunner
from flowyard.errors import Conflict, Invalid
from flowyard.jobs.spec import MAX_PAYLOAD_BYTES
from flowyard.workflows.blueprint import Graph, StepKind
from flowyard.workflows.child_steps import ChildSteps
from flowyard.workflows.conditions import ConditionError
from flowyard.workflows.maps import NO_ITEMS, Items
from flowyard.workflows.signal_steps import SignalSteps
from flowyard.workflows.state import (
    ACTIVE,
    CANCELLABLE,
    CONDITION_FALSE,
    FINISHED,
    LIVE,
    OPEN,
    ArmDeadline,
    CancelChild,
    CancelExecution,
    ChildFinished,
    ChildStarted,
    DeadlinePassed,
    Effect,
    Event,
    ExecutionState,
    ExecutionStatus,
    Failure,
    ItemState,
    JobFinished,
    JobStarted,
    Message,
    PauseExecution,
    QueueJob,
    ResumeExecution,
    SendSignal,
    SignalTimedOut,
    Start,
    StepError,
    StepState,
    StepStatus,
    WithdrawJob,
)
from flowyard.workflows.templates import TemplateError

replace = msgspec.structs.replace

PENDING = StepStatus.PENDING

Decision = tuple[ExecutionState, list[Effect], list[Event]]


def decide(
    state: ExecutionState, message: Message, now: int, graph: Graph, items: Items = NO_ITEMS
) -> Decision:
    """The transition for ``message``.

    ``items`` are the items of the execution's for_each steps (read only); the items the
    transition changes come back as ``PutItems`` effects.

    Raises:
        Conflict: the execution's or the step's status does not allow the command (409).
        Invalid: the command names an unknown step, or overrides without a step (400).
    """
    draft = _Draft(state, graph, now, items)
    match message:
        case Start():
            draft.event("triggered")
            draft.effects.append(ArmDeadline(state.deadline_at))
            draft.schedule()
        case JobStarted():
            draft.job_started(message)
        case JobFinished():
            draft.job_finished(message)
        case CancelExecution():
            draft.cancel()
        case PauseExecution():
            draft.pause(message.reason)
        case ResumeExecution():
            draft.resume(message)
        case DeadlinePassed():
            draft.deadline(message)
        case SendSignal():
            draft.signal(message)
        case SignalTimedOut():
            draft.signal_timed_out(message)
        case ChildStarted() if message.item_index is not None:
            draft.maps.child_started(message)
        case ChildStarted():
            draft.child_started(message.step_id, message.attempt, message.child_execution_id)
        case ChildFinished() if message.item_index is not None:
            draft.maps.child_finished(message)
        case ChildFinished():
            draft.child_finished(message)
        case _:
            raise TypeError(f"unexpected message {message!r}")
    draft.settle()
    return draft.result()


def render_child_input(
    state: ExecutionState, graph: Graph, step_id: str, item: ItemState | None = None
) -> dict[str, Any] | StepError:
    """A running sub_workflow step's child input (or its ``item``'s), rendered again (after a
    restart lost the start): its templates read only ancestors' outputs and the item's value,
    which have not changed since."""
    return _Draft(state, graph, 0).child_input(step_id, item)


class _Draft(ChildSteps, SignalSteps):
    """A mutable working copy of one transition (its sub_workflow steps: ``ChildSteps``)."""

    def __init__(
        self, state: ExecutionState, graph: Graph, now: int, items: Items = NO_ITEMS
    ) -> None:
        self.state = state
        self.graph = graph
        self.now = now
        self.steps = dict(state.steps)
        self.effects: list[Effect] = []
        self.events: list[Event] = []
        self.maps = MapRunner(self, items)

    # --------------------------------------------------------------- helpers

    def event(
        self, kind: str, step_id: str | None = None, data: dict[str, Any] | None = None
    ) -> None:
        self.events.append(Event(kind, self.now, step_id, data or {}))

    def set_step(self, step_id: str, **changes: Any) -> StepState:
        step = replace(self.steps[step_id], **changes)
        self.steps[step_id] = step
        return step

    def update(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def result(self) -> Decision:
        effects = [*self.effects, *self.maps.effects()] if self.maps.changed else self.effects
        return replace(self.state, steps=self.steps), effects, self.events

    @property
    def status(self) -> ExecutionStatus:
        return self.state.status

    # --------------------------------------------------------------- scheduling

    def eligible(self, step_id: str) -> bool:
        steps = self.steps
        step = steps[step_id]
        if step.status is not PENDING:
            return False
        if step_id in self.graph.catch_steps:
            return step.failure is not None
        return all(steps[dep].done for dep in self.graph.deps[step_id])

    def schedule(self) -> None:
        """Queue every eligible step, and look again while a step started here ended at
        once (a template failure, a false ``when``, an empty map...): that may make more
        eligible. A step whose job, signal or items are out changes no other's eligibility.
        """
        self.maps.fill_all()
        order = self.graph.order
        while self.status is ExecutionStatus.RUNNING:
            ready = [s for s in order if self.eligible(s)]
            if not ready:
                return
            for step_id in ready:
                if self.eligible(step_id):
                    self.queue(step_id)
            steps = self.steps
            if all(steps[s].status in OPEN for s in ready):
                return

    def queue(self, step_id: str) -> None:
        """Start an eligible step the way its kind says, if its ``when`` holds."""
        if step_id in self.graph.conditions and not self.condition_holds(step_id):
            return
        if self.graph.steps[step_id].for_each is not None:
            self.maps.start(step_id)
            return
        match self.graph.steps[step_id].kind:
            case StepKind.JOB:
                self.queue_job(step_id)
            case StepKind.SIGNAL:
                self.wait_for_signal(step_id)
            case StepKind.SUB_WORKFLOW:
                self.start_child(step_id)

    def queue_job(self, step_id: str) -> None:
        step = self.steps[step_id]
        try:
            payload = self.graph.payloads[step_id](self.context(step_id))
            encoded = msgspec.json.encode(payload)
        except TemplateError as exc:
            message = f"cannot resolve {{{{{exc.path}}}}}"
            self.fail(step_id, StepError("template_error", message), None, step.attempt)
            return
        except RecursionError:  # a deep template around a deep value: it could not be sent
            message = "the rendered payload is nested too deeply"
            self.fail(step_id, StepError("template_error", message), None, step.attempt)
            return
        if len(encoded) > MAX_PAYLOAD_BYTES:  # the job payload limit holds for steps too
            message = f"the rendered payload is over {MAX_PAYLOAD_BYTES} bytes"
            self.fail(step_id, StepError("template_error", message), None, step.attempt)
            return
        attempt = step.attempt + 1
        self.set_step(
            step_id,
            status=StepStatus.QUEUED,
            attempt=attempt,
            job_id=None,
            error=None,
            output=None,
            started_at=None,
            completed_at=None,
        )
        self.effects.append(QueueJob(step_id, attempt, msgspec.Raw(encoded)))
        self.event("step_queued", step_id, {"attempt": attempt})

    def condition_holds(self, step_id: str) -> bool:
        """Evaluate the step's ``when``; false skips it, an error or non-boolean fails it."""
        ancestors = self.graph.ancestors[step_id]
        variables = {
            "input": self.state.input_data,
            "steps": {
                sid: {"output": s.output, "status": s.status.value}
                for sid, s in self.steps.items()
                if sid in ancestors
            },
            "execution": {"id": self.state.id, "blueprint_id": self.state.blueprint_id},
        }
        try:
            holds = self.graph.conditions[step_id].evaluate(variables)
        except ConditionError as exc:
            step = self.steps[step_id]
            self.fail(step_id, StepError("condition_error", exc.message), None, step.attempt)
            return False
        if not holds:
            self.set_step(
                step_id,
                status=StepStatus.SKIPPED,
                skip_reason=CONDITION_FALSE,
                output=None,
                completed_at=self.now,
            )
            self.event("step_skipped", step_id, {"reason": CONDITION_FALSE})
        return holds

    def context(self, step_id: str) -> dict[str, Any]:
        steps = {sid: s.output for sid, s in self.steps.items() if s.done}
        context: dict[str, Any] = {
            "input": self.state.input_data,
            "steps": steps,
            "execution": {"id": self.state.id, "blueprint_id": self.state.blueprint_id},
        }
        failure = self.failure_for(step_id)
        if failure is not None:
            context["failure"] = {"item_index": None, **msgspec.to_builtins(failure)}
        return context

    def failure_for(self, step_id: str) -> Failure | None:
        if step_id not in self.graph.in_catch_branch:
            return None
        for catch_id in self.graph.order:
            if catch_id not in self.graph.catch_steps or step_id not in self.graph.branch[catch_id]:
                continue
            failure = self.steps[catch_id].failure
            if failure is not None:
                return failure
        return None

    # --------------------------------------------------------------- failures

    def fail(
        self,
        step_id: str,
        error: StepError,
        job_id: str | None,
        attempts: int,
        item_index: int | None = None,
    ) -> None:
        """A step failed for good: record it and route it to its catch step, if any."""
        self.set_step(step_id, status=StepStatus.FAILED, error=error, completed_at=self.now)
        data: dict[str, Any] = {
            "error": msgspec.to_builtins(error),
            "job_id": job_id,
            "attempt": attempts,
        }
        if item_index is not None:
            data["item_index"] = item_index
        self.event("step_failed", step_id, data)
        catch_id = self.graph.catch_of.get(step_id)
        if catch_id is None or self.status not in LIVE:
            return
        failure = Failure(step_id, error.code, error.message, job_id, max(attempts, 1), item_index)
        self.set_step(step_id, caught_by=catch_id)
        self.event("caught", step_id, {"catch": catch_id, "failure": msgspec.to_builtins(failure)})
        for descendant in self.below(step_id, StepStatus.PENDING):
            self.set_step(descendant, status=StepStatus.SKIPPED)
            self.event("step_skipped", descendant, {"reason": f"{step_id} failed"})
        catch = self.steps[catch_id]
        if catch.failure is None and catch.status is StepStatus.PENDING:
            self.set_step(catch_id, failure=failure)

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

    def below(self, step_id: str, status: StepStatus) -> list[str]:
        """Descendants of ``step_id`` in ``status``, in graph order."""
        below = self.graph.descendants[step_id]
        return [s for s in self.graph.order if s in below and self.steps[s].status is status]

    # --------------------------------------------------------------- messages

    def job_started(self, message: JobStarted) -> None:
        if message.item_index is not None:
            self.maps.job_started(message)
            return
        step = self.steps.get(message.step_id)
        if step is None or step.attempt != message.attempt or step.status is not StepStatus.QUEUED:
            return
        self.set_step(message.step_id, status=StepStatus.RUNNING, started_at=self.now)
        self.event("step_started", message.step_id, {"job_id": message.job_id})

    def job_finished(self, message: JobFinished) -> None:
        if message.item_index is not None:
            self.maps.job_finished(message)
            return
        step = self.steps.get(message.step_id)
        if step is None or step.attempt != message.attempt or step.status not in ACTIVE:
            return  # a superseded attempt (retried, overridden or withdrawn): changes nothing
        if message.outcome == "completed":
            self.set_step(
                message.step_id,
                status=StepStatus.COMPLETED,
                output=message.output,
                error=None,
                completed_at=self.now,
                started_at=step.started_at or self.now,
            )
            self.event(
                "step_completed",
                message.step_id,
                {"job_id": message.job_id, "output": message.output},
            )
        else:
            code = "job_cancelled" if message.outcome == "cancelled" else "job_failed"
            error = StepError(code, message.error or code)
            self.fail(message.step_id, error, message.job_id, message.attempts)
        self.schedule()

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

    # --------------------------------------------------------------- quiescence

    def settle(self) -> None:
        """A running execution with nothing queued, running or eligible has ended."""
        if self.status is not ExecutionStatus.RUNNING:
            return
        for step in self.steps.values():
            if step.status in OPEN:
                return
        if any(self.eligible(s) for s in self.graph.order):
            return
        uncaught = [
            s
            for s in (self.steps[sid] for sid in self.graph.order)
            if s.status is StepStatus.FAILED and s.caught_by is None
        ]
        if uncaught:
            error = uncaught[0].error
            self.update(status=ExecutionStatus.FAILED, error=error, completed_at=self.now)
            self.event("failed", data={"error": msgspec.to_builtins(error)})
            return
        if any(s.status is StepStatus.CANCELLED for s in self.steps.values()):
            # A resume of one step left withdrawn steps behind: the execution did not complete.
            self.update(status=ExecutionStatus.CANCELLED, cancelled_at=self.now)
            self.event("cancelled")
            return
        for step_id in self.graph.order:
            step = self.steps[step_id]
            if step.status is StepStatus.PENDING and step_id in self.graph.in_catch_branch:
                self.set_step(step_id, status=StepStatus.SKIPPED)
                self.event("step_skipped", step_id, {"reason": "catch branch not needed"})
        caught = any(s.status is StepStatus.FAILED for s in self.steps.values())
        final = ExecutionStatus.COMPENSATED if caught else ExecutionStatus.COMPLETED
        self.update(status=final, completed_at=self.now)
        self.event(final.value)
