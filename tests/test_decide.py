"""Table-driven tests of the pure execution state machine ``decide`` (DESIGN §4).

Every transition is also replayed from the event log (see ``decide_support.Sim``).
"""

from typing import Any

import msgspec
import pytest

from flowyard.errors import Conflict, Invalid
from flowyard.workflows.state import (
    ArmDeadline,
    CancelExecution,
    DeadlinePassed,
    ExecutionStatus,
    JobFinished,
    JobStarted,
    PauseExecution,
    QueueJob,
    ResumeExecution,
    Start,
    StepError,
    StepStatus,
    WithdrawJob,
)
from tests.decide_support import MAX_MS, Sim, graph, kinds, queued, step

FAILURE_TEMPLATE = {
    "step": "{{failure.step_id}}",
    "code": "{{failure.code}}",
    "error": "{{failure.error}}",
    "job": "{{failure.job_id}}",
    "attempt": "{{failure.attempt}}",
    "text": "{{failure.step_id}} failed: {{failure.error}}",
}


def chain() -> Sim:
    """``a -> b`` plus an independent root ``c`` (kept running so nothing settles)."""
    return Sim(
        graph(
            step("a", template={"order": "{{input.order_id}}"}),
            step("b", "a", template={"charge": "{{steps.a.output.charge_id}}"}),
            step("c"),
        ),
        input_data={"order_id": "o-1"},
    )


def reach(sim: Sim, status: str) -> None:
    """Move a started execution with ``c`` running into ``status``."""
    match status:
        case "running":
            pass
        case "paused":
            sim.send(PauseExecution())
        case "failed":
            sim.send(DeadlinePassed(sim.state.deadline_at))
        case "cancelled":
            sim.send(CancelExecution())
        case _:
            raise AssertionError(status)
    assert sim.status == status


def finished(status: str) -> Sim:
    """A single-step execution that ended ``completed`` or ``compensated``."""
    sim = Sim(graph(step("a", catch="k"), step("k")))
    sim.send(Start())
    if status == "compensated":
        sim.finish("a", "failed", error="boom")
    sim.finish("k" if status == "compensated" else "a", output={"ok": True})
    assert sim.status == status
    return sim


def failed_uncaught() -> Sim:
    """``a -> b``: a failed without a catch, the execution failed, b pending."""
    sim = Sim(graph(step("a"), step("b", "a")))
    sim.send(Start())
    sim.finish("a", "failed", error="boom")
    assert sim.status is ExecutionStatus.FAILED
    return sim


# ----------------------------------------------------------------------------- Start


def test_start_queues_every_root_that_is_not_a_catch_step() -> None:
    sim = Sim(
        graph(
            step("a", catch="k", template={"order": "{{input.order_id}}", "n": "{{input.n}}"}),
            step("b", "a"),
            step("c", template="exec {{execution.id}} of {{execution.blueprint_id}}"),
            step("k"),
            step("r", "k"),
        ),
        input_data={"order_id": "o-1", "n": [1, 2]},
    )
    effects, events = sim.send(Start())
    assert effects == [
        ArmDeadline(sim.start.deadline_at),
        queued("a", 1, {"order": "o-1", "n": [1, 2]}),
        queued("c", 1, "exec wfexec_1 of wf_1"),
    ]
    assert kinds(events) == [("triggered", None), ("step_queued", "a"), ("step_queued", "c")]
    assert [e.data for e in events[1:]] == [
        {"attempt": 1, "job_id": "job_a_1"},
        {"attempt": 1, "job_id": "job_c_1"},
    ]
    assert sim.statuses() == {
        "a": "queued",
        "b": "pending",
        "c": "queued",
        "k": "pending",
        "r": "pending",
    }
    assert sim.step("a").attempt == 1 and sim.step("a").job_id == "job_a_1"
    assert sim.status is ExecutionStatus.RUNNING


# ----------------------------------------------------------------------------- JobStarted


@pytest.mark.parametrize("status", ["running", "paused"])
def test_job_started_moves_a_queued_step_to_running(status: str) -> None:
    sim = chain()
    sim.send(Start())
    reach(sim, status)
    effects, events = sim.started("a")
    assert effects == []
    assert kinds(events) == [("step_started", "a")]
    assert events[0].data == {"job_id": "job_a_1"}
    assert sim.step("a").status is StepStatus.RUNNING
    assert sim.step("a").started_at == sim.now
    assert sim.status == status


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("queued", JobStarted("a", 2, "job_a_2")),  # a future attempt
        ("queued", JobStarted("a", 0, "job_a_0")),  # an old attempt
        ("running", JobStarted("a", 1, "job_a_1")),  # delivered twice
        ("queued", JobStarted("b", 1, "job_b_1")),  # b is pending
        ("queued", JobStarted("nope", 1, "job_nope_1")),  # no such step
        ("completed", JobStarted("a", 1, "job_a_1")),  # late after the result
    ],
)
def test_job_started_is_ignored_unless_current_and_queued(setup: str, message: Any) -> None:
    sim = chain()
    sim.send(Start())
    if setup == "running":
        sim.started("a")
    elif setup == "completed":
        sim.finish("a", output={"charge_id": "ch"})
    before = sim.state
    effects, events = sim.send(message)
    assert (effects, events) == ([], [])
    assert sim.state == before


