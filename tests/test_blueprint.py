"""Blueprint bodies, create-time validation with JSON paths, and the step graph."""

import subprocess
import sys
from typing import Any

import msgspec
import pytest

from flowyard.errors import Invalid
from flowyard.jobs.model import Delayed, Immediate, PullQueue, PushQueue
from flowyard.jobs.spec import JobSpec
from flowyard.workflows.blueprint import (
    BlueprintSpec,
    Graph,
    Step,
    StepJob,
    build_graph,
    check_blueprint,
)

HANDLER = "https://handlers.example/run"
Body = dict[str, Any]


def step(id: str, *deps: str, catch: str | None = None, template: Any = None, **job: Any) -> Body:
    """A step body: a push-queue job with a handler unless ``job`` says otherwise."""
    job_trigger = {"trigger": {"type": "queue", "queue": "q"}, "handler": HANDLER, **job}
    body: dict[str, Any] = {"id": id, "job_trigger": job_trigger}
    if deps:
        body["depends_on"] = list(deps)
    if catch is not None:
        body["catch"] = catch
    if template is not None:
        body["payload_template"] = template
    return body


def spec(*steps: Body) -> BlueprintSpec:
    return msgspec.convert({"name": "bp", "steps": list(steps)}, BlueprintSpec)


def problems(*steps: Body) -> list[dict[str, str]]:
    return check_blueprint(spec(*steps))[1]


SEED: Body = {
    "name": "order-fulfillment",
    "steps": [
        {
            "id": "charge",
            "job_trigger": {"trigger": {"type": "queue", "queue": "payments"}, "handler": HANDLER},
            "payload_template": {"order_id": "{{input.order_id}}"},
        },
        {
            "id": "ship",
            "depends_on": ["charge"],
            "job_trigger": {"trigger": {"type": "queue", "queue": "shipping"}, "handler": HANDLER},
            "payload_template": {
                "order_id": "{{input.order_id}}",
                "charge_id": "{{steps.charge.output.charge_id}}",
            },
        },
    ],
}

CATCH = [
    step("charge", template={"order_id": "{{input.order_id}}"}),
    step("ship", "charge", catch="refund", template="{{steps.charge.output}}"),
    step(
        "refund",
        template={
            "charge_id": "{{steps.charge.output.charge_id}}",
            "reason": "{{failure.error}}",
            "attempts": "{{failure.attempt}}",
        },
    ),
    step("notify", "refund", template="{{failure.step_id}}: {{steps.refund.output}}"),
]


# --- valid blueprints -----------------------------------------------------------------------

VALID: dict[str, list[Body]] = {
    "single": [step("only")],
    "seed": SEED["steps"],
    "diamond": [
        step("A"),
        step("B", "A", template="{{steps.A.output}}"),
        step("C", "A", template="{{steps.A.output.x}}"),
        step(
            "D",
            "B",
            "C",
            template=["{{steps.A.output}}", "{{steps.B.output}}", "{{steps.C.output}}"],
        ),
    ],
    "catch": CATCH,
    "catch listed first": [
        step("refund", template="{{failure.error}} {{steps.charge.output.id}}"),
        step("charge"),
        step("ship", "charge", catch="refund"),
    ],
    "catch with two routers and a shared ancestor": [
        step("a"),
        step("x"),
        step("p", "a", "x", catch="c"),
        step("q", "a", catch="c"),
        step("c", template={"from": "{{steps.a.output}}", "code": "{{failure.code}}"}),
    ],
    "catch inside a catch branch": [
        step("s"),
        step("t", "s", catch="c1"),
        step("c1", template="{{failure.job_id}}"),
        step("u", "c1", catch="c2", template="{{steps.s.output}} {{steps.c1.output}}"),
        step("c2", template="{{failure.step_id}} {{steps.c1.output}} {{steps.s.output}}"),
    ],
    "one step catches for another catch step's router": [
        step("a", catch="c"),
        step("b", "a", catch="c"),
        step("c"),
    ],
    "execution and input placeholders anywhere": [
        step("a", template={"e": "{{execution.id}}", "b": ["{{execution.blueprint_id}}"]}),
    ],
    "pull without handler, delayed, immediate": [
        step("a", trigger={"type": "pull", "queue": "w"}, handler=None),
        step("b", "a", trigger={"type": "delayed", "delay_seconds": 5}),
        step("c", "b", trigger={"type": "immediate"}, callback_url="http://cb.example/x"),
    ],
    "escaped braces are not placeholders": [
        step("a", template="\\{{failure.error}} and \\{{steps.zz.output}}")
    ],
}


