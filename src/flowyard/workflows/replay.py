"""Rebuild an execution's state from its event log.

The log is complete: folding it over the state an execution starts with gives the state that
``decide`` produced. Tests use this to check that nothing happens without an event.
"""

from collections.abc import Iterable
from typing import Any

import msgspec

from flowyard.workflows.maps import MAP_EVENTS, ItemReplay
from flowyard.workflows.state import (
    CONDITION_FALSE,
    BufferedSignal,
    Event,
    ExecutionState,
    ExecutionStatus,
    Failure,
    ItemState,
    StepError,
    StepStatus,
)

replace = msgspec.structs.replace


def initial(state: ExecutionState) -> ExecutionState:
    """The state an execution had when it was triggered (every step pending)."""
    steps = {sid: type(step)(step_id=sid) for sid, step in state.steps.items()}
    return replace(
        state,
        status=ExecutionStatus.RUNNING,
        error=None,
        completed_at=None,
        cancelled_at=None,
        paused_at=None,
        pause_reason=None,
        resumed_at=None,
        deadline_at=state.started_at + state.max_duration_ms,
        steps=steps,
        event_seq=0,
        signals=[],
        signal_seq=0,
    )


def replay(
    start: ExecutionState,
    events: Iterable[Event],
    items: dict[str, list[ItemState]] | None = None,
) -> ExecutionState:
    """Fold ``events`` over ``start``; the items of for_each steps are rebuilt into ``items``
    (step id -> items in index order) when it is given."""
    state = start
    steps = dict(state.steps)
    maps = ItemReplay({} if items is None else items)
    count = 0
    for event in events:
        count += 1
        sid, data, at = event.step_id, event.data, event.at
        step_changes: dict[str, Any] | None = None
        if event.type in MAP_EVENTS:
            assert sid is not None
            steps[sid] = maps.apply(steps[sid], event)
            continue
        match event.type:
            case "step_queued":
                step_changes = {
                    "status": StepStatus.QUEUED,
                    "attempt": data["attempt"],
                    "job_id": data.get("job_id"),
                    "error": None,
                    "output": None,
                    "started_at": None,
                    "completed_at": None,
                }
            case "child_starting":
                step_changes = {
                    "status": StepStatus.RUNNING,
                    "attempt": data["attempt"],
                    "job_id": None,
                    "child_execution_id": None,
                    "error": None,
                    "output": None,
                    "started_at": at,
                    "completed_at": None,
                }
            case "child_started":
                step_changes = {"child_execution_id": data["child_execution_id"]}
            case "step_started":
                step_changes = {"status": StepStatus.RUNNING, "started_at": at}
            case "step_completed":
                assert sid is not None
                step_changes = {
                    "status": StepStatus.COMPLETED,
                    "output": data.get("output"),
                    "error": None,
                    "completed_at": at,
                    "started_at": steps[sid].started_at or at,
                }
                if "signal_id" in data:  # a waiting step took a signal
                    step_changes["signal_id"] = data["signal_id"]
                    kept = [s for s in state.signals if s.id != data["signal_id"]]
                    state = replace(state, signals=kept)
            case "step_waiting":
                step_changes = {
                    "status": StepStatus.WAITING,
                    "attempt": data["attempt"],
                    "job_id": None,
                    "error": None,
                    "output": None,
                    "started_at": at,
                    "completed_at": None,
                    "signal": data["signal"],
                    "signal_id": None,
                }
            case "signal_received":
                seq = state.signal_seq + 1
                state = replace(state, signal_seq=seq)
                if data["consumed_by"] is None:
                    kept_signal = BufferedSignal(data["signal_id"], seq, data["name"], data["data"])
                    state = replace(state, signals=[*state.signals, kept_signal])
            case "step_failed":
                error = msgspec.convert(data["error"], StepError)
                step_changes = {"status": StepStatus.FAILED, "error": error, "completed_at": at}
            case "caught":
                assert sid is not None
                catch_id = data["catch"]
                steps[sid] = replace(steps[sid], caught_by=catch_id)
                catch = steps[catch_id]
                if catch.failure is None and catch.status is StepStatus.PENDING:
                    failure = msgspec.convert(data["failure"], Failure)
                    steps[catch_id] = replace(catch, failure=failure)
            case "step_skipped" if data.get("reason") == CONDITION_FALSE:
                step_changes = {
                    "status": StepStatus.SKIPPED,
                    "skip_reason": CONDITION_FALSE,
                    "output": None,
                    "completed_at": at,
                }
            case "step_skipped":
                step_changes = {"status": StepStatus.SKIPPED}
            case "step_pending":
                step_changes = {"status": StepStatus.PENDING}
                if data.get("retry"):
                    step_changes |= {"error": None, "caught_by": None}
            case "step_cancelled":
                step_changes = {"status": StepStatus.CANCELLED, "completed_at": at}
            case "output_overridden":
                step_changes = {
                    "status": StepStatus.COMPLETED,
                    "output": data.get("output"),
                    "error": None,
                    "caught_by": None,
                    "completed_at": at,
                }
            case "paused":
                state = replace(
                    state,
                    status=ExecutionStatus.PAUSED,
                    paused_at=at,
                    pause_reason=data.get("reason"),
                )
            case "resumed":
                state = replace(
                    state,
                    status=ExecutionStatus.RUNNING,
                    resumed_at=at,
                    pause_reason=None,
                    error=None,
                    completed_at=None,
                    deadline_at=data["deadline_at"],
                )
            case "cancelled":
                state = replace(state, status=ExecutionStatus.CANCELLED, cancelled_at=at)
            case "failed":
                error = msgspec.convert(data["error"], StepError)
                state = replace(state, status=ExecutionStatus.FAILED, error=error, completed_at=at)
            case "completed" | "compensated":
                state = replace(state, status=ExecutionStatus(event.type), completed_at=at)
            case "triggered" | "timed_out":
                pass
            case _:
                raise ValueError(f"unknown event type {event.type!r}")
        if step_changes is not None:
            assert sid is not None
            steps[sid] = replace(steps[sid], **step_changes)
    return replace(state, steps=steps, event_seq=state.event_seq + count)