# ----------------------------------------------------------------------------- JobFinished

FINISH_CASES = [
    (exec_status, step_status, outcome)
    for exec_status, step_status in [
        ("running", "queued"),
        ("running", "running"),
        ("paused", "queued"),
        ("paused", "running"),
        ("failed", "running"),
        ("cancelled", "running"),
    ]
    for outcome in ["completed", "failed", "cancelled"]
]


@pytest.mark.parametrize(("exec_status", "step_status", "outcome"), FINISH_CASES)
def test_job_finished_records_the_result_and_only_running_schedules(
    exec_status: str, step_status: str, outcome: str
) -> None:
    sim = chain()
    sim.send(Start())
    sim.started("c")
    if step_status == "running":
        sim.started("a")
    reach(sim, exec_status)
    error = None if outcome == "completed" else "card declined"
    effects, events = sim.finish("a", outcome, {"charge_id": "ch_1"}, error)
    a = sim.step("a")
    if outcome == "completed":
        assert a.status is StepStatus.COMPLETED
        assert a.output == {"charge_id": "ch_1"} and a.error is None
    else:
        assert a.status is StepStatus.FAILED
        code = "job_failed" if outcome == "failed" else "job_cancelled"
        assert a.error == StepError(code, "card declined")
        assert a.caught_by is None
    assert a.completed_at == sim.now
    scheduled = exec_status == "running" and outcome == "completed"
    if scheduled:
        assert effects == [queued("b", 1, {"charge": "ch_1"})]
        assert kinds(events) == [("step_completed", "a"), ("step_queued", "b")]
        assert sim.status_of("b") is StepStatus.QUEUED
    else:
        assert effects == []
        first = "step_completed" if outcome == "completed" else "step_failed"
        assert kinds(events) == [(first, "a")]
        assert sim.status_of("b") is StepStatus.PENDING
    assert sim.status == exec_status  # c still runs: nothing settles
    assert sim.status_of("c") is StepStatus.RUNNING


def test_job_finished_events_carry_job_and_attempt() -> None:
    sim = chain()
    sim.send(Start())
    sim.started("c")
    _, done = sim.finish("a", output={"charge_id": "x"})
    assert done[0].data == {"job_id": "job_a_1", "output": {"charge_id": "x"}}
    sim.send(JobFinished("b", 1, "job_b_1", "failed", None, "nope", attempts=3))
    failed = sim.log[-1]
    assert (failed.type, failed.step_id) == ("step_failed", "b")
    assert failed.data == {
        "error": {"code": "job_failed", "message": "nope"},
        "job_id": "job_b_1",
        "attempt": 3,
    }


def test_a_failed_job_without_error_text_uses_the_code_as_message() -> None:
    sim = chain()
    sim.send(Start())
    sim.finish("a", "cancelled")
    assert sim.step("a").error == StepError("job_cancelled", "job_cancelled")


def test_paused_execution_holds_dependents_until_resume() -> None:
    sim = chain()
    sim.send(Start())
    sim.send(PauseExecution())
    sim.finish("a", output={"charge_id": "ch"})
    sim.finish("c")
    assert sim.status is ExecutionStatus.PAUSED  # paused executions do not settle
    assert sim.status_of("b") is StepStatus.PENDING
    effects, _ = sim.send(ResumeExecution())
    assert queued("b", 1, {"charge": "ch"}) in effects
    sim.finish("b")
    assert sim.status is ExecutionStatus.COMPLETED


STALE = [
    "old attempt after retry",
    "future attempt",
    "duplicate after completed",
    "step pending",
    "withdrawn by cancel",
    "withdrawn by override",
    "unknown step",
]


@pytest.mark.parametrize("case", STALE)
@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
def test_stale_job_finished_changes_nothing(case: str, outcome: str) -> None:
    sim = chain()
    sim.send(Start())
    sim.started("c")
    message = JobFinished("a", 1, "job_a_1", outcome, {"late": True}, "late")
    match case:
        case "old attempt after retry":
            sim.finish("a", "failed", error="boom")
            sim.send(ResumeExecution(step_id="a"))
            assert sim.step("a").attempt == 2
        case "future attempt":
            message = JobFinished("a", 2, "job_a_2", outcome, {"late": True}, "late")
        case "duplicate after completed":
            sim.finish("a", output={"charge_id": "ch"})
        case "step pending":
            message = JobFinished("b", 1, "job_b_1", outcome, {"late": True}, "late")
        case "withdrawn by cancel":
            sim.send(CancelExecution())
        case "withdrawn by override":
            sim.send(ResumeExecution(step_id="a", override=True, output={"charge_id": "o"}))
        case "unknown step":
            message = JobFinished("zz", 1, "job_zz_1", outcome, None, None)
    before = sim.state
    effects, events = sim.send(message)
    assert (effects, events) == ([], [])
    assert sim.state == before


