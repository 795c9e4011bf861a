"""The brain of an execution: ``decide(state, message, now, graph)``, pure and synchronous.

It returns the new state, the effects the shell must carry out after committing (jobs to
queue or withdraw, a deadline to arm) and the events to append to the log. No clock, no I/O,
no randomness: time comes in as ``now`` and job ids are filled in by the shell.
"""

from typing import Any

import msgspec

from flowyard.actors.execution_maps import MapRunner
from flowyard.jobs.spec import MAX_PAYLOAD_BYTES
from flowyard.workflows.blueprint import Graph, StepKind
from flowyard.workflows.child_steps import ChildSteps
from flowyard.workflows.commands import Commands
from flowyard.workflows.conditions import ConditionError
from flowyard.workflows.maps import NO_ITEMS, Items
from flowyard.workflows.signal_steps import SignalSteps
from flowyard.workflows.state import (
    ACTIVE,
    CONDITION_FALSE,
    LIVE,
    OPEN,
    ArmDeadline,
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


class _Draft(Commands, ChildSteps, SignalSteps):
    """A mutable working copy of one transition (its commands: ``Commands``; its
    sub_workflow steps: ``ChildSteps``; its wait_for_signal steps: ``SignalSteps``)."""

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
