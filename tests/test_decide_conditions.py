"""``decide`` with ``when`` conditions (DESIGN §8): true runs the step, false skips it with
``skip_reason: condition_false``, an error or a non-boolean fails it with ``condition_error``.

Every transition is also replayed from the event log (see ``decide_support.Sim``).
"""

from typing import Any

import pytest

from flowyard.errors import Conflict
from flowyard.workflows.replay import initial, replay
from flowyard.workflows.state import (
    CONDITION_FALSE,
    ExecutionStatus,
    ResumeExecution,
    Start,
    StepError,
    StepStatus,
)
from tests.decide_support import Sim, graph, kinds, queued, step


def test_a_true_condition_queues_the_step() -> None:
    sim = Sim(graph(step("a", when="input.amount > 100.0")), input_data={"amount": 150})
    effects, events = sim.send(Start())
    assert kinds(events) == [("triggered", None), ("step_queued", "a")]
    assert effects[1:] == [queued("a", 1, None)]
    assert sim.step("a").skip_reason is None


def test_a_false_condition_skips_the_step_and_its_dependents_run() -> None:
    sim = Sim(
        graph(
            step("a", when="input.amount > 100"),
            step("b", "a", template={"a": "{{steps.a.output}}"}),
        ),
        input_data={"amount": 99.5},
    )
    effects, events = sim.send(Start())
    assert kinds(events) == [
        ("triggered", None),
        ("step_skipped", "a"),
        ("step_queued", "b"),
    ]
    assert events[1].data == {"reason": CONDITION_FALSE}
    assert effects[1:] == [queued("b", 1, {"a": None})]
    a = sim.step("a")
    assert (a.status, a.skip_reason, a.output, a.attempt) == ("skipped", CONDITION_FALSE, None, 0)
    assert a.completed_at == sim.now
    assert a.job_id is None
    _, events = sim.finish("b", output=1)
    assert kinds(events) == [("step_completed", "b"), ("completed", None)]
    assert sim.status is ExecutionStatus.COMPLETED


def test_every_step_condition_skipped_completes_the_execution() -> None:
    sim = Sim(graph(step("a", when="false"), step("b", "a", when="steps.a.status != 'skipped'")))
    _, events = sim.send(Start())
    assert kinds(events) == [
        ("triggered", None),
        ("step_skipped", "a"),
        ("step_skipped", "b"),
        ("completed", None),
    ]
    assert sim.status is ExecutionStatus.COMPLETED


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("input.missing > 1", "no such key: missing"),
        ("input.amount", "when must give a boolean, it gave 5"),
        ("input.name + 1", "string + int"),
        ("steps.a.output.ok", "no such key: ok"),
    ],
)
def test_an_error_or_a_non_boolean_fails_the_step(when: str, message: str) -> None:
    sim = Sim(
        graph(step("a"), step("b", "a", when=when), step("c", "b")),
        input_data={"amount": 5, "name": "n"},
    )
    sim.send(Start())
    _, events = sim.finish("a", output={})
    assert kinds(events) == [("step_completed", "a"), ("step_failed", "b"), ("failed", None)]
    b = sim.step("b")
    assert b.status is StepStatus.FAILED
    assert b.error is not None and b.error.code == "condition_error"
    assert message in b.error.message
    assert events[1].data == {
        "error": {"code": "condition_error", "message": b.error.message},
        "job_id": None,
        "attempt": 0,
    }
    assert sim.status_of("c") is StepStatus.PENDING
    assert sim.state.error == b.error


@pytest.mark.parametrize("amount", [50, 500])
def test_if_else_branches_join(amount: int) -> None:
    sim = Sim(
        graph(
            step("check", template={"amount": "{{input.amount}}"}),
            step("big", "check", when="steps.check.output.amount >= 100"),
            step("small", "check", when="!(steps.check.output.amount >= 100)"),
            step(
                "join",
                "big",
                "small",
                template={"big": "{{steps.big.output}}", "small": "{{steps.small.output}}"},
                when="steps.big.status == 'completed' || steps.small.status == 'completed'",
            ),
        ),
        input_data={"amount": amount},
    )
    sim.send(Start())
    taken, other = ("big", "small") if amount >= 100 else ("small", "big")
    effects, events = sim.finish("check", output={"amount": amount})
    assert sorted(kinds(events)[1:]) == sorted([("step_skipped", other), ("step_queued", taken)])
    assert effects == [queued(taken, 1, None)]
    assert sim.step(other).skip_reason == CONDITION_FALSE
    effects, _ = sim.finish(taken, output={"path": taken})
    outputs: dict[str, Any] = {taken: {"path": taken}, other: None}
    assert effects == [queued("join", 1, {"big": outputs["big"], "small": outputs["small"]})]
    _, events = sim.finish("join")
    assert sim.status is ExecutionStatus.COMPLETED
    assert kinds(events)[-1] == ("completed", None)


def test_the_condition_sees_ancestors_status_and_execution() -> None:
    sim = Sim(
        graph(
            step("a", when="false"),
            step("x"),
            step(
                "b",
                "a",
                when=(
                    "size(steps) == 1 && steps.a.status == 'skipped' && steps.a.output == null"
                    " && execution.id == 'wfexec_1' && execution.blueprint_id == 'wf_1'"
                    " && input.tags.exists(t, t == 'vip')"
                ),
            ),
        ),
        input_data={"tags": ["vip"]},
    )
    sim.send(Start())
    assert sim.status_of("b") is StepStatus.QUEUED  # x is running, but b sees only a