# ----------------------------------------------------------------------------- catch


def catching() -> Sim:
    """``a -> b -> c`` with ``a`` caught by ``k`` (``k -> r``), and an independent ``x``."""
    return Sim(
        graph(
            step("a", catch="k"),
            step("b", "a"),
            step("c", "b"),
            step("x"),
            step("k", template=FAILURE_TEMPLATE),
            step("r", "k", template={"k": "{{steps.k.output}}", "f": "{{failure.code}}"}),
        )
    )


def test_a_caught_failure_skips_descendants_and_queues_the_catch_step() -> None:
    sim = catching()
    sim.send(Start())
    sim.started("x")
    effects, events = sim.finish("a", "failed", error="declined")
    assert kinds(events) == [
        ("step_failed", "a"),
        ("caught", "a"),
        ("step_skipped", "b"),
        ("step_skipped", "c"),
        ("step_queued", "k"),
    ]
    failure = {
        "step_id": "a",
        "code": "job_failed",
        "error": "declined",
        "job_id": "job_a_1",
        "attempt": 1,
    }
    assert events[1].data == {"catch": "k", "failure": failure}
    assert effects == [
        queued(
            "k",
            1,
            {
                "step": "a",
                "code": "job_failed",
                "error": "declined",
                "job": "job_a_1",
                "attempt": 1,
                "text": "a failed: declined",
            },
        )
    ]
    assert sim.step("a").caught_by == "k"
    assert sim.statuses() == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "x": "running",
        "k": "queued",
        "r": "pending",
    }
    # the catch branch runs on with the failure bound
    effects, _ = sim.finish("k", output={"refund": 1})
    assert effects == [queued("r", 1, {"k": {"refund": 1}, "f": "job_failed"})]
    sim.finish("r")
    assert sim.status is ExecutionStatus.RUNNING  # x still runs
    _, events = sim.finish("x")
    assert kinds(events) == [("step_completed", "x"), ("compensated", None)]
    assert sim.status is ExecutionStatus.COMPENSATED
    assert sim.state.completed_at == sim.now
    assert sim.state.error is None


def test_a_catch_step_named_by_several_steps_runs_once() -> None:
    sim = Sim(
        graph(
            step("a", catch="k"),
            step("b", catch="k"),
            step("c", catch="k"),
            step("x"),
            step("k", template=FAILURE_TEMPLATE),
        )
    )
    sim.send(Start())
    sim.started("x")
    sim.finish("a", "failed", error="first")
    _, events = sim.finish("b", "cancelled", error="second")
    assert kinds(events) == [("step_failed", "b"), ("caught", "b")]  # k is not queued again
    assert sim.step("b").caught_by == "k"
    sim.finish("k", output={})
    _, events = sim.finish("c", "failed", error="third")  # after k completed
    assert kinds(events) == [("step_failed", "c"), ("caught", "c")]
    assert sim.step("c").caught_by == "k"
    assert sim.step("k").attempt == 1
    failure = sim.step("k").failure
    assert failure is not None and failure.step_id == "a"
    sim.finish("x")
    assert sim.status is ExecutionStatus.COMPENSATED


def test_a_failure_inside_a_catch_branch_uses_its_own_catch() -> None:
    sim = Sim(
        graph(
            step("a", catch="k"),
            step("k", catch="k2"),
            step("r", "k"),
            step("k2", template={"from": "{{failure.step_id}}"}),
        )
    )
    sim.send(Start())
    sim.finish("a", "failed", error="boom")
    effects, events = sim.finish("k", "failed", error="compensation broke")
    assert kinds(events) == [
        ("step_failed", "k"),
        ("caught", "k"),
        ("step_skipped", "r"),
        ("step_queued", "k2"),
    ]
    assert effects == [queued("k2", 1, {"from": "k"})]
    sim.finish("k2")
    assert sim.status is ExecutionStatus.COMPENSATED
    assert sim.step("k").caught_by == "k2"


def test_an_uncaught_failure_inside_a_catch_branch_fails_the_execution() -> None:
    sim = Sim(graph(step("a", catch="k"), step("k"), step("r", "k")))
    sim.send(Start())
    sim.finish("a", "failed", error="boom")
    _, events = sim.finish("k", "failed", error="worse")
    assert kinds(events) == [("step_failed", "k"), ("failed", None)]
    assert sim.status is ExecutionStatus.FAILED
    assert sim.state.error == StepError("job_failed", "worse")
    assert sim.statuses() == {"a": "failed", "k": "failed", "r": "pending"}


