"""What the parts of a transition's working copy (``_Draft`` in ``actors/execution.py``) may
use of it: its fields, and, for the type checker only, the methods ``_Draft`` defines.

Each part (``Commands``, ``ChildSteps``, ``SignalSteps``) keeps one concern of ``decide``;
``_Draft`` joins them with the scheduling of steps."""

from typing import TYPE_CHECKING, Any

from flowyard.workflows.blueprint import Graph
from flowyard.workflows.state import (
    Effect,
    Event,
    ExecutionState,
    ExecutionStatus,
    StepError,
    StepState,
    StepStatus,
)


class DraftPart:
    """The fields of the working copy, and its methods as the parts see them."""

    state: ExecutionState
    graph: Graph
    now: int
    steps: dict[str, StepState]
    effects: list[Effect]
    events: list[Event]

    if TYPE_CHECKING:

        @property
        def status(self) -> ExecutionStatus: ...
        def event(
            self, kind: str, step_id: str | None = None, data: dict[str, Any] | None = None
        ) -> None: ...
        def set_step(self, step_id: str, **changes: Any) -> StepState: ...
        def update(self, **changes: Any) -> None: ...
        def schedule(self) -> None: ...
        def context(self, step_id: str) -> dict[str, Any]: ...
        def fail(
            self, step_id: str, error: StepError, job_id: str | None, attempts: int
        ) -> None: ...
        def below(self, step_id: str, status: StepStatus) -> list[str]: ...
        def cancel_children(self) -> None: ...
        def is_child_running(self, step_id: str) -> bool: ...