def test_a_condition_error_is_caught_like_any_failure() -> None:
    sim = Sim(
        graph(
            step("a", when="input.nope", catch="k"),
            step("b", "a"),
            step("k", template={"code": "{{failure.code}}", "msg": "{{failure.error}}"}),
        )
    )
    effects, events = sim.send(Start())
    assert kinds(events) == [
        ("triggered", None),
        ("step_failed", "a"),
        ("caught", "a"),
        ("step_skipped", "b"),
        ("step_queued", "k"),
    ]
    assert events[2].data["failure"]["code"] == "condition_error"
    assert events[3].data == {"reason": "a failed"}
    assert sim.step("b").skip_reason is None  # skipped by the caught failure, not by a when
    assert effects[1:] == [queued("k", 1, {"code": "condition_error", "msg": "no such key: nope"})]
    sim.finish("k")
    assert sim.status is ExecutionStatus.COMPENSATED


def test_a_step_below_a_caught_failure_is_skipped_without_evaluating() -> None:
    sim = Sim(graph(step("a", catch="k"), step("b", "a", when="input.nope"), step("k")))
    sim.send(Start())
    sim.finish("a", "failed", error="boom")
    assert sim.status_of("b") is StepStatus.SKIPPED
    assert sim.step("b").error is None


def test_a_catch_step_with_a_false_condition_is_skipped_and_its_branch_runs() -> None:
    sim = Sim(
        graph(
            step("a", catch="k"),
            step("k", when="input.refund"),
            step("after", "k"),
        ),
        input_data={"refund": False},
    )
    sim.send(Start())
    effects, events = sim.finish("a", "failed", error="boom")
    assert ("step_skipped", "k") in kinds(events)
    assert sim.step("k").skip_reason == CONDITION_FALSE
    assert effects == [queued("after", 1, None)]
    sim.finish("after")
    assert sim.status is ExecutionStatus.COMPENSATED


def test_an_unused_catch_branch_is_skipped_without_evaluating() -> None:
    sim = Sim(graph(step("a", catch="k"), step("k", when="input.nope")))
    sim.send(Start())
    _, events = sim.finish("a")
    assert kinds(events) == [
        ("step_completed", "a"),
        ("step_skipped", "k"),
        ("completed", None),
    ]
    assert events[1].data == {"reason": "catch branch not needed"}
    assert sim.step("k").skip_reason is None


def condition_failed() -> Sim:
    """``a`` completed with ``{}``; ``b`` failed with condition_error; ``c`` below it."""
    sim = Sim(
        graph(step("a"), step("b", "a", when="steps.a.output.go"), step("c", "b")),
    )
    sim.send(Start())
    sim.finish("a", output={})
    assert sim.status is ExecutionStatus.FAILED
    return sim


def test_resume_override_of_a_condition_error_runs_the_dependents() -> None:
    sim = condition_failed()
    effects, events = sim.send(ResumeExecution("b", override=True, output={"manual": True}))
    assert ("output_overridden", "b") in kinds(events)
    assert effects[-1] == queued("c", 1, None)
    assert sim.status is ExecutionStatus.RUNNING


@pytest.mark.parametrize("step_id", ["b", None])
def test_resume_retry_evaluates_the_condition_again(step_id: str | None) -> None:
    sim = condition_failed()
    _, events = sim.send(ResumeExecution(step_id))
    assert kinds(events)[-3:] == [("resumed", step_id), ("step_failed", "b"), ("failed", None)]
    assert sim.step("b").error == StepError("condition_error", "no such key: go")


def test_resume_leaves_condition_skipped_steps_alone() -> None:
    sim = Sim(graph(step("a", catch="k"), step("b", "a", when="false"), step("k"), step("x")))
    sim.send(Start())
    sim.finish("a")
    assert sim.step("b").skip_reason == CONDITION_FALSE
    for message in (ResumeExecution("b"), ResumeExecution("b", override=True, output=1)):
        with pytest.raises(Conflict):
            sim.send(message)
    sim.finish("x")
    assert sim.status is ExecutionStatus.COMPLETED


def test_retry_of_a_caught_step_does_not_unskip_a_condition_skipped_one() -> None:
    # b is below a (caught) and skipped; d was skipped by its own when: a retry of a puts b
    # back to pending but d, which never depended on a, stays as it is.
    sim = Sim(
        graph(
            step("a", catch="k"),
            step("b", "a"),
            step("d", when="false"),
            step("k"),
            step("x"),
        )
    )
    sim.send(Start())
    sim.finish("a", "failed", error="boom")
    sim.send(ResumeExecution("a"))
    assert sim.status_of("b") is StepStatus.PENDING
    assert sim.step("d").skip_reason == CONDITION_FALSE


def test_replay_rebuilds_skip_reason_output_and_time() -> None:
    sim = Sim(graph(step("a", when="false"), step("b", "a")))
    sim.send(Start())
    skipped_at = sim.now
    sim.finish("b", output={"x": 1})
    replayed = replay(initial(sim.start), sim.log)
    a = replayed.steps["a"]
    assert (a.status, a.skip_reason, a.output) == ("skipped", CONDITION_FALSE, None)
    assert a.completed_at == skipped_at
    assert replayed.status is ExecutionStatus.COMPLETED