def test_a_failure_while_paused_is_caught_and_its_catch_waits_for_resume() -> None:
    sim = catching()
    sim.send(Start())
    sim.started("a")
    sim.send(PauseExecution())
    effects, events = sim.finish("a", "failed", error="boom")
    assert effects == []
    assert kinds(events) == [
        ("step_failed", "a"),
        ("caught", "a"),
        ("step_skipped", "b"),
        ("step_skipped", "c"),
    ]
    assert sim.status_of("k") is StepStatus.PENDING
    effects, _ = sim.send(ResumeExecution())
    assert [e.step_id for e in effects if isinstance(e, QueueJob)] == ["a", "k"]


# ----------------------------------------------------------------------------- templates


def test_a_template_that_does_not_resolve_fails_the_step() -> None:
    sim = Sim(graph(step("a"), step("b", "a", template={"v": "{{steps.a.output.missing}}"})))
    sim.send(Start())
    effects, events = sim.finish("a", output={"present": 1})
    assert effects == []
    assert kinds(events) == [("step_completed", "a"), ("step_failed", "b"), ("failed", None)]
    b = sim.step("b")
    assert b.status is StepStatus.FAILED and b.attempt == 0
    assert b.error is not None and b.error.code == "template_error"
    assert "steps.a.output.missing" in b.error.message
    assert events[1].data["job_id"] is None
    assert sim.status is ExecutionStatus.FAILED
    assert sim.state.error == b.error


@pytest.mark.parametrize(
    ("template", "output"),
    [
        ("{{steps.a.output.items[3]}}", {"items": [1]}),
        ("id {{steps.a.output.x.y}}", {"x": 5}),
        ("{{steps.a.output[0]}}", {"not": "a list"}),
    ],
)
def test_template_errors_are_caught_like_job_failures(template: str, output: Any) -> None:
    sim = Sim(
        graph(
            step("a"),
            step("b", "a", catch="k", template=template),
            step("c", "b"),
            step("k", template=FAILURE_TEMPLATE),
        )
    )
    sim.send(Start())
    effects, events = sim.finish("a", output=output)
    assert kinds(events) == [
        ("step_completed", "a"),
        ("step_failed", "b"),
        ("caught", "b"),
        ("step_skipped", "c"),
        ("step_queued", "k"),
    ]
    assert isinstance(effects[0], QueueJob)
    payload = msgspec.json.decode(effects[0].payload)
    assert (payload["step"], payload["code"], payload["job"], payload["attempt"]) == (
        "b",
        "template_error",
        None,
        1,
    )
    sim.finish("k")
    assert sim.status is ExecutionStatus.COMPENSATED


# ----------------------------------------------------------------------------- quiescence


def test_completed_when_every_step_outside_catch_branches_completed() -> None:
    sim = catching()
    sim.send(Start())
    sim.finish("a")
    sim.finish("x")
    sim.finish("b")
    _, events = sim.finish("c")
    assert kinds(events) == [
        ("step_completed", "c"),
        ("step_skipped", "k"),
        ("step_skipped", "r"),
        ("completed", None),
    ]
    assert sim.status is ExecutionStatus.COMPLETED
    assert sim.state.completed_at == sim.now


def test_an_uncaught_failure_lets_independent_branches_finish_then_fails() -> None:
    sim = Sim(
        graph(step("a"), step("b", "a"), step("x"), step("y", "x"), step("k"), step("z", catch="k"))
    )
    sim.send(Start())
    _, events = sim.finish("a", "failed", error="boom")
    assert kinds(events) == [("step_failed", "a")]
    assert sim.status is ExecutionStatus.RUNNING
    sim.finish("x")
    sim.finish("z")
    _, events = sim.finish("y")
    assert kinds(events) == [("step_completed", "y"), ("failed", None)]
    assert sim.status is ExecutionStatus.FAILED
    assert sim.state.error == StepError("job_failed", "boom")
    assert sim.status_of("b") is StepStatus.PENDING  # left for a resume
    assert sim.status_of("k") is StepStatus.PENDING  # not skipped: a resume may continue


def test_an_uncaught_failure_wins_over_a_caught_one() -> None:
    sim = Sim(graph(step("a", catch="k"), step("b"), step("k")))
    sim.send(Start())
    sim.finish("a", "failed")
    sim.finish("k")
    sim.finish("b", "failed", error="uncaught")
    assert sim.status is ExecutionStatus.FAILED
    assert sim.state.error == StepError("job_failed", "uncaught")


