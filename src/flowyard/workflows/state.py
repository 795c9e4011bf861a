"""Execution and step state, the messages an execution receives, and what it asks for.

All of it is plain data: frozen msgspec Structs and StrEnums with named sets.
"""

from enum import StrEnum
from typing import Any

import msgspec


class ExecutionStatus(StrEnum):
    """Where an execution is."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"


FINISHED = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.COMPENSATED})
"""Statuses nothing can change any more (resume and cancel are 409)."""
CANCELLABLE = frozenset({ExecutionStatus.RUNNING, ExecutionStatus.PAUSED, ExecutionStatus.FAILED})
LIVE = frozenset({ExecutionStatus.RUNNING, ExecutionStatus.PAUSED})
"""Statuses in which an execution still has an actor after a restart."""


class StepStatus(StrEnum):
    """Where a step is."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


ACTIVE = frozenset({StepStatus.QUEUED, StepStatus.RUNNING})
"""Steps whose job is out: queued or running."""
OPEN = ACTIVE | {StepStatus.WAITING}
"""Steps that keep an execution from settling: a job out, or a signal awaited."""

CONDITION_FALSE = "condition_false"
"""The ``skip_reason`` of a step whose ``when`` was false: it counts as done for its dependents."""


# gc=False: these records never take part in reference cycles; leaving them out of the
# cyclic collector saves memory and collector time with many live jobs and executions.
class StepError(msgspec.Struct, frozen=True, gc=False):
    """Why a step or an execution failed."""

    code: str
    message: str