@pytest.mark.parametrize("steps", VALID.values(), ids=VALID.keys())
def test_valid_blueprints(steps: list[Body]) -> None:
    assert problems(*steps) == []
    graph = build_graph(spec(*steps))
    assert set(graph.order) == set(graph.steps) == {s["id"] for s in steps}
    position = {s: n for n, s in enumerate(graph.order)}
    for s in graph.steps:
        assert all(position[d] < position[s] for d in graph.deps[s])
        assert all(position[r] < position[s] for r in graph.routers.get(s, ()))


def test_the_seed_example_decodes_and_validates() -> None:
    blueprint = msgspec.json.decode(msgspec.json.encode(SEED), type=BlueprintSpec)
    graph = build_graph(blueprint)
    assert graph.order == ("charge", "ship")
    assert graph.starts == ("charge",)
    assert graph.ancestors == {"charge": frozenset(), "ship": frozenset({"charge"})}
    assert [p.text for p in graph.input_placeholders] == ["input.order_id"]
    assert blueprint.max_duration_sec == 86400
    assert blueprint.description is None


def test_the_seed_example_verbatim_needs_no_handlers() -> None:
    """As the seed prints it: queue steps without ``handler`` go to their queue's handler."""
    bare = msgspec.convert(
        {
            "name": "order-fulfillment",
            "steps": [
                {**s, "job_trigger": {k: v for k, v in s["job_trigger"].items() if k != "handler"}}
                for s in SEED["steps"]
            ],
        },
        BlueprintSpec,
    )
    assert check_blueprint(bare)[1] == []
    immediate = msgspec.convert(
        {"name": "n", "steps": [step("a", trigger={"type": "immediate"}, handler=None)]},
        BlueprintSpec,
    )
    assert check_blueprint(immediate)[1] == [
        {
            "path": "$.steps[0].job_trigger.handler",
            "message": "required unless trigger is pull or queue",
        },
    ]


def test_diamond_graph() -> None:
    graph = build_graph(spec(*VALID["diamond"]))
    assert graph.order == ("A", "B", "C", "D")
    assert graph.starts == ("A",)
    assert graph.deps == {"A": (), "B": ("A",), "C": ("A",), "D": ("B", "C")}
    assert graph.dependents == {"A": ("B", "C"), "B": ("D",), "C": ("D",), "D": ()}
    assert graph.ancestors["D"] == {"A", "B", "C"}
    assert graph.ancestors["B"] == {"A"}
    assert graph.descendants["A"] == {"B", "C", "D"}
    assert graph.descendants["D"] == frozenset()
    assert graph.catch_steps == frozenset()
    assert graph.in_catch_branch == frozenset()
    assert graph.catch_of == {"A": None, "B": None, "C": None, "D": None}
    assert graph.routers == {}
    assert graph.input_placeholders == []


def test_catch_graph() -> None:
    graph = build_graph(spec(*CATCH))
    assert graph.order == ("charge", "ship", "refund", "notify")
    assert graph.starts == ("charge",)
    assert graph.catch_of == {"charge": None, "ship": "refund", "refund": None, "notify": None}
    assert graph.routers == {"refund": ("ship",)}
    assert graph.catch_steps == {"refund"}
    assert graph.branch == {"refund": {"refund", "notify"}}
    assert graph.in_catch_branch == {"refund", "notify"}
    assert graph.ancestors["refund"] == {"charge"}
    assert graph.ancestors["notify"] == {"charge", "refund"}
    assert graph.descendants["charge"] == {"ship"}
    assert graph.descendants["refund"] == {"notify"}
    assert [p.text for p in graph.input_placeholders] == ["input.order_id"]