# ----------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("status", ["running", "paused", "failed"])
def test_cancel_withdraws_queued_jobs_and_keeps_the_rest(status: str) -> None:
    sim = Sim(graph(step("q"), step("r"), step("p", "r"), step("z")))
    sim.send(Start())
    sim.started("r")
    if status == "failed":
        sim.started("q")  # the deadline would withdraw it otherwise
        sim.send(DeadlinePassed(sim.state.deadline_at))
    elif status == "paused":
        sim.send(PauseExecution())
    effects, events = sim.send(CancelExecution())
    assert sim.status is ExecutionStatus.CANCELLED
    assert sim.state.cancelled_at == sim.now
    assert sim.status_of("r") is StepStatus.RUNNING
    assert sim.status_of("p") is StepStatus.PENDING
    if status == "failed":
        assert effects == []
        assert kinds(events) == [("cancelled", None)]
    else:
        assert effects == [WithdrawJob("q", "job_q_1"), WithdrawJob("z", "job_z_1")]
        assert kinds(events) == [
            ("step_cancelled", "q"),
            ("step_cancelled", "z"),
            ("cancelled", None),
        ]
        assert sim.status_of("q") is StepStatus.CANCELLED
    # a running job still finishes and is recorded, but nothing is scheduled
    effects, events = sim.finish("r", output=1)
    assert effects == [] and kinds(events) == [("step_completed", "r")]
    assert sim.status_of("p") is StepStatus.PENDING
    assert sim.status is ExecutionStatus.CANCELLED


@pytest.mark.parametrize("status", ["completed", "compensated", "cancelled"])
def test_cancel_is_a_conflict_once_finished_or_cancelled(status: str) -> None:
    if status == "cancelled":
        sim = chain()
        sim.send(Start())
        sim.send(CancelExecution())
    else:
        sim = finished(status)
    before = sim.state
    with pytest.raises(Conflict):
        sim.send(CancelExecution())
    assert sim.state == before


def test_cancel_a_failed_execution_that_is_quiescent() -> None:
    sim = failed_uncaught()
    effects, events = sim.send(CancelExecution())
    assert effects == [] and kinds(events) == [("cancelled", None)]
    assert sim.status is ExecutionStatus.CANCELLED


# ----------------------------------------------------------------------------- pause


def test_pause_a_running_execution() -> None:
    sim = chain()
    sim.send(Start())
    effects, events = sim.send(PauseExecution())
    assert effects == [] and kinds(events) == [("paused", None)]
    assert sim.status is ExecutionStatus.PAUSED and sim.state.paused_at == sim.now
    assert sim.status_of("a") is StepStatus.QUEUED  # queued jobs stay claimable
    sim.started("a")
    assert sim.status_of("a") is StepStatus.RUNNING


@pytest.mark.parametrize("status", ["paused", "failed", "cancelled", "completed", "compensated"])
def test_pause_is_a_conflict_unless_running(status: str) -> None:
    if status in ("completed", "compensated"):
        sim = finished(status)
    elif status == "failed":
        sim = failed_uncaught()
    else:
        sim = chain()
        sim.send(Start())
        reach(sim, status)
    before = sim.state
    with pytest.raises(Conflict):
        sim.send(PauseExecution())
    assert sim.state == before


# ----------------------------------------------------------------------------- resume


def resumable(status: str) -> Sim:
    """``a -> b``, ``c``, ``d`` with a failed, c cancelled-or-running, d running."""
    sim = Sim(graph(step("a"), step("b", "a"), step("c"), step("d"), step("e", "c")))
    sim.send(Start())
    sim.started("d")
    sim.finish("a", "failed", error="boom")
    reach(sim, status)
    return sim


def assert_resumed(sim: Sim, effects: list[Any], events: list[Any], reason: str | None) -> None:
    deadline = sim.now + MAX_MS
    assert sim.status is ExecutionStatus.RUNNING
    assert sim.state.deadline_at == deadline
    assert sim.state.resumed_at == sim.now
    assert sim.state.error is None and sim.state.completed_at is None
    assert ArmDeadline(deadline) in effects
    resumed = [e for e in events if e.type == "resumed"]
    assert len(resumed) == 1
    assert resumed[0].data == {"reason": reason, "deadline_at": deadline}


OVERRIDABLE = [
    (exec_status, step_status)
    for exec_status in ["running", "paused", "failed", "cancelled"]
    for step_status in ["failed", "cancelled", "queued", "running"]
    # cancel and the deadline withdraw every queued job; nothing else cancels a step
    if (step_status == "queued") == (exec_status in ("running", "paused"))
    or step_status in ("failed", "running")
]


