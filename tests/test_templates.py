"""Payload templates: placeholder grammar, problems with their paths, and rendering."""

import sys
from typing import Any

import pytest

from flowyard.workflows.rendering import compile_template, render
from flowyard.workflows.templates import (
    Placeholder,
    TemplateError,
    TemplateSyntaxError,
    find_placeholders,
    input_paths,
    missing_input_paths,
    template_problems,
)

CONTEXT: dict[str, Any] = {
    "input": {
        "order_id": "ord_1",
        "n": 3,
        "price": 9.5,
        "flag": True,
        "none": None,
        "items": [{"sku": "A"}, {"sku": "B"}],
        "meta": {"a": 1, "b": [1, 2]},
        "0": "zero",
        "text": 'héllo "q"',
    },
    "steps": {"charge": {"charge_id": "ch_1", "amount": 12}, "ship-2": [10, 20]},
    "execution": {"id": "wfexec_1", "blueprint_id": "wf_1"},
    "failure": {
        "step_id": "ship",
        "code": "job_failed",
        "error": "boom",
        "job_id": "job_9",
        "attempt": 3,
    },
}


# --- grammar: well-formed placeholders ------------------------------------------------------

WELL_FORMED = [
    ("{{input}}", "input", ("input",), "input"),
    ("{{input.order_id}}", "input", ("input", "order_id"), "input.order_id"),
    ("{{ input.order_id }}", "input", ("input", "order_id"), "input.order_id"),
    ("{{\tinput.a\n}}", "input", ("input", "a"), "input.a"),
    ("{{input.items[0].sku}}", "input", ("input", "items", 0, "sku"), "input.items[0].sku"),
    ("{{input[2][10]}}", "input", ("input", 2, 10), "input[2][10]"),
    ("{{input.0}}", "input", ("input", "0"), "input.0"),
    ("{{input.a-b_C9}}", "input", ("input", "a-b_C9"), "input.a-b_C9"),
    (
        "{{steps.charge.output.charge_id}}",
        "steps",
        ("steps", "charge", "output", "charge_id"),
        "steps.charge.output.charge_id",
    ),
    ("{{steps.s-1.output}}", "steps", ("steps", "s-1", "output"), "steps.s-1.output"),
    ("{{steps.s.output[1]}}", "steps", ("steps", "s", "output", 1), "steps.s.output[1]"),
    ("{{execution.id}}", "execution", ("execution", "id"), "execution.id"),
    (
        "{{execution.blueprint_id}}",
        "execution",
        ("execution", "blueprint_id"),
        "execution.blueprint_id",
    ),
    ("{{failure.step_id}}", "failure", ("failure", "step_id"), "failure.step_id"),
    ("{{failure.code}}", "failure", ("failure", "code"), "failure.code"),
    ("{{failure.error}}", "failure", ("failure", "error"), "failure.error"),
    ("{{failure.job_id}}", "failure", ("failure", "job_id"), "failure.job_id"),
    ("{{failure.attempt}}", "failure", ("failure", "attempt"), "failure.attempt"),
]


@pytest.mark.parametrize(("text", "root", "parts", "normal"), WELL_FORMED)
def test_well_formed_placeholders(
    text: str, root: str, parts: tuple[str | int, ...], normal: str
) -> None:
    assert template_problems({"k": text}) == []
    assert find_placeholders({"k": text}) == [
        Placeholder(root=root, parts=parts, text=normal, location="$.k")
    ]


# --- grammar: malformed placeholders --------------------------------------------------------

