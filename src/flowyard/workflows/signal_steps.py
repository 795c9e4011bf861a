"""How ``decide`` runs wait_for_signal steps: wait (or take a kept signal), take a signal
sent to the execution or keep it, and fail a wait past its ``timeout_sec``. A part of the
transition's working copy (``_Draft`` in ``actors/execution.py``), kept apart so each step
kind stays in a module of its own."""

from typing import Any

from flowyard.errors import Conflict
from flowyard.workflows.draft import DraftPart
from flowyard.workflows.signals import (
    MAX_BUFFERED,
    SIGNAL_TIMEOUT,
    first_kept,
    oldest_waiting,
    without,
)
from flowyard.workflows.state import (
    LIVE,
    ArmSignalTimeout,
    BufferedSignal,
    ConsumeSignal,
    RecordSignal,
    SendSignal,
    SignalTimedOut,
    StepError,
    StepStatus,
)


class SignalSteps(DraftPart):
    """The wait_for_signal side of a transition's working copy."""

    def wait_for_signal(self, step_id: str) -> None:
        """The step waits for its signal, or takes the oldest one kept for its name."""
        wait = self.graph.steps[step_id].wait_for_signal
        assert wait is not None
        attempt = self.steps[step_id].attempt + 1
        self.set_step(
            step_id,
            status=StepStatus.WAITING,
            attempt=attempt,
            job_id=None,
            error=None,
            output=None,
            started_at=self.now,
            completed_at=None,
            signal=wait.name,
            signal_id=None,
        )
        data: dict[str, Any] = {"attempt": attempt, "signal": wait.name}
        timeout_at = None if wait.timeout_sec is None else self.now + wait.timeout_sec * 1000
        if timeout_at is not None:
            data["timeout_at"] = timeout_at
        self.event("step_waiting", step_id, data)
        kept = first_kept(self.state.signals, wait.name)
        if kept is not None:
            self.update(signals=without(self.state.signals, kept.id))
            self.effects.append(ConsumeSignal(kept.id, step_id))
            self.take_signal(step_id, kept.id, kept.data)
        elif timeout_at is not None:
            self.effects.append(ArmSignalTimeout(step_id, attempt, timeout_at))

    def take_signal(self, step_id: str, signal_id: str, data: Any) -> None:
        self.set_step(
            step_id,
            status=StepStatus.COMPLETED,
            output=data,
            error=None,
            completed_at=self.now,
            signal_id=signal_id,
        )
        self.event("step_completed", step_id, {"signal_id": signal_id, "output": data})

    def signal(self, message: SendSignal) -> None:
        if self.status not in LIVE:
            raise Conflict(f"cannot signal an execution that is {self.status}")
        target = oldest_waiting(self.steps, self.graph.order, message.name)
        if target is None and len(self.state.signals) >= MAX_BUFFERED:
            raise Conflict(
                f"the execution already keeps {MAX_BUFFERED} signals that no step has taken"
            )
        seq = self.state.signal_seq + 1
        self.update(signal_seq=seq)
        self.event(
            "signal_received",
            target,
            {
                "signal_id": message.signal_id,
                "name": message.name,
                "data": message.data,
                "consumed_by": target,
            },
        )
        self.effects.append(
            RecordSignal(
                message.signal_id,
                seq,
                message.name,
                message.data,
                message.idempotency_key,
                target,
            )
        )
        if target is None:
            kept = BufferedSignal(message.signal_id, seq, message.name, message.data)
            self.update(signals=[*self.state.signals, kept])
            return
        self.take_signal(target, message.signal_id, message.data)
        self.schedule()

    def signal_timed_out(self, message: SignalTimedOut) -> None:
        step = self.steps.get(message.step_id)
        if step is None or step.status is not StepStatus.WAITING or step.attempt != message.attempt:
            return  # it took a signal, was cancelled, overridden or waits again meanwhile
        wait = self.graph.steps[message.step_id].wait_for_signal
        seconds = wait.timeout_sec if wait is not None else None
        error = StepError(SIGNAL_TIMEOUT, f"no signal {step.signal!r} within {seconds} s")
        self.fail(message.step_id, error, None, step.attempt)
        self.schedule()