@pytest.mark.parametrize(("exec_status", "step_status"), OVERRIDABLE)
def test_override_completes_the_step_and_schedules_its_dependents(
    exec_status: str, step_status: str
) -> None:
    sim = Sim(graph(step("a"), step("b", "a", template="{{steps.a.output.v}}"), step("x")))
    sim.send(Start())
    sim.started("x")
    if step_status in ("failed", "running"):
        sim.started("a")
    if step_status == "failed":
        sim.finish("a", "failed", error="boom")
    reach(sim, exec_status)
    assert sim.status_of("a") == step_status
    effects, events = sim.send(
        ResumeExecution(step_id="a", override=True, output={"v": 7}, reason="manual")
    )
    a = sim.step("a")
    assert (a.status, a.output, a.error, a.caught_by) == (
        StepStatus.COMPLETED,
        {"v": 7},
        None,
        None,
    )
    withdraws = [e for e in effects if isinstance(e, WithdrawJob)]
    if step_status in ("queued", "running"):
        assert withdraws == [WithdrawJob("a", "job_a_1")]
    else:
        assert withdraws == []
    assert queued("b", 1, 7) in effects
    assert sim.status_of("b") is StepStatus.QUEUED
    assert kinds(events)[0] == ("output_overridden", "a")
    assert events[0].data == {"output": {"v": 7}, "reason": "manual"}
    assert ("resumed", "a") in kinds(events)
    assert_resumed(sim, effects, events, "manual")
    # the withdrawn job's late result is stale
    before = sim.state
    assert sim.finish("a", "failed", attempt=1) == ([], [])
    assert sim.state == before


@pytest.mark.parametrize("step_status", ["pending", "completed", "skipped"])
def test_override_is_a_conflict_for_other_step_statuses(step_status: str) -> None:
    sim = Sim(graph(step("a", catch="k"), step("b", "a"), step("c"), step("d"), step("k")))
    sim.send(Start())
    sim.started("d")
    if step_status != "pending":
        sim.finish("a", "failed")  # b skipped
        sim.finish("c")
    target = {"pending": "b", "completed": "c", "skipped": "b"}[step_status]
    assert sim.status_of(target) == step_status
    before = sim.state
    with pytest.raises(Conflict):
        sim.send(ResumeExecution(step_id=target, override=True, output=1))
    assert sim.state == before


@pytest.mark.parametrize("exec_status", ["running", "paused", "failed", "cancelled"])
def test_retry_a_failed_step_gets_a_new_attempt(exec_status: str) -> None:
    sim = resumable(exec_status)
    effects, events = sim.send(ResumeExecution(step_id="a", reason="try again"))
    assert queued("a", 2, None) in effects
    a = sim.step("a")
    assert (a.status, a.attempt, a.job_id, a.error) == (StepStatus.QUEUED, 2, "job_a_2", None)
    assert ("step_pending", "a") in kinds(events)
    assert ("resumed", "a") in kinds(events)
    assert_resumed(sim, effects, events, "try again")
    sim.finish("a")
    assert sim.status_of("b") is StepStatus.QUEUED


def test_retry_a_caught_step_puts_its_skipped_descendants_back_to_pending() -> None:
    sim = catching()
    sim.send(Start())
    sim.started("x")
    sim.finish("a", "failed")
    sim.finish("k")
    effects, events = sim.send(ResumeExecution(step_id="a"))
    assert kinds(events) == [
        ("step_pending", "a"),
        ("step_pending", "b"),
        ("step_pending", "c"),
        ("resumed", "a"),
        ("step_queued", "a"),
    ]
    assert sim.step("a").caught_by is None
    assert [e for e in effects if isinstance(e, QueueJob)] == [queued("a", 2, None)]
    sim.finish("a")
    sim.finish("b")
    sim.finish("c")
    sim.finish("x")
    sim.finish("r")
    assert sim.status is ExecutionStatus.COMPLETED  # no failure is left


@pytest.mark.parametrize("exec_status", ["failed", "cancelled"])
def test_retry_a_cancelled_step(exec_status: str) -> None:
    sim = Sim(graph(step("a"), step("b", "a"), step("x")))
    sim.send(Start())
    sim.started("x")
    reach(sim, exec_status)
    assert sim.status_of("a") is StepStatus.CANCELLED
    effects, _ = sim.send(ResumeExecution(step_id="a"))
    assert queued("a", 2, None) in effects
    assert sim.status_of("a") is StepStatus.QUEUED


@pytest.mark.parametrize("step_status", ["queued", "running", "pending", "completed", "skipped"])
def test_retry_is_a_conflict_for_other_step_statuses(step_status: str) -> None:
    sim = Sim(graph(step("a", catch="k"), step("b", "a"), step("c"), step("d"), step("k")))
    sim.send(Start())
    sim.started("d")
    target = {"queued": "c", "running": "d", "pending": "k"}.get(step_status)
    if step_status in ("completed", "skipped"):
        sim.finish("a", "failed")
        sim.finish("c")
        target = "c" if step_status == "completed" else "b"
    assert target is not None and sim.status_of(target) == step_status
    before = sim.state
    with pytest.raises(Conflict):
        sim.send(ResumeExecution(step_id=target))
    assert sim.state == before


