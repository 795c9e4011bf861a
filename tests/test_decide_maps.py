"""``decide`` for for_each steps: items under max_concurrency, outputs in order, failures,
withdrawals, resumes, and the replay of it all (the harness replays after every message)."""

from typing import Any

import msgspec
import pytest

from flowyard.errors import Conflict
from flowyard.workflows.state import (
    CancelExecution,
    DeadlinePassed,
    ExecutionStatus,
    ItemStatus,
    JobStarted,
    PauseExecution,
    PutItems,
    QueueJob,
    ResumeExecution,
    Start,
    StepStatus,
    WithdrawJob,
)
from tests.decide_support import Sim, graph, item_job_id, kinds, step


def mapped(
    id: str,
    *deps: str,
    over: str = "{{input.xs}}",
    concurrency: int | None = 2,
    catch: str | None = None,
    template: Any = None,
) -> dict[str, Any]:
    body = step(
        id, *deps, catch=catch, template=template or {"x": "{{item}}", "i": "{{item_index}}"}
    )
    body["for_each"] = over
    if concurrency is not None:
        body["max_concurrency"] = concurrency
    return body


def item_jobs(effects: list[Any]) -> list[tuple[int | None, Any]]:
    """(item index, payload) of every item job queued."""
    return [
        (e.item_index, msgspec.json.decode(e.payload))
        for e in effects
        if isinstance(e, QueueJob) and e.item_index is not None
    ]


def statuses(sim: Sim, step_id: str) -> list[str]:
    return [i.status.value for i in sim.items[step_id]]


def counts(sim: Sim, step_id: str) -> dict[str, int]:
    progress = sim.step(step_id).items
    assert progress is not None
    return {
        "total": progress.total,
        "completed": progress.completed,
        "failed": progress.failed,
        "running": progress.running,
        "queued": progress.queued,
        "cancelled": progress.cancelled,
    }


def test_a_map_starts_items_up_to_its_concurrency_with_item_and_index() -> None:
    sim = Sim(graph(mapped("m")), input_data={"xs": ["a", "b", "c", "d", "e"]})
    effects, events = sim.send(Start())
    assert item_jobs(effects) == [(0, {"x": "a", "i": 0}), (1, {"x": "b", "i": 1})]
    assert kinds(events) == [
        ("triggered", None),
        ("map_started", "m"),
        ("item_queued", "m"),
        ("item_queued", "m"),
    ]
    assert events[1].data == {"attempt": 1, "total": 5, "values": ["a", "b", "c", "d", "e"]}
    assert sim.status_of("m") is StepStatus.RUNNING and sim.step("m").job_id is None
    assert statuses(sim, "m") == ["queued", "queued", "pending", "pending", "pending"]
    assert sim.item("m", 0).job_id == item_job_id("m", 0, 1)
    # One effect carries every changed item; the execution holds only the counts.
    [put] = [e for e in effects if isinstance(e, PutItems)]
    assert [i.index for i in put.items] == [0, 1, 2, 3, 4]
    assert counts(sim, "m") == {
        "total": 5,
        "completed": 0,
        "failed": 0,
        "running": 0,
        "queued": 2,
        "cancelled": 0,
    }


def test_items_run_in_index_order_and_the_output_keeps_item_order() -> None:
    sim = Sim(graph(mapped("m"), step("after", "m")), input_data={"xs": [10, 20, 30]})
    sim.send(Start())
    sim.item_started("m", 1)
    assert sim.item("m", 1).status is ItemStatus.RUNNING
    effects, events = sim.item_finished("m", 1, output="one")
    # one finished: the next pending item starts; the execution document holds no items
    assert item_jobs(effects) == [(2, {"x": 30, "i": 2})]
    [put] = [e for e in effects if isinstance(e, PutItems)]
    assert [i.index for i in put.items] == [1, 2]  # one write per changed item
    sim.item_finished("m", 2, output="two")
    assert sim.status_of("m") is StepStatus.RUNNING
    effects, events = sim.item_finished("m", 0, output="zero")
    assert sim.status_of("m") is StepStatus.COMPLETED
    assert sim.step("m").output == ["zero", "one", "two"]
    assert ("step_completed", "m") in kinds(events)
    assert sim.status_of("after") is StepStatus.QUEUED
    assert counts(sim, "m")["completed"] == 3


def test_an_empty_array_completes_the_step_at_once() -> None:
    sim = Sim(graph(mapped("m"), step("after", "m", template={"o": "{{steps.m.output}}"})))
    sim.start = msgspec.structs.replace(sim.start, input_data={"xs": []})
    sim.state = sim.start
    effects, _ = sim.send(Start())
    assert sim.status_of("m") is StepStatus.COMPLETED and sim.step("m").output == []
    assert [msgspec.json.decode(e.payload) for e in effects if isinstance(e, QueueJob)] == [
        {"o": []}
    ]


