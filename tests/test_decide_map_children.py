"""Table tests of ``decide`` for for_each sub_workflow steps: one child per item attempt,
its result as the item's output, fail-fast, cancel, override and resume reaching the
children, and the depth limit. The harness replays after every message."""

from typing import Any

from flowyard.workflows.children import MAX_DEPTH
from flowyard.workflows.state import (
    CancelChild,
    CancelExecution,
    ChildFinished,
    ChildStarted,
    ExecutionStatus,
    ItemStatus,
    PutItems,
    ResumeExecution,
    Start,
    StartChild,
    StepError,
    StepStatus,
)
from tests.decide_support import Sim, graph, step

CHILD_BP = "wf_child"


def child_map(
    id: str = "m", *deps: str, concurrency: int = 2, catch: str | None = None
) -> dict[str, Any]:
    """A for_each sub_workflow step over ``input.xs``."""
    body: dict[str, Any] = {
        "id": id,
        "sub_workflow": {
            "blueprint_id": CHILD_BP,
            "input": {"x": "{{item.x}}", "i": "{{item_index}}"},
        },
        "for_each": "{{input.xs}}",
        "max_concurrency": concurrency,
    }
    if deps:
        body["depends_on"] = list(deps)
    if catch is not None:
        body["catch"] = catch
    return body


def xs(n: int) -> list[dict[str, int]]:
    return [{"x": 10 * i} for i in range(n)]


def starts(effects: list[Any]) -> list[StartChild]:
    return [e for e in effects if isinstance(e, StartChild)]


def statuses(sim: Sim) -> list[str]:
    return [i.status.value for i in sim.items["m"]]


def child_of(index: int) -> str:
    return f"wfexec_c{index}"


def begun(sim: Sim, index: int) -> Any:
    item = sim.item("m", index)
    return sim.send(ChildStarted("m", item.attempt, child_of(index), index))


def ended(sim: Sim, index: int, status: str = "completed", output: Any = None, **more: Any) -> Any:
    item = sim.item("m", index)
    attempt = more.pop("attempt", item.attempt)
    child = more.pop("child", child_of(index))
    message = ChildFinished("m", attempt, child, status, output, more.pop("error", None), index)
    return sim.send(message)


def started_map(n: int = 3, **options: Any) -> Sim:
    sim = Sim(graph(child_map(**options), step("c")), input_data={"xs": xs(n)})
    sim.send(Start())
    return sim


def test_each_item_starts_a_child_with_its_rendered_input_up_to_the_concurrency() -> None:
    sim = Sim(graph(child_map()), input_data={"xs": xs(3)})
    effects, events = sim.send(Start())
    assert starts(effects) == [
        StartChild("m", 1, CHILD_BP, {"x": 0, "i": 0}, 0),
        StartChild("m", 1, CHILD_BP, {"x": 10, "i": 1}, 1),
    ]
    assert [e.type for e in events if e.step_id == "m"] == [
        "map_started",
        "item_queued",
        "item_queued",
    ]
    assert events[2].data == {"index": 0, "attempt": 1, "blueprint_id": CHILD_BP}
    assert statuses(sim) == ["queued", "queued", "pending"]
    assert sim.step("m").child_execution_id is None


def test_a_child_start_runs_the_item_once() -> None:
    sim = started_map()
    effects, events = begun(sim, 0)
    assert [e.type for e in events] == ["item_started"]
    assert events[0].data == {"index": 0, "child_execution_id": "wfexec_c0"}
    assert sim.item("m", 0).status is ItemStatus.RUNNING
    assert sim.item("m", 0).child_execution_id == "wfexec_c0"
    assert [type(e) for e in effects] == [PutItems]
    assert begun(sim, 0) == ([], [])  # told again: nothing new
    assert sim.send(ChildStarted("m", 2, "wfexec_x", 0)) == ([], [])  # not the item's attempt
    assert sim.send(ChildStarted("m", 1, "wfexec_x", 7)) == ([], [])  # no such item
    assert sim.send(ChildStarted("c", 1, "wfexec_x", 0)) == ([], [])  # not a child map


def test_outputs_are_the_children_results_in_item_order() -> None:
    sim = started_map()
    begun(sim, 0)
    begun(sim, 1)
    effects, _ = ended(sim, 1, output={"r": 1})
    assert starts(effects) == [StartChild("m", 1, CHILD_BP, {"x": 20, "i": 2}, 2)]
    ended(sim, 2, output={"r": 2})  # found already ended at its start
    assert sim.item("m", 2).child_execution_id == "wfexec_c2"
    assert sim.step("m").status is StepStatus.RUNNING
    _, events = ended(sim, 0, output={"r": 0})
    assert sim.step("m").status is StepStatus.COMPLETED
    assert sim.step("m").output == [{"r": 0}, {"r": 1}, {"r": 2}]
    assert events[0].data == {"index": 0, "child_execution_id": "wfexec_c0", "output": {"r": 0}}
    assert ended(sim, 0, output={"r": 9}) == ([], [])  # late: changes nothing


