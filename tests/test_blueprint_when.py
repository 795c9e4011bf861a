"""A step's ``when`` at blueprint create: it must compile as CEL and name only ancestors."""

from typing import Any

import msgspec
import pytest

from flowyard.errors import Invalid
from flowyard.workflows.blueprint import BlueprintSpec, build_graph, check_blueprint
from flowyard.workflows.conditions import MAX_WHEN_CHARS, Condition

HANDLER = "https://handlers.example/run"


def step(id: str, *deps: str, when: str | None = None, catch: str | None = None) -> Any:
    body: dict[str, Any] = {
        "id": id,
        "job_trigger": {"trigger": {"type": "queue", "queue": "q"}, "handler": HANDLER},
    }
    if deps:
        body["depends_on"] = list(deps)
    if when is not None:
        body["when"] = when
    if catch is not None:
        body["catch"] = catch
    return body


def spec(*steps: Any) -> BlueprintSpec:
    return msgspec.convert({"name": "bp", "steps": list(steps)}, BlueprintSpec)


def problems(*steps: Any) -> list[dict[str, str]]:
    return check_blueprint(spec(*steps))[1]


def test_conditions_are_compiled_once_onto_the_graph() -> None:
    graph = build_graph(
        spec(step("a"), step("b", "a", when="steps.a.output.ok"), step("c", "b", when="true"))
    )
    assert set(graph.conditions) == {"b", "c"}
    assert isinstance(graph.conditions["b"], Condition)
    assert graph.conditions["b"].source == "steps.a.output.ok"
    assert graph.steps["a"].when is None


@pytest.mark.parametrize(
    "when",
    [
        "steps.a.output.total > 10.5 && steps['b'].status == 'completed'",
        'steps["a"].output == null || input.force',
        "'steps.z' != input.s",  # inside a string: names no step
        "input.tags.exists(t, t == 'x') && execution.id != ''",
        "steps[input.pick].output",  # a computed key names no step
        "a" * 10 + " == 1",  # unknown variables fail at run time (condition_error), not here
    ],
)
def test_valid_conditions(when: str) -> None:
    assert problems(step("a"), step("b", "a"), step("c", "b", when=when)) == []


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("1 +", "not a CEL expression: Failed to parse expression '1 +'"),
        ("steps.a.output.x ==", "not a CEL expression"),
        ("steps.`a`", "not a CEL expression"),
        (
            "steps.a.output.all(k, steps.a.output[k].exists(v, v))",
            "comprehensions may not nest (.exists() inside another)",
        ),
    ],
)
def test_a_condition_that_does_not_compile(when: str, message: str) -> None:
    found = problems(step("a"), step("b", "a", when=when))
    assert len(found) == 1
    assert found[0]["path"] == "$.steps[1].when"
    assert found[0]["message"].startswith(message)


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("steps.x.output", "unknown step 'x'"),
        ("steps['x'].status == 'completed'", "unknown step 'x'"),
        (
            "steps.fraud-check.output",
            'unknown step \'fraud\' (write steps["a-b"] for an id with "-")',
        ),
        ("steps.c.output", "'c' is not an ancestor of 'b', so it may not have run"),
        ('steps["other"].output', "'other' is not an ancestor of 'b'"),
        ("steps.b.output", "'b' is not an ancestor of 'b'"),
    ],
)
def test_a_condition_that_names_a_step_that_is_not_an_ancestor(when: str, message: str) -> None:
    found = problems(
        step("a"),
        step("b", "a", when=when),
        step("c", "b"),
        step("other"),
        step("fraud-check"),
    )
    assert [p["path"] for p in found] == ["$.steps[1].when"]
    assert found[0]["message"].startswith(message)


def test_every_problem_of_a_condition_is_reported() -> None:
    found = problems(step("a"), step("b", when="steps.a.output && steps.zz.output"))
    assert found == [
        {"path": "$.steps[1].when", "message": found[0]["message"]},
        {"path": "$.steps[1].when", "message": "unknown step 'zz'"},
    ]
    assert "'a' is not an ancestor of 'b'" in found[0]["message"]


def test_a_catch_step_sees_the_ancestors_shared_by_its_routers() -> None:
    ok = [
        step("a"),
        step("b", "a", catch="k"),
        step("k", when="steps.a.output.refund"),
        step("n", "k", when="steps.k.status == 'completed' && steps.a.output != null"),
    ]
    assert problems(*ok) == []
    found = problems(step("a"), step("b", "a", catch="k"), step("k", when="steps.b.output"))
    assert found[0]["message"].startswith("'b' is not an ancestor of 'k'")


def test_ancestors_are_not_checked_in_a_cycle_but_the_syntax_is() -> None:
    found = problems(step("a", "b", when="steps.b.output"), step("b", "a", when="1 +"))
    assert [p["path"] for p in found] == [
        "$.steps[0].depends_on[0]",
        "$.steps[1].when",
    ]


def test_length_limits() -> None:
    assert problems(step("a", when="true" + " " * (MAX_WHEN_CHARS - 4))) == []
    for when in ("", "x" * (MAX_WHEN_CHARS + 1)):
        with pytest.raises(msgspec.ValidationError, match=r"\$.steps\[0\].when"):
            spec(step("a", when=when))


def test_build_graph_raises_invalid_with_the_path() -> None:
    with pytest.raises(Invalid) as raised:
        build_graph(spec(step("a", when="steps.nope")))
    assert raised.value.details == [{"path": "$.steps[0].when", "message": "unknown step 'nope'"}]
