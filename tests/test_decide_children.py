"""Table tests of ``decide`` for sub_workflow steps: a child per attempt, its end as the
step's, cancel and override reaching it, and the depth limit. Every transition replays."""

from typing import Any

import pytest

from flowyard.workflows.children import MAX_DEPTH
from flowyard.workflows.state import (
    CancelChild,
    CancelExecution,
    ChildFinished,
    ChildStarted,
    DeadlinePassed,
    ExecutionStatus,
    PauseExecution,
    ResumeExecution,
    Start,
    StartChild,
    StepError,
    StepStatus,
)
from tests.decide_support import Sim, graph, kinds, step

CHILD_BP = "wf_child"


def sub(id: str, *deps: str, catch: str | None = None, input: Any = None) -> dict[str, Any]:
    """A sub_workflow step body."""
    body: dict[str, Any] = {"id": id, "sub_workflow": {"blueprint_id": CHILD_BP}}
    if input is not None:
        body["sub_workflow"]["input"] = input
    if deps:
        body["depends_on"] = list(deps)
    if catch is not None:
        body["catch"] = catch
    return body


def parent(depth: int = 0, *, catch: bool = False) -> Sim:
    """``a`` (a child with the input's order) -> ``b`` (a job reading a's output), and ``c``
    (a job kept running so nothing settles); ``a`` caught by ``k`` when ``catch``."""
    steps = [
        sub("a", input={"order": "{{input.order_id}}"}, catch="k" if catch else None),
        step("b", "a", template={"got": "{{steps.a.output.total}}"}),
        step("c"),
    ]
    if catch:
        steps.append(step("k", template={"code": "{{failure.code}}", "e": "{{failure.error}}"}))
    sim = Sim(graph(*steps), input_data={"order_id": "o-1"}, depth=depth)
    sim.send(Start())
    return sim


def child_ended(sim: Sim, status: str, output: Any = None, error: StepError | None = None) -> Any:
    s = sim.step("a")
    return sim.send(ChildFinished("a", s.attempt, "wfexec_c1", status, output, error))


def test_start_runs_the_child_with_the_rendered_input() -> None:
    sim = Sim(graph(sub("a", input={"order": "{{input.order_id}}"})), input_data={"order_id": 7})
    effects, events = sim.send(Start())
    assert effects[1:] == [StartChild("a", 1, CHILD_BP, {"order": 7})]
    assert kinds(events) == [("triggered", None), ("child_starting", "a")]
    assert events[1].data == {"attempt": 1, "blueprint_id": CHILD_BP}
    a = sim.step("a")
    assert (a.status, a.attempt, a.job_id, a.child_execution_id) == ("running", 1, None, None)
    assert a.started_at == sim.now


def test_a_step_without_input_gives_the_child_an_empty_object() -> None:
    sim = Sim(graph(sub("a")))
    effects, _ = sim.send(Start())
    assert effects[1:] == [StartChild("a", 1, CHILD_BP, {})]


def test_child_started_records_the_child_once() -> None:
    sim = parent()
    effects, events = sim.send(ChildStarted("a", 1, "wfexec_c1"))
    assert effects == [] and kinds(events) == [("child_started", "a")]
    assert events[0].data == {"attempt": 1, "child_execution_id": "wfexec_c1"}
    assert sim.step("a").child_execution_id == "wfexec_c1"
    assert sim.send(ChildStarted("a", 1, "wfexec_c1")) == ([], [])  # again: nothing new
    assert sim.send(ChildStarted("a", 2, "wfexec_c2")) == ([], [])  # not the current attempt
    assert sim.send(ChildStarted("c", 1, "wfexec_c3")) == ([], [])  # not a sub_workflow step


def test_a_completed_child_completes_the_step_and_schedules_dependents() -> None:
    sim = parent()
    sim.send(ChildStarted("a", 1, "wfexec_c1"))
    effects, events = child_ended(sim, "completed", {"total": 12})
    assert kinds(events) == [("step_completed", "a"), ("step_queued", "b")]
    assert events[0].data == {"child_execution_id": "wfexec_c1", "output": {"total": 12}}
    assert sim.step("a").status is StepStatus.COMPLETED
    assert sim.step("a").output == {"total": 12}
    assert sim.step("b").status is StepStatus.QUEUED
    assert len(effects) == 1


def test_an_end_without_a_recorded_start_records_the_child_first() -> None:
    sim = parent()
    _, events = child_ended(sim, "completed", {"total": 1})
    assert kinds(events)[:2] == [("child_started", "a"), ("step_completed", "a")]
    assert sim.step("a").child_execution_id == "wfexec_c1"


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        ("failed", StepError("job_failed", "card declined"), "card declined"),
        ("compensated", None, "child execution wfexec_c1 ended compensated"),
        ("cancelled", None, "child execution wfexec_c1 ended cancelled"),
    ],
)
def test_a_child_that_does_not_complete_fails_the_step_and_is_caught(
    status: str, error: StepError | None, message: str
) -> None:
    sim = parent(catch=True)
    _, events = child_ended(sim, status, None, error)
    a = sim.step("a")
    assert a.status is StepStatus.FAILED and a.caught_by == "k"
    assert a.error == StepError("sub_workflow_failed", message)
    assert ("caught", "a") in kinds(events)
    assert sim.step("b").status is StepStatus.SKIPPED
    assert sim.step("k").status is StepStatus.QUEUED
    failure = sim.step("k").failure
    assert failure is not None and (failure.code, failure.error) == ("sub_workflow_failed", message)