def test_a_catch_step_listed_first_is_ordered_after_its_routers() -> None:
    graph = build_graph(spec(*VALID["catch listed first"]))
    assert graph.order == ("charge", "ship", "refund")
    assert graph.starts == ("charge",)


def test_a_catch_step_sees_only_the_ancestors_of_every_router() -> None:
    graph = build_graph(spec(*VALID["catch with two routers and a shared ancestor"]))
    assert graph.routers == {"c": ("p", "q")}
    assert graph.ancestors["c"] == {"a"}
    assert graph.ancestors["p"] == {"a", "x"}
    assert graph.starts == ("a", "x")


def test_nested_catch_branches() -> None:
    graph = build_graph(spec(*VALID["catch inside a catch branch"]))
    assert graph.branch == {"c1": {"c1", "u"}, "c2": {"c2"}}
    assert graph.in_catch_branch == {"c1", "u", "c2"}
    assert graph.ancestors["u"] == {"s", "c1"}
    assert graph.ancestors["c2"] == {"s", "c1"}
    assert graph.order == ("s", "t", "c1", "u", "c2")


# --- invalid blueprints: one details entry per problem ---------------------------------------

INVALID: dict[str, tuple[list[Body], list[tuple[str, str]]]] = {
    "duplicate id": (
        [step("a"), step("b"), step("a")],
        [("$.steps[2].id", "duplicate step id 'a' (see $.steps[0])")],
    ),
    "a duplicate's references are not checked against the first": (
        [step("a"), step("b", "a"), step("b", template="{{steps.zz.output}}")],
        [("$.steps[2].id", "duplicate step id 'b' (see $.steps[1])")],
    ),
    "unknown dependency": (
        [step("a"), step("b", "a", "x")],
        [("$.steps[1].depends_on[1]", "unknown step 'x'")],
    ),
    "self dependency": (
        [step("a", "a")],
        [("$.steps[0].depends_on[0]", "a step cannot depend on itself")],
    ),
    "repeated dependency": (
        [step("a"), step("b", "a", "a")],
        [("$.steps[1].depends_on[1]", "'a' is listed more than once")],
    ),
    "cycle of three": (
        [step("a", "b"), step("b", "c"), step("c", "a")],
        [("$.steps[0].depends_on[0]", "cycle: a -> b -> c -> a")],
    ),
    "cycle of two beside a valid step": (
        [step("s"), step("x", "s", "y"), step("y", "x")],
        [("$.steps[1].depends_on[1]", "cycle: x -> y -> x")],
    ),
    "two cycles": (
        [step("a", "b"), step("b", "a"), step("c", "d"), step("d", "c")],
        [
            ("$.steps[0].depends_on[0]", "cycle: a -> b -> a"),
            ("$.steps[2].depends_on[0]", "cycle: c -> d -> c"),
        ],
    ),
    "unknown catch target": (
        [step("a", catch="nope")],
        [("$.steps[0].catch", "unknown step 'nope'")],
    ),
    "catch into its own id": (
        [step("a", catch="a")],
        [("$.steps[0].catch", "a step cannot catch into itself")],
    ),
    "catch into a branch holding the step": (
        [step("r"), step("b", "r", catch="r")],
        [
            (
                "$.steps[1].catch",
                "a step cannot catch into itself: 'b' is in the catch branch of 'r'",
            )
        ],
    ),
    "catch into a branch holding the step, deeper": (
        [
            step("s"),
            step("t", "s", catch="c"),
            step("c"),
            step("u", "c"),
            step("v", "u", catch="c"),
        ],
        [
            (
                "$.steps[4].catch",
                "a step cannot catch into itself: 'v' is in the catch branch of 'c'",
            )
        ],
    ),
    "catch step with depends_on": (
        [step("a"), step("b", "a", catch="c"), step("c", "a")],
        [
            (
                "$.steps[2].depends_on",
                "a catch step (the catch of 'b') cannot have depends_on of its own",
            )
        ],
    ),
    "cycle through catch": (
        [step("s1", "c2", catch="c1"), step("s2", "c1", catch="c2"), step("c1"), step("c2")],
        [("$.steps[0].depends_on[0]", "cycle through catch: s1 -> c2 -> s2 -> c1 -> s1")],
    ),
    "cycle through catch starting at a catch step": (
        [step("c1"), step("c2"), step("s1", "c2", catch="c1"), step("s2", "c1", catch="c2")],
        [("$.steps[2].catch", "cycle through catch: c1 -> s1 -> c2 -> s2 -> c1")],
    ),
    "output of an unrelated step": (
        [step("a"), step("b", template={"x": "{{steps.a.output}}"})],
        [
            (
                "$.steps[1].payload_template.x",
                "{{steps.a.output}}: 'a' is not an ancestor of 'b',"
                " so its output may not exist when it runs",
            )
        ],
    ),
    "output of a descendant": (
        [step("a", template=["{{steps.b.output.id}}"]), step("b", "a")],
        [("$.steps[0].payload_template[0]", "'b' is not an ancestor of 'a'")],
    ),
    "output of itself": (
        [step("a", template="{{steps.a.output}}")],
        [("$.steps[0].payload_template", "'a' is not an ancestor of 'a'")],
    ),
    "output of an unknown step": (
        [step("a", template="id {{steps.zz.output.id}}")],
        [("$.steps[0].payload_template", "{{steps.zz.output.id}}: unknown step 'zz'")],
    ),
    "catch step reads the failed router's output": (
        [
            step("charge"),
            step("ship", "charge", catch="refund"),
            step("refund", template="{{steps.ship.output}}"),
        ],
        [("$.steps[2].payload_template", "'ship' is not an ancestor of 'refund'")],
    ),
    "catch step reads an ancestor of only one router": (
        [
            step("x"),
            step("y"),
            step("p", "x", catch="c"),
            step("q", "y", catch="c"),
            step("c", template="{{steps.x.output}}"),
        ],
        [("$.steps[4].payload_template", "'x' is not an ancestor of 'c'")],
    ),
    "a dependent of a router is not an ancestor of the catch branch": (
        [
            step("a", catch="c"),
            step("b", "a"),
            step("c"),
            step("d", "c", template="{{steps.b.output}}"),
        ],
        [("$.steps[3].payload_template", "'b' is not an ancestor of 'd'")],
    ),
    "failure outside any catch branch": (
        [step("a", template={"e": "{{failure.error}}"})],
        [
            (
                "$.steps[0].payload_template.e",
                "{{failure.error}}: failure.* is only bound in a catch branch,"
                " and 'a' is not in one",
            )
        ],
    ),
    "failure in the failing router itself": (
        [step("ship", catch="refund", template="{{failure.code}}"), step("refund")],
        [("$.steps[0].payload_template", "failure.* is only bound in a catch branch")],
    ),
    "unknown placeholder root": (
        [step("a", template={"k": ["{{secrets.key}}"]})],
        [("$.steps[0].payload_template.k[0]", "unknown placeholder root 'secrets'")],
    ),
    "braces without a close": (
        [step("a", template={"k": "{{input.a"})],
        [("$.steps[0].payload_template.k", "'{{' without a closing '}}'")],
    ),
    "empty placeholder": (
        [step("a", template={"k": "{{ }}"})],
        [("$.steps[0].payload_template.k", "empty path")],
    ),
    "bad character in a key": (
        [step("a", template={"k": "{{input.a$b}}"})],
        [("$.steps[0].payload_template.k", "invalid character '$'")],
    ),
    "steps placeholder without output": (
        [step("a"), step("b", "a", template="{{steps.a.charge_id}}")],
        [("$.steps[1].payload_template", "expected steps.<step id>.output")],
    ),
    "scheduled trigger": (
        [step("a", trigger={"type": "scheduled", "schedule": "* * * * *"})],
        [
            (
                "$.steps[0].job_trigger.trigger.type",
                "scheduled is not allowed in a step (use immediate, delayed, queue or pull)",
            )
        ],
    ),
    "scheduled trigger without handler": (
        [step("a", trigger={"type": "scheduled", "schedule": "not cron"}, handler=None)],
        [
            ("$.steps[0].job_trigger.trigger.type", "scheduled is not allowed in a step"),
            ("$.steps[0].job_trigger.handler", "required unless trigger is pull or queue"),
        ],
    ),
    "missing handler": (
        [step("a", trigger={"type": "delayed", "delay_seconds": 1}, handler=None)],
        [("$.steps[0].job_trigger.handler", "required unless trigger is pull or queue")],
    ),
    "handler that is not http": (
        [step("a", handler="ftp://files.example/x")],
        [("$.steps[0].job_trigger.handler", "must be an http(s) URL")],
    ),
    "pull handler that is not a URL": (
        [step("a", trigger={"type": "pull", "queue": "w"}, handler="not a url")],
        [("$.steps[0].job_trigger.handler", "must be an http(s) URL")],
    ),
    "callback_url that is not http": (
        [step("a", callback_url="mailto:x@example.com")],
        [("$.steps[0].job_trigger.callback_url", "must be an http(s) URL")],
    ),
}