def test_resume_without_step_continues_a_paused_execution() -> None:
    sim = chain()
    sim.send(Start())
    sim.send(PauseExecution())
    sim.finish("a", output={"charge_id": "z"})
    effects, events = sim.send(ResumeExecution(reason="go"))
    assert kinds(events) == [("resumed", None), ("step_queued", "b")]
    assert queued("b", 1, {"charge": "z"}) in effects
    assert_resumed(sim, effects, events, "go")


def test_resume_without_step_requeues_failed_steps() -> None:
    sim = Sim(graph(step("a"), step("b", "a"), step("c")))
    sim.send(Start())
    sim.finish("a", "failed")
    sim.finish("c", "failed")
    assert sim.status is ExecutionStatus.FAILED
    effects, events = sim.send(ResumeExecution(reason=None))
    assert [e for e in effects if isinstance(e, QueueJob)] == [
        queued("a", 2, None),
        queued("c", 2, None),
    ]
    assert kinds(events) == [
        ("step_pending", "a"),
        ("step_pending", "c"),
        ("resumed", None),
        ("step_queued", "a"),
        ("step_queued", "c"),
    ]
    assert_resumed(sim, effects, events, None)
    sim.finish("a")
    sim.finish("c")
    sim.finish("b")
    assert sim.status is ExecutionStatus.COMPLETED


@pytest.mark.parametrize("exec_status", ["failed", "cancelled"])
def test_resume_without_step_requeues_cancelled_and_ready_pending_steps(
    exec_status: str,
) -> None:
    sim = Sim(graph(step("a"), step("b", "a"), step("c"), step("d", "c")))
    sim.send(Start())
    sim.started("c")
    reach(sim, exec_status)  # a queued -> cancelled; c keeps running
    sim.finish("c")  # recorded; d is not scheduled
    assert sim.statuses() == {"a": "cancelled", "b": "pending", "c": "completed", "d": "pending"}
    effects, _ = sim.send(ResumeExecution())
    assert [e for e in effects if isinstance(e, QueueJob)] == [
        queued("a", 2, None),
        queued("d", 1, None),
    ]
    sim.finish("a")
    sim.finish("b")
    sim.finish("d")
    assert sim.status is ExecutionStatus.COMPLETED


def test_resume_without_step_on_running_is_a_conflict() -> None:
    sim = chain()
    sim.send(Start())
    before = sim.state
    with pytest.raises(Conflict):
        sim.send(ResumeExecution())
    assert sim.state == before


@pytest.mark.parametrize("status", ["completed", "compensated"])
@pytest.mark.parametrize(
    "message",
    [
        ResumeExecution(),
        ResumeExecution(step_id="a"),
        ResumeExecution(step_id="a", override=True, output=1),
    ],
)
def test_resume_is_a_conflict_once_finished(status: str, message: ResumeExecution) -> None:
    sim = finished(status)
    before = sim.state
    with pytest.raises(Conflict):
        sim.send(message)
    assert sim.state == before


@pytest.mark.parametrize("status", ["running", "completed"])
@pytest.mark.parametrize(
    "message",
    [
        ResumeExecution(step_id="nope"),
        ResumeExecution(step_id="nope", override=True, output=1),
        ResumeExecution(override=True, output=1),
    ],
)
def test_resume_with_a_bad_body_is_invalid_before_any_conflict(
    status: str, message: ResumeExecution
) -> None:
    sim = finished("completed") if status == "completed" else chain()
    if status == "running":
        sim.send(Start())
    before = sim.state
    with pytest.raises(Invalid):
        sim.send(message)
    assert sim.state == before


# ----------------------------------------------------------------------------- deadline


@pytest.mark.parametrize("status", ["running", "paused"])
def test_deadline_fails_the_execution_and_withdraws_queued_jobs(status: str) -> None:
    sim = Sim(graph(step("a"), step("b"), step("c", "b"), step("d", "a")))
    sim.send(Start())
    sim.started("b")
    reach(sim, status)
    effects, events = sim.send(DeadlinePassed(sim.state.deadline_at))
    assert effects == [WithdrawJob("a", "job_a_1")]
    assert kinds(events) == [("step_cancelled", "a"), ("timed_out", None), ("failed", None)]
    assert events[2].data == {
        "error": {"code": "timed_out", "message": "the execution ran past its max_duration_sec"}
    }
    assert sim.status is ExecutionStatus.FAILED
    assert sim.state.error is not None and sim.state.error.code == "timed_out"
    assert sim.statuses() == {"a": "cancelled", "b": "running", "c": "pending", "d": "pending"}
    # a running job finishes and is recorded, but schedules nothing
    effects, events = sim.finish("b", output={"ok": 1})
    assert effects == [] and kinds(events) == [("step_completed", "b")]
    assert sim.status_of("c") is StepStatus.PENDING
    assert sim.status is ExecutionStatus.FAILED
    # a resume starts a new window and continues
    effects, _ = sim.send(ResumeExecution())
    assert [e for e in effects if isinstance(e, QueueJob)] == [
        queued("a", 2, None),
        queued("c", 1, None),
    ]


