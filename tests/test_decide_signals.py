"""Table tests of ``decide`` for wait_for_signal steps and signals (DESIGN §8).

Every transition is also replayed from the event log (``decide_support.Sim``).
"""

from typing import Any

import pytest

from flowyard.errors import Conflict
from flowyard.workflows.signals import MAX_BUFFERED
from flowyard.workflows.state import (
    ArmSignalTimeout,
    BufferedSignal,
    CancelExecution,
    ConsumeSignal,
    DeadlinePassed,
    ExecutionStatus,
    PauseExecution,
    RecordSignal,
    ResumeExecution,
    SendSignal,
    SignalTimedOut,
    Start,
    StepError,
    StepStatus,
)
from tests.decide_support import Sim, graph, kinds, queued, step, waits


def signal(sid: str, name: str = "go", data: Any = None, key: str | None = None) -> SendSignal:
    return SendSignal(sid, name, data, key)


def recorded(sid: str, seq: int, data: Any, taker: str | None, name: str = "go") -> RecordSignal:
    return RecordSignal(sid, seq, name, data, None, taker)


def approval() -> Sim:
    """``w`` waits for ``go`` (60 s at most), ``b`` uses its output; ``c`` keeps it running."""
    return Sim(
        graph(
            waits("w", timeout=60),
            step("b", "w", template={"by": "{{steps.w.output.by}}"}),
            step("c"),
        )
    )


def test_an_eligible_step_waits_and_arms_its_timeout() -> None:
    sim = approval()
    effects, events = sim.send(Start())
    assert kinds(events) == [("triggered", None), ("step_waiting", "w"), ("step_queued", "c")]
    assert events[1].data == {"attempt": 1, "signal": "go", "timeout_at": sim.now + 60_000}
    assert ArmSignalTimeout("w", 1, sim.now + 60_000) in effects
    w = sim.step("w")
    assert (w.status, w.attempt, w.started_at, w.signal) == (StepStatus.WAITING, 1, sim.now, "go")
    sim.finish("c")
    assert sim.status is ExecutionStatus.RUNNING  # a waiting step keeps it from settling


def test_a_signal_completes_the_waiting_step_and_schedules_its_dependents() -> None:
    sim = approval()
    sim.send(Start())
    effects, events = sim.send(signal("sig_1", data={"by": "ann"}))
    assert kinds(events) == [
        ("signal_received", "w"),
        ("step_completed", "w"),
        ("step_queued", "b"),
    ]
    assert events[0].data == {
        "signal_id": "sig_1",
        "name": "go",
        "data": {"by": "ann"},
        "consumed_by": "w",
    }
    assert events[1].data == {"signal_id": "sig_1", "output": {"by": "ann"}}
    assert effects == [recorded("sig_1", 1, {"by": "ann"}, "w"), queued("b", 1, {"by": "ann"})]
    w = sim.step("w")
    assert (w.status, w.output, w.signal_id) == (StepStatus.COMPLETED, {"by": "ann"}, "sig_1")


def test_a_signal_nobody_waits_for_is_kept_and_taken_by_the_next_waiter_in_order() -> None:
    sim = Sim(graph(step("a"), waits("w", "a"), waits("v", "w")))
    sim.send(Start())
    effects, events = sim.send(signal("sig_1", data=1))
    assert effects == [recorded("sig_1", 1, 1, None)]
    assert kinds(events) == [("signal_received", None)]
    sim.send(signal("sig_2", data=2))
    sim.send(signal("sig_3", name="other", data=3))
    assert [s.id for s in sim.state.signals] == ["sig_1", "sig_2", "sig_3"]
    effects, events = sim.finish("a")
    assert kinds(events) == [
        ("step_completed", "a"),
        ("step_waiting", "w"),
        ("step_completed", "w"),
        ("step_waiting", "v"),
        ("step_completed", "v"),
        ("completed", None),
    ]
    assert effects == [ConsumeSignal("sig_1", "w"), ConsumeSignal("sig_2", "v")]
    assert (sim.step("w").output, sim.step("v").output) == (1, 2)
    assert sim.step("v").signal_id == "sig_2"
    assert sim.state.signals == [BufferedSignal("sig_3", 3, "other", 3)]
    assert sim.status is ExecutionStatus.COMPLETED


def test_the_oldest_waiting_step_of_the_name_takes_the_signal_ties_in_blueprint_order() -> None:
    sim = Sim(graph(step("a"), waits("late", "a"), waits("x"), waits("y"), waits("z", name="no")))
    sim.send(Start())
    sim.finish("a")  # late waits since after x and y
    sim.send(signal("s1"))
    assert sim.status_of("x") is StepStatus.COMPLETED
    sim.send(signal("s2"))
    assert sim.status_of("y") is StepStatus.COMPLETED
    sim.send(signal("s3"))
    assert sim.status_of("late") is StepStatus.COMPLETED
    assert sim.status_of("z") is StepStatus.WAITING