def test_a_failed_child_fails_its_item_withdraws_the_rest_and_lets_running_ones_end() -> None:
    sim = Sim(
        graph(
            child_map(catch="k", concurrency=2), step("k", template={"i": "{{failure.item_index}}"})
        ),
        input_data={"xs": xs(4)},
    )
    sim.send(Start())
    begun(sim, 0)
    begun(sim, 1)
    error = StepError("job_failed", "boom")
    effects, events = ended(sim, 1, "failed", error=error)
    assert starts(effects) == []
    assert not [e for e in effects if isinstance(e, CancelChild)]  # item 0 goes on
    item = sim.item("m", 1)
    assert item.status is ItemStatus.FAILED
    assert item.error == StepError("sub_workflow_failed", "boom")
    assert statuses(sim) == ["running", "failed", "cancelled", "cancelled"]
    assert events[0].data["child_execution_id"] == "wfexec_c1"
    assert sim.step("m").status is StepStatus.RUNNING
    ended(sim, 0, output={"r": 0})  # recorded although the map fails
    assert sim.item("m", 0).output == {"r": 0}
    m = sim.step("m")
    assert m.status is StepStatus.FAILED
    assert m.error == StepError("sub_workflow_failed", "boom")
    assert sim.step("k").failure is not None
    assert sim.step("k").failure.item_index == 1
    assert sim.step("k").status is StepStatus.QUEUED


def test_cancelled_or_compensated_children_fail_their_items_too() -> None:
    for status in ("cancelled", "compensated"):
        sim = started_map(n=1)
        begun(sim, 0)
        ended(sim, 0, status)
        error = sim.item("m", 0).error
        assert error == StepError(
            "sub_workflow_failed", f"child execution wfexec_c0 ended {status}"
        )
        assert sim.step("m").status is StepStatus.FAILED


def test_a_child_that_cannot_start_fails_its_item() -> None:
    sim = started_map(n=1)
    why = StepError("sub_workflow_not_started", "no tokens")
    ended(sim, 0, "not_started", error=why, child=None)
    assert sim.item("m", 0).error == why
    assert sim.item("m", 0).child_execution_id is None
    assert sim.step("m").status is StepStatus.FAILED


def test_an_item_that_cannot_render_withdraws_a_start_of_the_same_transition() -> None:
    sim = Sim(graph(child_map()), input_data={"xs": [{"x": 1}, {"y": 2}]})
    effects, _ = sim.send(Start())
    assert starts(effects) == []  # item 0's start never leaves decide
    assert not [e for e in effects if isinstance(e, CancelChild)]
    assert statuses(sim) == ["cancelled", "failed"]
    assert sim.item("m", 1).error == StepError("template_error", "cannot resolve {{item.x}}")
    assert sim.status is ExecutionStatus.FAILED


def test_cancelling_the_parent_cancels_the_running_children() -> None:
    sim = started_map(n=4)
    begun(sim, 0)
    effects, _ = sim.send(CancelExecution())
    assert [e for e in effects if isinstance(e, CancelChild)] == [
        CancelChild("m", 1, None, 1),  # queued: found by its key
        CancelChild("m", 1, "wfexec_c0", 0),
    ]
    assert statuses(sim) == ["cancelled"] * 4
    assert sim.step("m").status is StepStatus.CANCELLED
    assert sim.status is ExecutionStatus.CANCELLED
    assert ended(sim, 0, "cancelled") == ([], [])


def test_an_override_cancels_the_running_children() -> None:
    sim = started_map()
    begun(sim, 0)
    begun(sim, 1)
    effects, _ = sim.send(ResumeExecution("m", override=True, output=["done"]))
    assert [e for e in effects if isinstance(e, CancelChild)] == [
        CancelChild("m", 1, "wfexec_c0", 0),
        CancelChild("m", 1, "wfexec_c1", 1),
    ]
    assert sim.step("m").status is StepStatus.COMPLETED


def test_a_resume_starts_new_children_for_failed_and_withdrawn_items_only() -> None:
    sim = started_map(n=3, concurrency=1)
    begun(sim, 0)
    ended(sim, 0, output={"r": 0})
    begun(sim, 1)
    ended(sim, 1, "failed", error=StepError("job_failed", "boom"))
    assert statuses(sim) == ["completed", "failed", "cancelled"]
    sim.finish("c")
    assert sim.status is ExecutionStatus.FAILED
    effects, _ = sim.send(ResumeExecution())
    assert starts(effects) == [StartChild("m", 2, CHILD_BP, {"x": 10, "i": 1}, 1)]
    assert sim.item("m", 0).child_execution_id == "wfexec_c0"
    begun(sim, 1)
    effects, _ = ended(sim, 1, output={"r": 1})
    assert starts(effects) == [StartChild("m", 1, CHILD_BP, {"x": 20, "i": 2}, 2)]
    assert ended(sim, 1, output={"r": 9}, attempt=1) == ([], [])  # the old child
    ended(sim, 2, output={"r": 2})
    assert sim.step("m").output == [{"r": 0}, {"r": 1}, {"r": 2}]
    assert sim.status is ExecutionStatus.COMPLETED


def test_an_item_child_deeper_than_the_limit_fails_the_step() -> None:
    sim = Sim(graph(child_map()), input_data={"xs": xs(2)}, depth=MAX_DEPTH)
    effects, _ = sim.send(Start())
    assert starts(effects) == []
    assert sim.item("m", 0).error is not None
    assert sim.item("m", 0).error.code == "sub_workflow_depth"
    assert sim.step("m").status is StepStatus.FAILED
    assert sim.step("m").error is not None
    assert sim.step("m").error.code == "sub_workflow_depth"


def test_a_message_without_an_item_does_not_touch_a_child_map() -> None:
    sim = started_map()
    begun(sim, 0)
    assert sim.send(ChildStarted("m", 1, "wfexec_x")) == ([], [])
    assert sim.send(ChildFinished("m", 1, "wfexec_c0", "completed", {})) == ([], [])
    assert sim.item("m", 0).status is ItemStatus.RUNNING