@pytest.mark.parametrize(("steps", "expected"), INVALID.values(), ids=INVALID.keys())
def test_invalid_blueprints(steps: list[Body], expected: list[tuple[str, str]]) -> None:
    with pytest.raises(Invalid) as raised:
        build_graph(spec(*steps))
    details = raised.value.details
    assert details is not None
    assert [d["path"] for d in details] == [path for path, _ in expected]
    for detail, (_, message) in zip(details, expected, strict=True):
        assert message in detail["message"]
    first_path, first_message = expected[0]
    assert raised.value.message.startswith(f"invalid blueprint: {first_path}: ")
    assert first_message in raised.value.message


def test_every_problem_is_collected_in_step_order() -> None:
    steps = [
        step("a", "ghost", template="{{failure.error}}"),
        step("b", "a", "a", catch="missing", handler="nope"),
        step("a", trigger={"type": "scheduled", "schedule": "* * * * *"}),
        step("c", template="{{steps.b.output}} {{bad root}}"),
    ]
    with pytest.raises(Invalid) as raised:
        build_graph(spec(*steps))
    assert raised.value.details == [
        {"path": "$.steps[0].depends_on[0]", "message": "unknown step 'ghost'"},
        {
            "path": "$.steps[0].payload_template",
            "message": "{{failure.error}}: failure.* is only bound in a catch branch,"
            " and 'a' is not in one",
        },
        {"path": "$.steps[1].job_trigger.handler", "message": "must be an http(s) URL"},
        {"path": "$.steps[1].depends_on[1]", "message": "'a' is listed more than once"},
        {"path": "$.steps[1].catch", "message": "unknown step 'missing'"},
        {"path": "$.steps[2].id", "message": "duplicate step id 'a' (see $.steps[0])"},
        {
            "path": "$.steps[2].job_trigger.trigger.type",
            "message": "scheduled is not allowed in a step (use immediate, delayed, queue or pull)",
        },
        {
            "path": "$.steps[3].payload_template",
            "message": "malformed placeholder 'bad root': invalid character ' '",
        },
        {
            "path": "$.steps[3].payload_template",
            "message": "{{steps.b.output}}: 'b' is not an ancestor of 'c',"
            " so its output may not exist when it runs",
        },
    ]
    assert raised.value.message == (
        "invalid blueprint: $.steps[0].depends_on[0]: unknown step 'ghost' (and 8 more problems)"
    )