@pytest.mark.parametrize(
    ("xs", "message"),
    [
        ({"a": 1}, "for_each {{input.xs}} is a dict, not an array"),
        ("text", "for_each {{input.xs}} is a str, not an array"),
        (list(range(1001)), "for_each {{input.xs}} has 1001 items (at most 1000)"),
    ],
)
def test_a_for_each_that_is_no_array_of_at_most_1000_fails_with_template_error(
    xs: Any, message: str
) -> None:
    sim = Sim(graph(mapped("m")), input_data={"xs": xs})
    effects, _ = sim.send(Start())
    assert sim.status_of("m") is StepStatus.FAILED
    error = sim.step("m").error
    assert error is not None and (error.code, error.message) == ("template_error", message)
    assert not any(isinstance(e, (QueueJob, PutItems)) for e in effects)
    assert sim.status is ExecutionStatus.FAILED


def test_an_unresolvable_for_each_path_fails_with_template_error() -> None:
    sim = Sim(graph(step("a"), mapped("m", "a", over="{{steps.a.output.list}}")))
    sim.send(Start())
    sim.finish("a", output={"other": 1})
    error = sim.step("m").error
    assert error is not None and error.code == "template_error"
    assert error.message == "cannot resolve {{steps.a.output.list}}"


def test_an_item_whose_template_does_not_resolve_fails_the_step() -> None:
    body = mapped("m", template={"k": "{{item.k}}"}, concurrency=3)
    sim = Sim(graph(body), input_data={"xs": [{"k": 1}, {"x": 2}, {"k": 3}, {"k": 4}]})
    effects, _ = sim.send(Start())
    # item 1 fails at render: item 0, queued in the same transition, is withdrawn before its
    # job exists, and 2 and 3 never start
    assert item_jobs(effects) == []
    assert not any(isinstance(e, WithdrawJob) for e in effects)
    assert statuses(sim, "m") == ["cancelled", "failed", "cancelled", "cancelled"]
    assert sim.status_of("m") is StepStatus.FAILED
    error = sim.step("m").error
    assert error is not None and error.code == "template_error"


def test_an_item_failing_withdraws_what_has_not_started_and_fails_the_step_with_its_index() -> None:
    steps = [
        mapped("m", concurrency=3, catch="k"),
        step("k", template={"i": "{{failure.item_index}}", "e": "{{failure.error}}"}),
    ]
    sim = Sim(graph(*steps), input_data={"xs": [0, 1, 2, 3, 4]})
    sim.send(Start())
    sim.item_started("m", 0)
    sim.item_started("m", 2)
    effects, events = sim.item_finished("m", 2, "failed", error="boom")
    # item 1 is queued: withdrawn with its job; 3 and 4 never start; 0 runs on
    assert [e for e in effects if isinstance(e, WithdrawJob)] == [
        WithdrawJob("m", item_job_id("m", 1, 1), 1)
    ]
    assert not item_jobs(effects)
    assert statuses(sim, "m") == ["running", "cancelled", "failed", "cancelled", "cancelled"]
    assert ("items_withdrawn", "m") in kinds(events)
    assert sim.status_of("m") is StepStatus.RUNNING and sim.status_of("k") is StepStatus.PENDING
    # the running item finishes and is recorded; then the step fails and its catch applies
    effects, events = sim.item_finished("m", 0, output="kept")
    assert sim.item("m", 0).output == "kept"
    assert sim.status_of("m") is StepStatus.FAILED and sim.step("m").caught_by == "k"
    failure = sim.step("k").failure
    assert failure is not None and failure.item_index == 2 and failure.error == "boom"
    assert failure.job_id == item_job_id("m", 2, 1)
    [queued] = [e for e in effects if isinstance(e, QueueJob)]
    assert msgspec.json.decode(queued.payload) == {"i": 2, "e": "boom"}
    [failed] = [e for e in events if e.type == "step_failed"]
    assert failed.data["item_index"] == 2
    assert counts(sim, "m") == {
        "total": 5,
        "completed": 1,
        "failed": 1,
        "running": 0,
        "queued": 0,
        "cancelled": 3,
    }


def test_resuming_the_step_reruns_only_failed_and_withdrawn_items() -> None:
    sim = Sim(graph(mapped("m", concurrency=2)), input_data={"xs": [0, 1, 2, 3]})
    sim.send(Start())
    sim.item_finished("m", 0, output="o0")
    sim.item_started("m", 2)
    sim.item_finished("m", 1, "failed", error="no")
    sim.item_finished("m", 2, output="o2")
    assert statuses(sim, "m") == ["completed", "failed", "completed", "cancelled"]
    assert sim.status is ExecutionStatus.FAILED
    effects, events = sim.send(ResumeExecution(step_id="m"))
    assert item_jobs(effects) == [(1, {"x": 1, "i": 1}), (3, {"x": 3, "i": 3})]
    assert sim.item("m", 1).attempt == 2 and sim.item("m", 3).attempt == 1
    assert sim.step("m").attempt == 2
    assert ("map_started", "m") in kinds(events)
    sim.item_finished("m", 3, output="o3")
    sim.item_finished("m", 1, output="o1")
    assert sim.step("m").output == ["o0", "o1", "o2", "o3"]
    assert sim.status is ExecutionStatus.COMPLETED


