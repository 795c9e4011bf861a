"""Blueprint checks of for_each steps: the path, ``{{item}}`` placeholders, max_concurrency."""

from typing import Any

import msgspec
import pytest

from flowyard.workflows.blueprint import BlueprintSpec, check_blueprint
from tests.decide_support import step


def problems(*steps: dict[str, Any]) -> list[dict[str, str]]:
    spec = msgspec.convert({"name": "bp", "steps": list(steps)}, BlueprintSpec)
    return check_blueprint(spec)[1]


def with_map(body: dict[str, Any], over: str, **more: Any) -> dict[str, Any]:
    return {**body, "for_each": over, **more}


def test_a_valid_map_reads_item_and_item_index() -> None:
    body = step("m", template={"x": "{{item.k[0]}}", "i": "{{item_index}}", "all": "{{item}}"})
    assert (
        problems(step("a"), with_map({**body, "depends_on": ["a"]}, "{{steps.a.output.xs}}")) == []
    )
    assert problems(with_map(step("m"), "{{ input.xs }}", max_concurrency=100)) == []


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            "input.xs",
            "for_each must be exactly one placeholder, like '{{input.items}}': 'input.xs'",
        ),
        ("{{input.xs}} and more", "for_each must be exactly one placeholder"),
        ("{{item}}", "for_each cannot read {{item}}: it is bound per item"),
        ("{{nope.x}}", "for_each must be exactly one placeholder"),
    ],
)
def test_for_each_is_one_placeholder(over: str, message: str) -> None:
    [problem] = problems(with_map(step("m"), over))
    assert problem["path"] == "$.steps[0].for_each"
    assert problem["message"].startswith(message)


def test_for_each_names_only_ancestors() -> None:
    [problem] = problems(step("a"), with_map(step("m"), "{{steps.a.output}}"))
    assert problem["path"] == "$.steps[1].for_each"
    assert "'a' is not an ancestor of 'm'" in problem["message"]


def test_item_placeholders_outside_a_for_each_step_are_400() -> None:
    [one, two] = problems(step("a", template={"x": ["{{item}}", "{{item_index}}"]}))
    assert one["path"] == "$.steps[0].payload_template.x[0]"
    assert one["message"] == "{{item}}: item and item_index are only bound in a for_each step"
    assert two["path"] == "$.steps[0].payload_template.x[1]"


def test_item_index_has_no_path_below() -> None:
    [problem] = problems(with_map(step("m", template="{{item_index.x}}"), "{{input.xs}}"))
    assert "item_index is a number" in problem["message"]


def test_max_concurrency_needs_for_each_and_a_wait_cannot_map() -> None:
    [problem] = problems({**step("a"), "max_concurrency": 3})
    assert problem == {
        "path": "$.steps[0].max_concurrency",
        "message": "only a for_each step has it",
    }
    wait = {"id": "w", "wait_for_signal": {"name": "go"}, "for_each": "{{input.xs}}"}
    [problem] = problems(wait)
    assert problem["path"] == "$.steps[0].for_each"
    assert problem["message"] == "a wait_for_signal step cannot have for_each"


def test_a_sub_workflow_step_can_map_with_item_in_its_input() -> None:
    child = {
        "id": "c",
        "sub_workflow": {"blueprint_id": "wf_x", "input": {"n": "{{item}}", "i": "{{item_index}}"}},
        "for_each": "{{input.xs}}",
        "max_concurrency": 2,
    }
    found = problems(child)
    assert [p for p in found if not p["path"].startswith("$.steps[0].sub_workflow.blueprint")] == []
    alone = {"id": "c", "sub_workflow": {"blueprint_id": "wf_x", "input": {"n": "{{item}}"}}}
    [problem] = problems(alone)
    assert problem["path"] == "$.steps[0].sub_workflow.input.n"


@pytest.mark.parametrize("value", [0, 101])
def test_max_concurrency_is_1_to_100(value: int) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(
            {"name": "bp", "steps": [with_map(step("m"), "{{input.xs}}", max_concurrency=value)]},
            BlueprintSpec,
        )


def test_for_each_input_paths_are_required_at_trigger() -> None:
    spec = msgspec.convert(
        {"name": "bp", "steps": [with_map(step("m"), "{{input.list}}")]}, BlueprintSpec
    )
    g, found = check_blueprint(spec)
    assert found == []
    assert [p.text for p in g.input_placeholders] == ["input.list"]