@pytest.mark.parametrize("status", ["running", "paused", "failed", "cancelled"])
def test_a_stale_deadline_is_ignored(status: str) -> None:
    sim = chain()
    sim.send(Start())
    old = sim.state.deadline_at
    if status == "running":
        sim.send(PauseExecution())
        sim.send(ResumeExecution())  # a new window
    else:
        reach(sim, status)
    assert status != "running" or sim.state.deadline_at != old
    before = sim.state
    message = DeadlinePassed(old) if status == "running" else DeadlinePassed(old + 1)
    assert sim.send(message) == ([], [])
    assert sim.state == before


@pytest.mark.parametrize("status", ["failed", "cancelled", "completed", "compensated"])
def test_the_current_deadline_is_ignored_unless_live(status: str) -> None:
    if status in ("completed", "compensated"):
        sim = finished(status)
    elif status == "failed":
        sim = failed_uncaught()
    else:
        sim = chain()
        sim.send(Start())
        reach(sim, status)
    before = sim.state
    assert sim.send(DeadlinePassed(sim.state.deadline_at)) == ([], [])
    assert sim.state == before


# ----------------------------------------------------------------------------- odd messages


def test_an_unexpected_message_is_an_error() -> None:
    sim = chain()
    with pytest.raises(TypeError):
        sim.send("start")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- partial resumes


def test_retry_keeps_descendants_skipped_behind_another_caught_failure() -> None:
    sim = Sim(graph(step("a", catch="k"), step("b", catch="k"), step("d", "a", "b"), step("k")))
    sim.send(Start())
    sim.finish("a", "failed")
    sim.finish("b", "failed")
    sim.finish("k")
    assert sim.status is ExecutionStatus.COMPENSATED
    sim = Sim(graph(step("a", catch="k"), step("b", catch="k"), step("d", "a", "b"), step("k")))
    sim.send(Start())
    sim.finish("a", "failed")
    sim.finish("b", "failed")
    _, events = sim.send(ResumeExecution(step_id="b"))
    assert ("step_pending", "d") not in kinds(events)  # a's failure still skips d
    assert sim.status_of("d") is StepStatus.SKIPPED
    sim.finish("b")
    sim.finish("k")
    assert sim.status is ExecutionStatus.COMPENSATED
    assert sim.statuses() == {"a": "failed", "b": "completed", "d": "skipped", "k": "completed"}


@pytest.mark.parametrize("exec_status", ["failed", "cancelled"])
@pytest.mark.parametrize("override", [False, True])
def test_a_step_left_cancelled_keeps_the_execution_from_completing(
    exec_status: str, override: bool
) -> None:
    sim = Sim(graph(step("a"), step("b", "a"), step("c")))
    sim.send(Start())
    sim.started("a")
    reach_status = exec_status
    if exec_status == "failed":
        sim.send(DeadlinePassed(sim.state.deadline_at))
    else:
        sim.send(CancelExecution())
    assert sim.status == reach_status
    assert sim.statuses() == {"a": "running", "b": "pending", "c": "cancelled"}
    if override:
        sim.send(ResumeExecution(step_id="a", override=True, output=None))
    else:
        sim.finish("a", "failed")
        sim.send(ResumeExecution(step_id="a"))
        sim.finish("a")
    _, events = sim.finish("b")
    # c never ran: the execution did not complete; it stays cancelled until resumed again
    assert kinds(events)[-1] == ("cancelled", None)
    assert sim.status is ExecutionStatus.CANCELLED
    assert sim.state.cancelled_at == sim.now
    sim.send(ResumeExecution())
    _, events = sim.finish("c")
    assert kinds(events)[-1] == ("completed", None)


def test_override_a_caught_step_clears_the_catch_and_continues_below_it() -> None:
    sim = catching()
    sim.send(Start())
    sim.started("x")
    sim.finish("a", "failed")
    effects, events = sim.send(ResumeExecution(step_id="a", override=True, output={"v": 1}))
    assert kinds(events)[:3] == [
        ("output_overridden", "a"),
        ("step_pending", "b"),
        ("step_pending", "c"),
    ]
    assert sim.step("a").caught_by is None
    assert queued("b", 1, None) in effects
    assert sim.status_of("k") is StepStatus.QUEUED  # the catch was already activated