MALFORMED = [
    ("{{input.a", "'{{' without a closing '}}'"),
    ("x {{ input.a } y", "'{{' without a closing '}}'"),
    ("{{}}", "empty path"),
    ("{{   }}", "empty path"),
    ("{{input.a b}}", "invalid character ' '"),
    ("{{input.a%b}}", "invalid character '%'"),
    ("{{input.é}}", "invalid character 'é'"),
    ("{{input.}}", "empty key"),
    ("{{input..a}}", "empty key"),
    ("{{input.[0]}}", "empty key"),
    ("{{input[x]}}", "an index is [n] with n >= 0"),
    ("{{input[-1]}}", "an index is [n] with n >= 0"),
    ("{{input[1}}", "an index is [n] with n >= 0"),
    ("{{.input}}", "invalid character '.'"),
    ("{{foo.bar}}", "unknown placeholder root 'foo'"),
    ("{{Input.a}}", "unknown placeholder root 'Input'"),
    ("{{output}}", "unknown placeholder root 'output'"),
    ("{{steps}}", "expected steps.<step id>.output"),
    ("{{steps.x}}", "expected steps.<step id>.output"),
    ("{{steps.x.result}}", "expected steps.<step id>.output"),
    ("{{steps[0].output}}", "expected steps.<step id>.output"),
    ("{{execution}}", "expected execution.id or execution.blueprint_id"),
    ("{{execution.other}}", "expected execution.id or execution.blueprint_id"),
    ("{{execution.id.x}}", "expected execution.id or execution.blueprint_id"),
    ("{{failure}}", "expected one of failure.step_id"),
    ("{{failure.other}}", "expected one of failure.step_id"),
    ("{{failure.error.x}}", "expected one of failure.step_id"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_placeholders_are_problems(text: str, message: str) -> None:
    template = {"a": [1, {"b": text}]}
    problems = template_problems(template, "$.steps[2].payload_template")
    assert len(problems) == 1
    assert problems[0]["path"] == "$.steps[2].payload_template.a[1].b"
    assert message in problems[0]["message"]
    with pytest.raises(TemplateSyntaxError) as raised:
        find_placeholders(template)
    assert raised.value.location == "$.a[1].b"
    assert message in raised.value.message
    with pytest.raises(TemplateSyntaxError):
        render(template, CONTEXT)


def test_every_malformed_placeholder_in_a_string_is_reported() -> None:
    problems = template_problems("{{foo}} and {{input.a}} and {{}}")
    assert [p["message"] for p in problems] == [
        "unknown placeholder root 'foo'"
        " (expected input, steps, execution, failure, item or item_index)",
        "malformed placeholder: empty path",
    ]
    assert [p["path"] for p in problems] == ["$", "$"]


def test_problems_name_every_location() -> None:
    template = {"ok": "{{input.a}}", "bad": ["{{x}}", {"deep": "{{input.}}"}], "n": 1}
    assert [p["path"] for p in template_problems(template, "$.t")] == [
        "$.t.bad[0]",
        "$.t.bad[1].deep",
    ]


def test_keys_are_not_templated() -> None:
    template = {"{{input.order_id}}": "{{input.n}}", "{{broken": 1}
    assert template_problems(template) == []
    assert render(template, CONTEXT) == {"{{input.order_id}}": 3, "{{broken": 1}


def test_locations_quote_keys_that_are_not_identifiers() -> None:
    found = find_placeholders({"a b": ["{{input.a}}"], "x": {"1y": "{{input.b}}"}})
    assert [p.location for p in found] == ['$["a b"][0]', '$.x["1y"]']


def test_placeholders_come_in_document_order() -> None:
    template = ["{{input.a}}-{{execution.id}}", {"k": "{{steps.s.output}}"}, 7, None]
    found = find_placeholders(template)
    assert [(p.text, p.location) for p in found] == [
        ("input.a", "$[0]"),
        ("execution.id", "$[0]"),
        ("steps.s.output", "$[1].k"),
    ]
    assert [p.step_id for p in found] == [None, None, "s"]


# --- rendering ------------------------------------------------------------------------------

WHOLE = [
    ("{{input.order_id}}", "ord_1"),
    ("{{ input.n }}", 3),
    ("{{input.price}}", 9.5),
    ("{{input.flag}}", True),
    ("{{input.none}}", None),
    ("{{input.items}}", [{"sku": "A"}, {"sku": "B"}]),
    ("{{input.items[1].sku}}", "B"),
    ("{{input.meta}}", {"a": 1, "b": [1, 2]}),
    ("{{input.0}}", "zero"),
    ("{{steps.charge.output}}", {"charge_id": "ch_1", "amount": 12}),
    ("{{steps.charge.output.amount}}", 12),
    ("{{steps.ship-2.output[1]}}", 20),
    ("{{execution.id}}", "wfexec_1"),
    ("{{execution.blueprint_id}}", "wf_1"),
    ("{{failure.step_id}}", "ship"),
    ("{{failure.code}}", "job_failed"),
    ("{{failure.error}}", "boom"),
    ("{{failure.job_id}}", "job_9"),
    ("{{failure.attempt}}", 3),
]


@pytest.mark.parametrize(("template", "expected"), WHOLE)
def test_a_whole_placeholder_keeps_the_json_type(template: str, expected: Any) -> None:
    rendered = render({"v": template}, CONTEXT)["v"]
    assert rendered == expected
    assert type(rendered) is type(expected)


INTERPOLATED = [
    ("id={{input.order_id}}", "id=ord_1"),
    (" {{input.n}}", " 3"),
    ("{{input.n}} ", "3 "),
    ("{{input.n}}{{input.n}}", "33"),
    ("{{input.price}}/{{input.flag}}/{{input.none}}", "9.5/true/null"),
    ("m={{input.meta}}", 'm={"a":1,"b":[1,2]}'),
    ("i={{input.items}}", 'i=[{"sku":"A"},{"sku":"B"}]'),
    ("t={{input.text}}", 't=héllo "q"'),
    ("{{steps.charge.output.charge_id}}:{{failure.attempt}}", "ch_1:3"),
    ("no placeholders", "no placeholders"),
    ("stray }} and { braces", "stray }} and { braces"),
    ("\\{{input.n}}", "{{input.n}}"),
    ("a \\{{ b {{input.n}}", "a {{ b 3"),
    ("\\{{input.n}} is {{input.n}}", "{{input.n}} is 3"),
    ("\\{{", "{{"),
    ("\\\\{{input.n}}", "\\{{input.n}}"),
    ("back\\slash {{input.n}}", "back\\slash 3"),
]


@pytest.mark.parametrize(("template", "expected"), INTERPOLATED)
def test_placeholders_inside_text_are_interpolated(template: str, expected: str) -> None:
    assert render([template], CONTEXT) == [expected]


def test_an_escaped_placeholder_is_not_a_placeholder() -> None:
    assert find_placeholders("\\{{foo.bar}} {{input.a}}") == [
        Placeholder("input", ("input", "a"), "input.a", "$")
    ]
    assert template_problems("\\{{ not a placeholder") == []


def test_render_walks_nested_templates() -> None:
    template: dict[str, Any] = {
        "order": {"id": "{{input.order_id}}", "lines": ["{{input.items[0]}}", 5, None, True]},
        "note": "exec {{execution.id}}",
        "n": 1.5,
    }
    assert render(template, CONTEXT) == {
        "order": {"id": "ord_1", "lines": [{"sku": "A"}, 5, None, True]},
        "note": "exec wfexec_1",
        "n": 1.5,
    }
    assert template["order"]["id"] == "{{input.order_id}}"  # the template is not changed


def test_templates_without_placeholders_come_back_as_they_are() -> None:
    template = {"a": [1, {"b": "plain"}], "c": None}
    assert render(template, CONTEXT) is template
    mixed = {"same": {"x": [1, 2]}, "changed": "{{input.n}}"}
    rendered = render(mixed, CONTEXT)
    assert rendered == {"same": {"x": [1, 2]}, "changed": 3}
    assert rendered is not mixed
    assert rendered["same"] is mixed["same"]
    assert mixed["changed"] == "{{input.n}}"
    for scalar in (None, 1, 2.5, True, "text"):
        assert render(scalar, CONTEXT) is scalar


UNRESOLVABLE = [
    ("{{input.missing}}", "input.missing"),
    ("x {{input.items[2]}}", "input.items[2]"),
    ("{{input.items.0}}", "input.items.0"),
    ("{{input.meta[0]}}", "input.meta[0]"),
    ("{{input.n.x}}", "input.n.x"),
    ("{{input.order_id[0]}}", "input.order_id[0]"),
    ("{{input.none.x}}", "input.none.x"),
    ("{{steps.other.output}}", "steps.other.output"),
    ("{{steps.charge.output.nope}}", "steps.charge.output.nope"),
    ("{{ steps.charge.output.charge_id.x }}", "steps.charge.output.charge_id.x"),
]


@pytest.mark.parametrize(("template", "path"), UNRESOLVABLE)
def test_an_unresolvable_path_names_itself(template: str, path: str) -> None:
    with pytest.raises(TemplateError) as raised:
        render({"a": [template]}, CONTEXT)
    assert raised.value.path == path
    assert path in str(raised.value)


@pytest.mark.parametrize("template", ["{{failure.error}}", "e: {{failure.code}}"])
def test_failure_is_unresolvable_outside_a_catch(template: str) -> None:
    context = {key: value for key, value in CONTEXT.items() if key != "failure"}
    with pytest.raises(TemplateError) as raised:
        render(template, context)
    assert raised.value.path.startswith("failure.")


def test_rendering_is_repeatable() -> None:
    template = {"id": "{{input.order_id}}-{{steps.charge.output.amount}}"}
    first = render(template, CONTEXT)
    other = {**CONTEXT, "input": {"order_id": "ord_2"}}
    assert render(template, other) == {"id": "ord_2-12"}
    assert render(template, CONTEXT) == first == {"id": "ord_1-12"}


COMPILED: list[Any] = [
    *({"v": template} for template, _ in WHOLE),
    *([template] for template, _ in INTERPOLATED),
    {
        "order": {"id": "{{input.order_id}}", "lines": ["{{input.items[0]}}", 5, None, True]},
        "note": "exec {{execution.id}}",
        "n": 1.5,
    },
    [[["{{input.n}}"]], {"deep": {"er": ["x{{input.price}}"]}}, "plain"],
    "{{input.meta}}",
    "m={{input.meta}}",
]


@pytest.mark.parametrize("template", COMPILED)
def test_a_compiled_template_renders_as_render_does(template: Any) -> None:
    compiled = compile_template(template)
    rendered = compiled(CONTEXT)
    assert rendered == render(template, CONTEXT)
    assert compiled(CONTEXT) == rendered  # repeatable, and the template is not changed
    assert compile_template(template)(CONTEXT) == rendered


def test_a_compiled_template_keeps_what_has_no_placeholders() -> None:
    template = {"a": [1, {"b": "plain"}], "c": None}
    assert compile_template(template)(CONTEXT) is template
    mixed = {"same": {"x": [1, 2]}, "changed": "{{input.n}}"}
    rendered = compile_template(mixed)(CONTEXT)
    assert rendered == {"same": {"x": [1, 2]}, "changed": 3}
    assert rendered["same"] is mixed["same"]
    assert mixed["changed"] == "{{input.n}}"
    for scalar in (None, 1, 2.5, True, "text"):
        assert compile_template(scalar)(CONTEXT) is scalar


@pytest.mark.parametrize(("template", "path"), UNRESOLVABLE)
def test_a_compiled_template_names_an_unresolvable_path(template: str, path: str) -> None:
    compiled = compile_template({"a": [template]})
    with pytest.raises(TemplateError) as raised:
        compiled(CONTEXT)
    assert raised.value.path == path


def test_a_template_too_deep_to_compile_renders_as_render_does() -> None:
    template: Any = "{{input.n}}"
    for _ in range(sys.getrecursionlimit()):
        template = [template]
    compiled = compile_template(template)  # no RecursionError here
    try:
        render(template, CONTEXT)
    except RecursionError:  # plain Python; compiled with mypyc, render goes deeper
        with pytest.raises(RecursionError):
            compiled(CONTEXT)
    else:
        assert isinstance(compiled(CONTEXT), list)
    shallow: Any = "{{input.n}}"
    for _ in range(200):
        shallow = {"a": [shallow]}
    assert compile_template(shallow)(CONTEXT) == render(shallow, CONTEXT)


def test_a_compiled_malformed_template_raises_when_rendered() -> None:
    compiled = compile_template({"a": "{{nope.x}}"})
    with pytest.raises(TemplateSyntaxError):
        compiled(CONTEXT)


# --- input paths ----------------------------------------------------------------------------


def test_input_paths_are_distinct_input_placeholders() -> None:
    templates = [
        {"a": "{{input.order_id}}", "b": "{{steps.x.output}}"},
        None,
        ["{{ input.order_id }}", "{{input.items[0].sku}} {{execution.id}}"],
    ]
    assert [p.text for p in input_paths(templates)] == ["input.order_id", "input.items[0].sku"]


def test_input_paths_refuse_malformed_templates() -> None:
    with pytest.raises(TemplateSyntaxError):
        input_paths([{"a": "{{input.}}"}])


MISSING = [
    ({"order_id": 1, "items": [{"sku": "A"}]}, []),
    ({"order_id": None, "items": [{"sku": None}]}, []),
    ({"items": [{"sku": "A"}]}, ["input.order_id"]),
    ({"order_id": 1, "items": []}, ["input.items[0].sku"]),
    ({"order_id": 1, "items": {"0": {"sku": 1}}}, ["input.items[0].sku"]),
    ({}, ["input.order_id", "input.items[0].sku"]),
    ([], ["input.order_id", "input.items[0].sku"]),
]


@pytest.mark.parametrize(("input_data", "missing"), MISSING)
def test_missing_input_paths(input_data: Any, missing: list[str]) -> None:
    placeholders = find_placeholders(
        ["{{input.order_id}}", "{{input.items[0].sku}}", "{{input.order_id}}", "{{execution.id}}"]
    )
    assert missing_input_paths(placeholders, input_data) == missing


def test_the_whole_input_always_resolves() -> None:
    assert missing_input_paths(find_placeholders("{{input}}"), {}) == []