def test_a_result_of_a_withdrawn_or_earlier_item_attempt_changes_nothing() -> None:
    sim = Sim(graph(mapped("m", concurrency=1)), input_data={"xs": [0, 1]})
    sim.send(Start())
    sim.item_finished("m", 0, "failed", error="no")
    sim.send(ResumeExecution(step_id="m"))
    before = sim.state
    # attempt 1 of item 0 again, and item 1 that is pending (never queued)
    assert sim.item_finished("m", 0, output="late", attempt=1) == ([], [])
    assert sim.item_finished("m", 1, output="x", attempt=0) == ([], [])
    assert sim.state == before


def test_cancel_withdraws_queued_items_and_running_ones_finish() -> None:
    sim = Sim(graph(mapped("m", concurrency=2)), input_data={"xs": [0, 1, 2]})
    sim.send(Start())
    sim.item_started("m", 0)
    effects, _ = sim.send(CancelExecution())
    assert [e for e in effects if isinstance(e, WithdrawJob)] == [
        WithdrawJob("m", item_job_id("m", 1, 1), 1)
    ]
    assert statuses(sim, "m") == ["running", "cancelled", "cancelled"]
    assert sim.status is ExecutionStatus.CANCELLED
    assert sim.status_of("m") is StepStatus.RUNNING
    sim.item_finished("m", 0, output="done")
    assert sim.item("m", 0).output == "done"
    assert sim.status_of("m") is StepStatus.CANCELLED
    # a resume re-runs the withdrawn items only
    effects, _ = sim.send(ResumeExecution())
    assert [i for i, _ in item_jobs(effects)] == [1, 2]
    sim.item_finished("m", 1, output="b")
    sim.item_finished("m", 2, output="c")
    assert sim.step("m").output == ["done", "b", "c"]


def test_the_deadline_withdraws_queued_items() -> None:
    sim = Sim(graph(mapped("m", concurrency=2)), input_data={"xs": [0, 1, 2]})
    sim.send(Start())
    effects, _ = sim.send(DeadlinePassed(sim.state.deadline_at))
    assert len([e for e in effects if isinstance(e, WithdrawJob)]) == 2
    assert sim.status_of("m") is StepStatus.CANCELLED
    assert sim.status is ExecutionStatus.FAILED


def test_a_paused_execution_starts_no_new_items_until_resumed() -> None:
    sim = Sim(graph(mapped("m", concurrency=1)), input_data={"xs": [0, 1]})
    sim.send(Start())
    sim.send(PauseExecution())
    effects, _ = sim.item_finished("m", 0, output="a")
    assert not item_jobs(effects) and sim.status_of("m") is StepStatus.RUNNING
    effects, _ = sim.send(ResumeExecution())
    assert item_jobs(effects) == [(1, {"x": 1, "i": 1})]
    sim.item_finished("m", 1, output="b")
    assert sim.status is ExecutionStatus.COMPLETED


def test_overriding_a_running_map_withdraws_every_item_out() -> None:
    sim = Sim(graph(mapped("m", concurrency=2)), input_data={"xs": [0, 1, 2]})
    sim.send(Start())
    sim.item_started("m", 0)
    effects, _ = sim.send(ResumeExecution(step_id="m", override=True, output=["x"]))
    withdrawn = [e.item_index for e in effects if isinstance(e, WithdrawJob)]
    assert withdrawn == [0, 1]
    assert statuses(sim, "m") == ["cancelled", "cancelled", "cancelled"]
    assert sim.step("m").output == ["x"] and sim.status is ExecutionStatus.COMPLETED
    assert sim.item_finished("m", 0, output="late", attempt=1) == ([], [])


def test_a_running_map_step_cannot_be_retried() -> None:
    sim = Sim(graph(mapped("m")), input_data={"xs": [0]})
    sim.send(Start())
    with pytest.raises(Conflict):
        sim.send(ResumeExecution(step_id="m"))


def test_item_starts_of_unknown_items_change_nothing() -> None:
    sim = Sim(graph(mapped("m")), input_data={"xs": [0]})
    sim.send(Start())
    before = sim.state
    assert sim.send(JobStarted("m", 1, "j", 7)) == ([], [])
    assert sim.send(JobStarted("zz", 1, "j", 0)) == ([], [])
    assert sim.state == before
