"""How ``decide`` runs sub_workflow steps: start a child, take its start and its end, cancel
it with its parent. A part of the transition's working copy (``_Draft`` in
``actors/execution.py``), kept apart so each step kind stays in a module of its own."""

from typing import Any

from flowyard.workflows.blueprint import StepKind
from flowyard.workflows.children import MAX_DEPTH, child_failure, depth_error
from flowyard.workflows.draft import DraftPart
from flowyard.workflows.rendering import render
from flowyard.workflows.state import (
    CancelChild,
    ChildFinished,
    ExecutionStatus,
    ItemState,
    StartChild,
    StepError,
    StepStatus,
)
from flowyard.workflows.templates import TemplateError


class ChildSteps(DraftPart):
    """The sub_workflow side of a transition's working copy."""

    def start_child(self, step_id: str) -> None:
        """Run the step's child: the step is running until the child ends."""
        step = self.steps[step_id]
        sub = self.graph.steps[step_id].sub_workflow
        assert sub is not None
        if self.state.depth >= MAX_DEPTH:
            self.fail(step_id, depth_error(self.state.depth), None, step.attempt)
            return
        rendered = self.child_input(step_id)
        if isinstance(rendered, StepError):
            self.fail(step_id, rendered, None, step.attempt)
            return
        attempt = step.attempt + 1
        self.set_step(
            step_id,
            status=StepStatus.RUNNING,
            attempt=attempt,
            job_id=None,
            child_execution_id=None,
            error=None,
            output=None,
            started_at=self.now,
            completed_at=None,
        )
        self.effects.append(StartChild(step_id, attempt, sub.blueprint_id, rendered))
        data = {"attempt": attempt, "blueprint_id": sub.blueprint_id}
        self.event("child_starting", step_id, data)

    def child_input(
        self, step_id: str, item: ItemState | None = None
    ) -> dict[str, Any] | StepError:
        """The rendered ``input`` of a sub_workflow step (for one ``item`` of a for_each
        step, with ``{{item}}`` and ``{{item_index}}`` bound), or why it cannot be rendered."""
        sub = self.graph.steps[step_id].sub_workflow
        assert sub is not None
        context = self.context(step_id)
        if item is not None:
            context = {**context, "item": item.value, "item_index": item.index}
        try:
            rendered = render(sub.input, context) if sub.input is not None else {}
        except TemplateError as exc:
            return StepError("template_error", f"cannot resolve {{{{{exc.path}}}}}")
        except RecursionError:
            return StepError("template_error", "the rendered input is nested too deeply")
        if not isinstance(rendered, dict):
            return StepError("template_error", "the rendered input is not a JSON object")
        return rendered

    def is_child_running(self, step_id: str) -> bool:
        """A sub_workflow step (not a for_each one: its items run the children) whose child
        runs."""
        step = self.steps[step_id]
        spec = self.graph.steps[step_id]
        return (
            spec.kind is StepKind.SUB_WORKFLOW
            and spec.for_each is None
            and step.status is StepStatus.RUNNING
        )

    def child_started(self, step_id: str, attempt: int, child_id: str) -> None:
        step = self.steps.get(step_id)
        if step is None or step.attempt != attempt or not self.is_child_running(step_id):
            return  # a superseded attempt: its child is not this step's any more
        if step.child_execution_id == child_id:
            return
        self.set_step(step_id, child_execution_id=child_id)
        self.event("child_started", step_id, {"attempt": attempt, "child_execution_id": child_id})

    def child_finished(self, message: ChildFinished) -> None:
        step_id, child_id = message.step_id, message.child_execution_id
        step = self.steps.get(step_id)
        if step is None or step.attempt != message.attempt or not self.is_child_running(step_id):
            return  # a superseded attempt (retried, overridden or cancelled): changes nothing
        if child_id is not None:
            self.child_started(step_id, message.attempt, child_id)
        if message.status == ExecutionStatus.COMPLETED:
            self.set_step(
                step_id,
                status=StepStatus.COMPLETED,
                output=message.output,
                error=None,
                completed_at=self.now,
            )
            data = {"child_execution_id": child_id, "output": message.output}
            self.event("step_completed", step_id, data)
        else:
            error = child_failure(child_id, message.status, message.error)
            self.fail(step_id, error, None, message.attempt)
        self.schedule()

    def cancel_children(self) -> None:
        """Running sub_workflow steps are cancelled with their children."""
        for step_id in self.graph.order:
            step = self.steps[step_id]
            if self.is_child_running(step_id):
                self.set_step(step_id, status=StepStatus.CANCELLED, completed_at=self.now)
                child_id = step.child_execution_id
                self.effects.append(CancelChild(step_id, step.attempt, child_id))
                self.event("step_cancelled", step_id, {"child_execution_id": child_id})