def test_a_paused_execution_takes_the_signal_and_its_dependents_wait_for_resume() -> None:
    sim = approval()
    sim.send(Start())
    sim.send(PauseExecution())
    _, events = sim.send(signal("sig_1", data={"by": "bo"}))
    assert kinds(events) == [("signal_received", "w"), ("step_completed", "w")]
    assert sim.status_of("b") is StepStatus.PENDING
    sim.send(ResumeExecution())
    assert sim.status_of("b") is StepStatus.QUEUED


@pytest.mark.parametrize("ending", ["completed", "failed", "compensated", "cancelled"])
def test_a_signal_to_an_ended_execution_is_refused(ending: str) -> None:
    sim = Sim(graph(waits("w", catch="k"), step("k")))
    sim.send(Start())
    match ending:
        case "completed":
            sim.send(signal("s0"))
        case "failed":
            sim.send(DeadlinePassed(sim.state.deadline_at))
        case "compensated":
            sim.send(SignalTimedOut("w", 1))
            sim.finish("k")
        case "cancelled":
            sim.send(CancelExecution())
    assert sim.status == ending
    before = sim.state
    with pytest.raises(Conflict):
        sim.send(signal("s1"))
    assert sim.state is before


def test_kept_signals_are_bounded() -> None:
    sim = Sim(graph(step("a")), check_replay=False)
    sim.send(Start())
    for n in range(MAX_BUFFERED):
        sim.send(signal(f"s{n}", data=n))
    with pytest.raises(Conflict, match="1000"):
        sim.send(signal("one_more"))
    assert len(sim.state.signals) == MAX_BUFFERED and sim.state.signal_seq == MAX_BUFFERED
    sim.assert_replays()


def test_the_timeout_fails_the_step_with_signal_timeout_and_its_catch_runs() -> None:
    sim = Sim(graph(waits("w", timeout=5, catch="k"), step("k", template="{{failure.code}}")))
    sim.send(Start())
    effects, events = sim.send(SignalTimedOut("w", 1))
    assert kinds(events) == [("step_failed", "w"), ("caught", "w"), ("step_queued", "k")]
    assert sim.step("w").error == StepError("signal_timeout", "no signal 'go' within 5 s")
    assert effects == [queued("k", 1, "signal_timeout")]


@pytest.mark.parametrize("meanwhile", ["signalled", "cancelled", "overridden", "waits_again"])
def test_a_stale_timeout_changes_nothing(meanwhile: str) -> None:
    sim = approval()
    sim.send(Start())
    match meanwhile:
        case "signalled":
            sim.send(signal("s1", data={"by": "x"}))
        case "cancelled":
            sim.send(CancelExecution())
        case "overridden":
            sim.send(ResumeExecution(step_id="w", override=True, output={"by": "op"}))
        case "waits_again":
            sim.send(CancelExecution())
            sim.send(ResumeExecution(step_id="w"))
            assert sim.step("w").status is StepStatus.WAITING and sim.step("w").attempt == 2
    before = sim.state
    assert sim.send(SignalTimedOut("w", 1)) == ([], [])
    assert sim.state == before


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_cancel_and_deadline_cancel_a_waiting_step_and_resume_makes_it_wait_again(
    how: str,
) -> None:
    sim = approval()
    sim.send(Start())
    if how == "cancel":
        sim.send(CancelExecution())
    else:
        sim.send(DeadlinePassed(sim.state.deadline_at))
    assert sim.status_of("w") is StepStatus.CANCELLED
    effects, events = sim.send(ResumeExecution())
    assert ("step_waiting", "w") in kinds(events)
    assert sim.status_of("w") is StepStatus.WAITING and sim.step("w").attempt == 2
    assert ArmSignalTimeout("w", 2, sim.now + 60_000) in effects


def test_override_completes_a_waiting_step() -> None:
    sim = approval()
    sim.send(Start())
    effects, events = sim.send(ResumeExecution(step_id="w", override=True, output={"by": "op"}))
    assert ("output_overridden", "w") in kinds(events)
    assert sim.status_of("w") is StepStatus.COMPLETED
    assert effects[-1] == queued("b", 1, {"by": "op"})


def test_a_failed_execution_keeps_its_kept_signals_for_after_a_resume() -> None:
    sim = Sim(graph(step("a"), waits("w", "a")))
    sim.send(Start())
    sim.send(signal("s1", data="early"))
    sim.finish("a", "failed", error="boom")
    assert sim.status is ExecutionStatus.FAILED
    sim.send(ResumeExecution(step_id="a"))
    sim.finish("a")
    assert sim.step("w").output == "early" and sim.status is ExecutionStatus.COMPLETED