class Failure(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The failure that activated a catch step (``{{failure.*}}``)."""

    step_id: str
    code: str
    error: str
    job_id: str | None
    attempt: int
    item_index: int | None = None
    """The for_each item whose failure failed the step (None for other steps)."""


class ItemStatus(StrEnum):
    """Where one item of a ``for_each`` step is."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ITEM_ACTIVE = frozenset({ItemStatus.QUEUED, ItemStatus.RUNNING})
"""Items whose job (or child execution) is out."""


class ItemState(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One item of a ``for_each`` step: stored in a row of its own, never in the execution."""

    index: int
    status: ItemStatus = ItemStatus.PENDING
    value: Any = None
    """The element of the for_each array (``{{item}}``)."""
    job_id: str | None = None
    attempt: int = 0
    output: Any = None
    error: StepError | None = None
    started_at: int | None = None
    completed_at: int | None = None
    child_execution_id: str | None = None
    """The child execution of the item's attempt (a for_each sub_workflow step)."""


class MapProgress(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The item counts of a ``for_each`` step: all the execution holds of its items.

    ``next`` is one past the item queued last (items are started from there on);
    ``failure`` is the first item failure of this run: it fails the step once nothing is out.
    """

    total: int
    completed: int = 0
    failed: int = 0
    running: int = 0
    queued: int = 0
    cancelled: int = 0
    next: int = 0
    failure: Failure | None = None

    @property
    def active(self) -> int:
        """Items whose job is out."""
        return self.running + self.queued


class StepState(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One step of one execution."""

    step_id: str
    status: StepStatus = StepStatus.PENDING
    job_id: str | None = None
    attempt: int = 0
    output: Any = None
    error: StepError | None = None
    started_at: int | None = None
    completed_at: int | None = None
    caught_by: str | None = None
    failure: Failure | None = None
    skip_reason: str | None = None
    signal: str | None = None  # the signal name a wait_for_signal step waits for (or took)
    signal_id: str | None = None  # the signal it took
    child_execution_id: str | None = None
    items: MapProgress | None = None

    @property
    def done(self) -> bool:
        """Completed, or skipped because its ``when`` was false: its dependents may run."""
        if self.status is StepStatus.SKIPPED:
            return self.skip_reason == CONDITION_FALSE
        return self.status is StepStatus.COMPLETED


class BufferedSignal(msgspec.Struct, frozen=True, gc=False):
    """A signal that arrived while no step waited for its name, kept for the next one."""

    id: str
    seq: int
    name: str
    data: Any = None


class ParentRef(msgspec.Struct, frozen=True, gc=False):
    """The sub_workflow step attempt that started a child execution."""

    execution_id: str
    step_id: str
    attempt: int
    item_index: int | None = None
    """The for_each item the child runs (``attempt`` is then the item's)."""


class ExecutionState(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """An execution as stored and as its actor holds it."""

    id: str
    project_id: str
    blueprint_id: str
    status: ExecutionStatus = ExecutionStatus.RUNNING
    input_data: Any = None
    error: StepError | None = None
    idempotency_key: str | None = None
    started_at: int = 0
    completed_at: int | None = None
    cancelled_at: int | None = None
    paused_at: int | None = None
    pause_reason: str | None = None
    resumed_at: int | None = None
    deadline_at: int = 0
    max_duration_ms: int = 86_400_000
    steps: dict[str, StepState] = {}
    event_seq: int = 0
    # Signals kept for steps that do not wait yet, oldest first. Not stored with the state:
    # they are read back from the signals table (``consumed_by`` null) when it is loaded.
    signals: list[BufferedSignal] = []
    signal_seq: int = 0  # signals accepted so far (the ``seq`` of the last one)
    parent: ParentRef | None = None
    depth: int = 0
    """0 for an execution triggered by a client; a child's is its parent's plus one."""

    def step(self, step_id: str) -> StepState:
        """The state of one step."""
        return self.steps[step_id]


# ------------------------------------------------------------------------- messages


class Start(msgspec.Struct, frozen=True, tag="start"):
    """The execution was just triggered: queue its root steps."""


class JobStarted(msgspec.Struct, frozen=True, tag="job_started"):
    """A step's job was claimed or delivered."""

    step_id: str
    attempt: int
    job_id: str
    item_index: int | None = None


class JobFinished(msgspec.Struct, frozen=True, tag="job_finished"):
    """A step's job ended: ``completed``, ``failed`` or ``cancelled``."""

    step_id: str
    attempt: int
    job_id: str
    outcome: str
    output: Any = None
    error: str | None = None
    attempts: int = 1
    item_index: int | None = None


class CancelExecution(msgspec.Struct, frozen=True, tag="cancel"):
    """Stop scheduling; withdraw queued jobs."""


class PauseExecution(msgspec.Struct, frozen=True, tag="pause"):
    """Queue nothing new until resumed (``reason``: why, when the engine pauses by itself)."""

    reason: str | None = None


class ResumeExecution(msgspec.Struct, frozen=True, tag="resume"):
    """Retry a step, override its output, or continue everything."""

    step_id: str | None = None
    override: bool = False
    output: Any = None
    reason: str | None = None


class DeadlinePassed(msgspec.Struct, frozen=True, tag="deadline"):
    """``deadline_at`` has come (stale if the deadline moved since)."""

    deadline_at: int


class SendSignal(msgspec.Struct, frozen=True, tag="signal"):
    """A signal sent to the execution (its id given by the shell)."""

    signal_id: str
    name: str
    data: Any = None
    idempotency_key: str | None = None


class SignalTimedOut(msgspec.Struct, frozen=True, tag="signal_timeout"):
    """A waiting step's ``timeout_sec`` passed (stale unless it still waits in ``attempt``)."""

    step_id: str
    attempt: int


class ChildStarted(msgspec.Struct, frozen=True, tag="child_started"):
    """The child execution of a sub_workflow step attempt exists (started, or found again)."""

    step_id: str
    attempt: int
    child_execution_id: str
    item_index: int | None = None
    """The for_each item whose child it is (``attempt`` is then the item's)."""


class ChildFinished(msgspec.Struct, frozen=True, tag="child_finished"):
    """A sub_workflow step attempt's child ended (``status``: the child's final status), or
    could not start (``status`` ``not_started``, ``child_execution_id`` None)."""

    step_id: str
    attempt: int
    child_execution_id: str | None
    status: str
    output: Any = None
    error: StepError | None = None
    item_index: int | None = None


Message = (
    Start
    | JobStarted
    | JobFinished
    | CancelExecution
    | PauseExecution
    | ResumeExecution
    | DeadlinePassed
    | SendSignal
    | SignalTimedOut
    | ChildStarted
    | ChildFinished
)


# ------------------------------------------------------------------------- effects


class QueueJob(msgspec.Struct, frozen=True, tag="queue_job"):
    """Create the job of one step attempt with this rendered payload (as JSON: it was encoded
    to check its size, and the job stores it as it is)."""

    step_id: str
    attempt: int
    payload: msgspec.Raw
    item_index: int | None = None
    """The for_each item the job runs (``attempt`` is then the item's)."""


class WithdrawJob(msgspec.Struct, frozen=True, tag="withdraw_job"):
    """Cancel a step's outstanding job."""

    step_id: str
    job_id: str
    item_index: int | None = None


class ArmDeadline(msgspec.Struct, frozen=True, tag="arm_deadline"):
    """Send :class:`DeadlinePassed` at ``deadline_at``."""

    deadline_at: int


class RecordSignal(msgspec.Struct, frozen=True, tag="record_signal"):
    """Store a signal the execution accepted (taken by ``consumed_by``, or kept)."""

    signal_id: str
    seq: int
    name: str
    data: Any
    idempotency_key: str | None
    consumed_by: str | None


class ConsumeSignal(msgspec.Struct, frozen=True, tag="consume_signal"):
    """A kept signal was taken by a step that started waiting."""

    signal_id: str
    step_id: str


class ArmSignalTimeout(msgspec.Struct, frozen=True, tag="arm_signal_timeout"):
    """Send :class:`SignalTimedOut` at ``at`` unless the step stopped waiting."""

    step_id: str
    attempt: int
    at: int


class StartChild(msgspec.Struct, frozen=True, tag="start_child"):
    """Start (or find again) the child execution of one sub_workflow step attempt."""

    step_id: str
    attempt: int
    blueprint_id: str
    input_data: dict[str, Any]
    item_index: int | None = None
    """The for_each item the child runs (``attempt`` is then the item's)."""


class CancelChild(msgspec.Struct, frozen=True, tag="cancel_child"):
    """Cancel the child of a sub_workflow step attempt (``child_execution_id`` None: the one
    its start made or will make)."""

    step_id: str
    attempt: int
    child_execution_id: str | None
    item_index: int | None = None


class PutItems(msgspec.Struct, frozen=True, tag="put_items"):
    """Store these items of a for_each step (each in its own row), with the transition."""

    step_id: str
    items: tuple[ItemState, ...]


Effect = (
    QueueJob
    | WithdrawJob
    | ArmDeadline
    | RecordSignal
    | ConsumeSignal
    | ArmSignalTimeout
    | PutItems
    | StartChild
    | CancelChild
)


class Event(msgspec.Struct, frozen=True, gc=False):
    """One entry of an execution's event log (``seq`` is given when it is stored)."""

    type: str
    at: int
    step_id: str | None = None
    data: dict[str, Any] = {}