def test_a_cycle_skips_only_the_ancestor_checks() -> None:
    steps = [
        step("a", "b", template="{{steps.c.output}} {{steps.zz.output}}"),
        step("b", "a", template="{{failure.error}}"),
        step("c"),
    ]
    assert problems(*steps) == [
        {"path": "$.steps[0].depends_on[0]", "message": "cycle: a -> b -> a"},
        {
            "path": "$.steps[0].payload_template",
            "message": "{{steps.zz.output}}: unknown step 'zz'",
        },
        {
            "path": "$.steps[1].payload_template",
            "message": "{{failure.error}}: failure.* is only bound in a catch branch,"
            " and 'b' is not in one",
        },
    ]


def test_a_single_problem_has_no_count_in_the_message() -> None:
    with pytest.raises(Invalid) as raised:
        build_graph(spec(step("a", catch="zz")))
    assert raised.value.message == "invalid blueprint: $.steps[0].catch: unknown step 'zz'"


# --- decoding: the types' own limits ---------------------------------------------------------

DECODE_ERRORS = [
    ({"steps": [step("a")]}, "`name`"),
    ({"name": "", "steps": [step("a")]}, "$.name"),
    ({"name": "x" * 257, "steps": [step("a")]}, "$.name"),
    ({"name": "n", "description": "d" * 1001, "steps": [step("a")]}, "$.description"),
    ({"name": "n", "steps": []}, "$.steps"),
    ({"name": "n", "steps": [step(f"s{i}") for i in range(51)]}, "$.steps"),
    ({"name": "n", "steps": [step("a")], "max_duration_sec": 0}, "$.max_duration_sec"),
    ({"name": "n", "steps": [step("a")], "max_duration_sec": 86401}, "$.max_duration_sec"),
    ({"name": "n", "steps": [step("a b")]}, "$.steps[0].id"),
    ({"name": "n", "steps": [step("")]}, "$.steps[0].id"),
    ({"name": "n", "steps": [step("x" * 129)]}, "$.steps[0].id"),
    (
        {"name": "n", "steps": [{"id": "a", "wait_for_signal": {"name": ""}}]},
        "$.steps[0].wait_for_signal.name",
    ),
    (
        {"name": "n", "steps": [{"id": "a", "wait_for_signal": {"name": "s", "timeout_sec": 0}}]},
        "$.steps[0].wait_for_signal.timeout_sec",
    ),
    ({"name": "n", "steps": [{"id": "a", "sub_workflow": {}}]}, "`blueprint_id`"),
    (
        {"name": "n", "steps": [step("a", trigger={"type": "weekly"})]},
        "$.steps[0].job_trigger.trigger",
    ),
    ({"name": "n", "steps": [step("a", timeout=31)]}, "$.steps[0].job_trigger.timeout"),
    ({"name": "n", "steps": [step("a", max_attempts=0)]}, "$.steps[0].job_trigger.max_attempts"),
    ({"name": "n", "steps": [step("a", priority=11)]}, "$.steps[0].job_trigger.priority"),
    ({"name": "n", "steps": [step("a", backoff="random")]}, "$.steps[0].job_trigger.backoff"),
    ({"name": "n", "steps": [{**step("a"), "depends_on": "b"}]}, "$.steps[0].depends_on"),
    ({"name": "n", "steps": [{**step("a"), "catch": ["b"]}]}, "$.steps[0].catch"),
]


