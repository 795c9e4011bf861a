"""``when`` conditions: the CEL package against the other candidate on one table of
expressions, and ``workflows/conditions.py`` (compile, evaluate, the step-reference scan)."""

from typing import Any

import pytest
from bench.cel import answer, cel_compile, celpy_compile, same
from bench.cel_cases import ACTIVATION, CASES, Case

from flowyard.workflows.conditions import (
    MAX_ERROR_CHARS,
    ConditionError,
    compile_condition,
    nested_comprehension,
    step_references,
)

AGREED = [c for c in CASES if not c.differs]
DIFFERENT = [c for c in CASES if c.differs]


def ids(case: Case) -> str:
    return case.expr


@pytest.mark.parametrize("case", AGREED, ids=ids)
def test_both_packages_give_the_cel_answer(case: Case) -> None:
    pytest.importorskip("celpy")
    ours = answer(cel_compile, case.expr, case.activation())
    other = answer(celpy_compile, case.expr, case.activation())
    assert same(ours, case.expected), ours
    assert same(other, case.expected), other


@pytest.mark.parametrize("case", DIFFERENT, ids=ids)
def test_where_they_differ_ours_gives_the_cel_answer(case: Case) -> None:
    pytest.importorskip("celpy")
    ours = answer(cel_compile, case.expr, case.activation())
    other = answer(celpy_compile, case.expr, case.activation())
    assert same(ours, case.expected), ours
    # Documented in bench/README.md (CEL); if cel-python changes, the table should too.
    assert not same(other, case.expected), f"cel-python now agrees on {case.expr}: {case.differs}"


def test_the_documented_differences() -> None:
    assert {c.differs for c in DIFFERENT} == {
        "int compared with double",
        "bool compared with int",
        "an integer past int64 in the JSON",
    }


# --- Condition -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("input.amount > 100.0", True),
        ("input.amount < 100", False),
        ("steps['fraud-check'].output.score < 10 && steps.charge.status == 'completed'", True),
        ("has(input.missing) || input.flag", True),
        ("execution.id == 'ex_1'", True),
    ],
)
def test_evaluate_gives_the_boolean(expr: str, expected: bool) -> None:
    assert compile_condition(expr).evaluate(ACTIVATION) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("input.missing", "no such key: missing"),
        ("input.tags[5]", "index out of bounds"),
        ("1 / 0", "division by zero"),
        ("nothing_named_so", "nothing_named_so"),
        ("input.name", "when must give a boolean, it gave 'abc'"),
        ("input.none", "when must give a boolean, it gave None"),
        ("input.amount", "when must give a boolean, it gave 150"),
        ("input.name.size() > 0 ? input.tags : []", "it gave ['vip', 'eu']"),
    ],
)
def test_errors_and_non_booleans_are_condition_errors(expr: str, message: str) -> None:
    condition = compile_condition(expr)
    with pytest.raises(ConditionError) as raised:
        condition.evaluate(ACTIVATION)
    assert message in raised.value.message


def test_a_long_non_boolean_is_named_by_its_type() -> None:
    variables: dict[str, Any] = {"input": {"s": "x" * 500}}
    with pytest.raises(ConditionError, match=r"it gave a str$"):
        compile_condition("input.s").evaluate(variables)


def test_error_text_is_bounded() -> None:
    key = "k" * 2000
    with pytest.raises(ConditionError) as raised:
        compile_condition(f"input.{key}").evaluate({"input": {}})
    assert len(raised.value.message) == MAX_ERROR_CHARS


@pytest.mark.parametrize("expr", ["1 +", "input.", "(a", "steps.`a-b`", "'open", "a ? b"])
def test_text_that_is_not_cel_does_not_compile(expr: str) -> None:
    with pytest.raises(ConditionError) as raised:
        compile_condition(expr)
    assert raised.value.message
    assert "\n" not in raised.value.message


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(ConditionError):
        compile_condition("(" * 2000 + "true" + ")" * 2000)
    assert compile_condition("!" * 4000 + "true").evaluate({}) is True


def test_the_engine_loads_the_core_without_the_packages_command_line() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flowyard.workflows.conditions\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('asyncio', 'typer', 'rich', 'prompt_toolkit')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- step references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "named"),
    [
        ("steps.a.output.x > 1", ["a"]),
        ("steps['b-1'].status == 'completed'", ["b-1"]),
        ('steps["c"].output && steps.a.output', ["c", "a"]),
        ("steps . a . output", ["a"]),
        ("steps\n// comment steps.z\n.a.output", ["a"]),
        ("'steps.x' == input.s && \"steps['y']\" != ''", []),
        ("r'steps.x\\' == steps.q.output", ["q"]),
        ("'it\\'s steps.x' == steps.q.output", ["q"]),
        ('"""steps.x "quoted" """ == steps.q.output', ["q"]),
        ("input.steps.x && my_steps.y", []),
        ("steps[input.key].output", []),
        ("size(steps) > 0", []),
        ("steps.a.output || steps.a.status == 'skipped'", ["a"]),
        ("steps.fraud-check.output", ["fraud"]),
    ],
)
def test_step_references(expr: str, named: list[str]) -> None:
    assert step_references(expr) == named


@pytest.mark.parametrize(
    ("expr", "nested"),
    [
        ("[1, 2].all(a, [3].exists(b, a < b))", ".exists()"),
        ("input.l.map(x, x.filter(y, y > 0))", ".filter()"),
        ("input.l.exists(x, size(x.map(y, y)) > 0)", ".map()"),
        ("input.l.exists(x, x > 0) && input.m.all(k, k != '')", None),
        ("input.l.exists(x, x == '.map(') || input.f(1).map(x, x)", None),
        ("input.l.exists(x, (x + 1) > 0) && [1].map(y, y)", None),
    ],
)
def test_nested_comprehensions(expr: str, nested: str | None) -> None:
    assert nested_comprehension(expr) == nested
    if nested is not None:
        with pytest.raises(ConditionError, match="comprehensions may not nest"):
            compile_condition(expr)


def test_only_the_variables_it_reads_are_converted() -> None:
    condition = compile_condition("input.a == 1 && [2].exists(x, x == 2)")
    assert condition.names == {"input", "x"}
    # steps is not converted at all: a value cel cannot take there changes nothing
    assert condition.evaluate({"input": {"a": 1}, "steps": {"s": object()}}) is True


def test_a_panic_in_the_package_is_a_condition_error() -> None:
    class PanicException(BaseException):  # what pyo3 turns a Rust panic into
        pass

    class Panicking:
        def execute(self, context: Any) -> Any:
            raise PanicException("index out of range")

    condition = compile_condition("true")
    broken = type(condition)(condition.source, Panicking(), condition.names)
    with pytest.raises(ConditionError, match="index out of range"):
        broken.evaluate({})


def test_an_interrupt_is_not_a_condition_error() -> None:
    class Interrupted:
        def execute(self, context: Any) -> Any:
            raise KeyboardInterrupt

    condition = compile_condition("true")
    with pytest.raises(KeyboardInterrupt):
        type(condition)(condition.source, Interrupted(), condition.names).evaluate({})
