"""The pure rules of sub_workflow steps: how deep children may nest, the key that names the
child of one step attempt, and the error a step gets when its child does not complete."""

from typing import Any

from flowyard.workflows.state import ExecutionState, StepError

MAX_DEPTH = 5
"""The deepest child: a client's execution is depth 0, its child 1 ... a child at depth 5
starts no children (the step fails with ``sub_workflow_depth``)."""

KEY_PREFIX = "sub_workflow:"

NOT_STARTED = "not_started"
"""The ``ChildFinished`` status of a child that could not be started."""


def child_key(parent_id: str, step_id: str, attempt: int, item_index: int | None = None) -> str:
    """The idempotency key of the child of one step attempt (or, in a for_each step, of one
    item attempt): a start repeated after a crash finds the child the first one made instead
    of making another. Step ids hold no ``[`` or ``:``, so the two forms never meet."""
    if item_index is None:
        return f"{KEY_PREFIX}{parent_id}:{step_id}:{attempt}"
    return f"{KEY_PREFIX}{parent_id}:{step_id}[{item_index}]:{attempt}"


def depth_error(depth: int) -> StepError:
    """The failure of a sub_workflow step of an execution at ``depth`` (its child would be
    one deeper than :data:`MAX_DEPTH`)."""
    return StepError(
        "sub_workflow_depth",
        f"a child execution at depth {depth + 1} would nest deeper than {MAX_DEPTH}",
    )


def child_failure(child_id: str | None, status: str, error: StepError | None) -> StepError:
    """The step's error when its child ended without completing, or did not start."""
    if status == NOT_STARTED:
        assert error is not None
        return error
    if error is not None:
        return StepError("sub_workflow_failed", error.message)
    return StepError("sub_workflow_failed", f"child execution {child_id} ended {status}")


def not_started(message: str) -> StepError:
    """Why a child could not be started (its blueprint archived, its input short, no tokens)."""
    return StepError("sub_workflow_not_started", message)


def result_of(state: ExecutionState) -> dict[str, Any]:
    """An execution's ``result``: step id -> output of every completed step (a completed
    child's is its sub_workflow step's output)."""
    return {s.step_id: s.output for s in state.steps.values() if s.status == "completed"}