SIGNAL = {"name": "approval"}
CHILD = {"blueprint_id": "wf_child", "input": {"order": "{{input.order_id}}"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "a"}, "it has none"),
        ({**step("a"), "wait_for_signal": SIGNAL}, "it has job_trigger, wait_for_signal"),
        ({"id": "a", "wait_for_signal": SIGNAL, "sub_workflow": CHILD}, "wait_for_signal, sub"),
    ],
)
def test_a_step_has_exactly_one_kind(body: Body, message: str) -> None:
    found = problems(body)
    assert [p["path"] for p in found] == ["$.steps[0]"]
    assert "exactly one of job_trigger, wait_for_signal, sub_workflow" in found[0]["message"]
    assert message in found[0]["message"]


def test_only_a_job_step_has_a_payload() -> None:
    body = {"id": "a", "wait_for_signal": SIGNAL, "payload_template": {"x": 1}}
    assert problems(body) == [
        {"path": "$.steps[0].payload_template", "message": "only a job_trigger step has a payload"}
    ]


def test_a_child_input_is_a_checked_template() -> None:
    bad = {
        "id": "b",
        "sub_workflow": {"blueprint_id": "wf_x", "input": {"a": "{{steps.c.output}}"}},
    }
    found = problems(step("c"), bad)
    assert [p["path"] for p in found] == ["$.steps[1].sub_workflow.input.a"]
    assert "'c' is not an ancestor of 'b'" in found[0]["message"]
    graph = check_blueprint(spec({"id": "a", "sub_workflow": CHILD}))[0]
    assert [p.text for p in graph.input_placeholders] == ["input.order_id"]