def test_a_child_that_could_not_start_fails_the_step_with_its_reason() -> None:
    sim = parent()
    why = StepError("sub_workflow_not_started", "blueprint wf_child is archived")
    s = sim.step("a")
    sim.send(ChildFinished("a", s.attempt, None, "not_started", None, why))
    assert sim.step("a").error == why
    assert sim.step("a").child_execution_id is None


@pytest.mark.parametrize("depth", [0, MAX_DEPTH - 1])
def test_children_start_up_to_the_deepest_depth(depth: int) -> None:
    sim = parent(depth)
    assert sim.step("a").status is StepStatus.RUNNING


def test_an_execution_at_the_deepest_depth_starts_no_child() -> None:
    sim = parent(MAX_DEPTH)
    a = sim.step("a")
    assert a.status is StepStatus.FAILED and a.attempt == 0
    assert a.error is not None and a.error.code == "sub_workflow_depth"
    assert "deeper than 5" in a.error.message


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"x": "{{input.nope}}"}, "cannot resolve {{input.nope}}"),
        ("{{input.order_id}}", "the rendered input is not a JSON object"),
    ],
)
def test_an_input_that_does_not_render_to_an_object_is_a_template_error(
    template: Any, message: str
) -> None:
    sim = Sim(graph(sub("a", input=template)), input_data={"order_id": "o"})
    effects, _ = sim.send(Start())
    assert not any(isinstance(e, StartChild) for e in effects)
    assert sim.step("a").error == StepError("template_error", message)
    assert sim.status is ExecutionStatus.FAILED


@pytest.mark.parametrize("status", ["running", "paused", "failed"])
def test_cancel_cancels_running_children(status: str) -> None:
    sim = parent()
    sim.send(ChildStarted("a", 1, "wfexec_c1"))
    if status == "paused":
        sim.send(PauseExecution())
    if status == "failed":
        sim.send(DeadlinePassed(sim.state.deadline_at))
        assert sim.step("a").status is StepStatus.RUNNING  # a deadline leaves children running
    effects, events = sim.send(CancelExecution())
    assert CancelChild("a", 1, "wfexec_c1") in effects
    assert ("step_cancelled", "a") in kinds(events)
    assert sim.step("a").status is StepStatus.CANCELLED
    assert child_ended(sim, "cancelled") == ([], [])  # the child's own end changes nothing now


def test_cancel_before_the_child_is_known_names_the_attempt() -> None:
    sim = parent()
    effects, _ = sim.send(CancelExecution())
    assert CancelChild("a", 1, None) in effects


def test_pause_records_the_child_end_and_dependents_wait() -> None:
    sim = parent()
    sim.send(PauseExecution())
    effects, _ = child_ended(sim, "completed", {"total": 3})
    assert effects == []
    assert sim.step("a").status is StepStatus.COMPLETED
    assert sim.step("b").status is StepStatus.PENDING
    effects, _ = sim.send(ResumeExecution())
    assert sim.step("b").status is StepStatus.QUEUED


def test_override_completes_a_running_step_and_cancels_its_child() -> None:
    sim = parent()
    sim.send(ChildStarted("a", 1, "wfexec_c1"))
    effects, _ = sim.send(ResumeExecution(step_id="a", override=True, output={"total": 5}))
    assert CancelChild("a", 1, "wfexec_c1") in effects
    assert sim.step("a").status is StepStatus.COMPLETED
    assert sim.step("b").status is StepStatus.QUEUED
    assert child_ended(sim, "completed", {"total": 9}) == ([], [])


def test_override_of_a_failed_step_cancels_nothing() -> None:
    sim = parent()
    child_ended(sim, "failed", None, StepError("job_failed", "no"))
    effects, _ = sim.send(ResumeExecution(step_id="a", override=True, output={"total": 5}))
    assert not any(isinstance(e, CancelChild) for e in effects)


def test_resume_of_a_failed_step_starts_a_new_child() -> None:
    sim = parent()
    sim.send(ChildStarted("a", 1, "wfexec_c1"))
    child_ended(sim, "failed", None, StepError("job_failed", "no"))
    effects, _ = sim.send(ResumeExecution(step_id="a"))
    assert StartChild("a", 2, CHILD_BP, {"order": "o-1"}) in effects
    a = sim.step("a")
    assert (a.status, a.attempt, a.child_execution_id, a.error) == ("running", 2, None, None)
    stale = ChildFinished("a", 1, "wfexec_c1", "completed", {"total": 1})
    assert sim.send(stale) == ([], [])