@pytest.mark.parametrize(("body", "where"), DECODE_ERRORS)
def test_decode_errors_name_the_field(body: Body, where: str) -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.json.decode(msgspec.json.encode(body), type=BlueprintSpec)
    assert where in str(raised.value)


def test_decode_at_the_limits() -> None:
    body = {
        "name": "x" * 256,
        "description": "d" * 1000,
        "steps": [step(f"s{i}") for i in range(50)],
        "max_duration_sec": 1,
    }
    blueprint = msgspec.json.decode(msgspec.json.encode(body), type=BlueprintSpec)
    assert len(blueprint.steps) == 50
    assert blueprint.max_duration_sec == 1
    assert build_graph(blueprint).starts == tuple(f"s{i}" for i in range(50))
    one = msgspec.convert({"name": "n", "steps": [step("A-z_0" + "x" * 123)]}, BlueprintSpec)
    assert one.steps[0].id == "A-z_0" + "x" * 123
    assert one.steps[0].depends_on == []
    assert one.steps[0].catch is None
    assert one.steps[0].payload_template is None


# --- step jobs -------------------------------------------------------------------------------


def test_step_job_defaults_match_a_job_body() -> None:
    job = msgspec.convert({"trigger": {"type": "immediate"}}, StepJob)
    assert job.to_spec() == JobSpec(trigger=Immediate())


@pytest.mark.parametrize(
    "trigger",
    [Immediate(), Delayed(delay_seconds=10), PushQueue(queue="q"), PullQueue(queue="w")],
)
def test_to_spec_carries_every_field_and_the_payload(trigger: Any) -> None:
    job = StepJob(
        trigger=trigger,
        handler=HANDLER,
        name="charge",
        timeout=7,
        max_attempts=5,
        backoff="linear",
        priority=2,
        callback_url="https://cb.example/done",
        enabled=False,
    )
    built = job.to_spec(msgspec.Raw(b'{"a":1}'), idempotency_key="wfexec_1:charge:1")
    assert built == JobSpec(
        trigger=trigger,
        handler=HANDLER,
        payload=msgspec.Raw(b'{"a":1}'),
        name="charge",
        timeout=7,
        max_attempts=5,
        backoff="linear",
        priority=2,
        callback_url="https://cb.example/done",
        idempotency_key="wfexec_1:charge:1",
        enabled=False,
    )


def test_steps_are_kept_in_blueprint_order() -> None:
    graph = build_graph(spec(step("z"), step("a", "z"), step("m")))
    assert list(graph.steps) == ["z", "a", "m"]
    assert isinstance(graph.steps["a"], Step)
    assert graph.order == ("z", "a", "m")
    assert graph.starts == ("z", "m")
    assert isinstance(graph, Graph)


# --- purity ----------------------------------------------------------------------------------


def test_workflows_import_nothing_async_or_from_the_shell() -> None:
    code = (
        "import sys, flowyard.workflows.blueprint, flowyard.workflows.templates\n"
        "import flowyard.workflows.state, flowyard.workflows.replay, flowyard.actors.execution\n"
        "import flowyard.workflows.maps, flowyard.actors.execution_maps\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('anyio', 'asyncio',"
        " 'aiosqlite', 'starlette', 'httpx') or m.startswith(('flowyard.storage',"
        " 'flowyard.http', 'flowyard.actors.'))"
        " and m not in ('flowyard.actors.execution', 'flowyard.actors.execution_maps'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
