"""Blueprint bodies, their validation, and the step graph the engine schedules from.

Pure: ``build_graph`` checks every rule of a blueprint at create time and returns a ``Graph``
that is built once per blueprint and read by every execution.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from flowyard.errors import Invalid
from flowyard.jobs.model import Immediate, Scheduled
from flowyard.jobs.spec import JobOptions, spec_problems
from flowyard.workflows import dag
from flowyard.workflows.conditions import (
    MAX_WHEN_CHARS,
    Condition,
    ConditionError,
    compile_condition,
    step_references,
)
from flowyard.workflows.maps import for_each_placeholder, item_problems
from flowyard.workflows.rendering import Renderer, compile_template
from flowyard.workflows.templates import Placeholder, scan

StepId = Annotated[str, Meta(min_length=1, max_length=128, pattern="^[A-Za-z0-9_-]+$")]
Problem = dict[str, str]


DEFAULT_CONCURRENCY = 10
MAX_ITEMS = 1000
"""The longest array a for_each step runs over."""

StepJob = JobOptions
"""A step's ``job_trigger``: the job create body without payload and idempotency_key."""


class WaitForSignal(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A step that waits until a signal of this name is sent to its execution (§8)."""

    name: Annotated[str, Meta(min_length=1, max_length=128)]
    timeout_sec: Annotated[int, Meta(ge=1, le=2_592_000)] | None = None


class SubWorkflow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A step that runs a child execution of another blueprint (§8)."""

    blueprint_id: Annotated[str, Meta(min_length=1, max_length=128)]
    input: Any = None
    """A template rendered into the child's ``input_data``."""


class StepKind(StrEnum):
    """What a step does: exactly one of these fields is set on it."""

    JOB = "job_trigger"
    SIGNAL = "wait_for_signal"
    SUB_WORKFLOW = "sub_workflow"


class Step(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One step of a blueprint: a job, a wait for a signal or a child execution."""

    id: StepId
    job_trigger: StepJob | None = None
    wait_for_signal: WaitForSignal | None = None
    sub_workflow: SubWorkflow | None = None
    payload_template: Any = None
    depends_on: list[str] = []
    catch: str | None = None
    when: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=MAX_WHEN_CHARS,
                description="a CEL expression over input, steps (ancestors: output, status) and"
                " execution (id, blueprint_id), evaluated when the step's dependencies are done;"
                " false skips the step (skip_reason condition_false), an error or a non-boolean"
                " fails it (condition_error)",
                examples=["steps.check.output.amount > 100.0"],
            ),
        ]
        | None
    ) = None
    for_each: str | None = None
    """``"{{<path>}}"``: run the step once per element of that array (§8)."""
    max_concurrency: Annotated[int, Meta(ge=1, le=100)] | None = None
    """How many items of a for_each step run at once (None: the default, 10)."""

    @property
    def concurrency(self) -> int:
        """How many items of a for_each step may be out at once."""
        return self.max_concurrency or DEFAULT_CONCURRENCY

    @property
    def kinds(self) -> list[StepKind]:
        """The kinds whose field is set (exactly one in a valid blueprint)."""
        return [kind for kind in StepKind if getattr(self, kind.value) is not None]

    @property
    def kind(self) -> StepKind:
        """What the step does (a validated step has exactly one kind: the first of ``kinds``)."""
        if self.job_trigger is not None:
            return StepKind.JOB
        if self.wait_for_signal is not None:
            return StepKind.SIGNAL
        if self.sub_workflow is not None:
            return StepKind.SUB_WORKFLOW
        raise IndexError("a step with no kind")

    @property
    def template(self) -> Any:
        """The template rendered when the step starts: its payload, or its child's input."""
        return self.sub_workflow.input if self.sub_workflow is not None else self.payload_template


class BlueprintSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /infra/workflows/blueprints``."""

    name: Annotated[str, Meta(min_length=1, max_length=256)]
    description: Annotated[str, Meta(max_length=1000)] | None = None
    steps: Annotated[list[Step], Meta(min_length=1, max_length=50)]
    max_duration_sec: Annotated[int, Meta(ge=1, le=86400)] = 86400


@dataclass(frozen=True, eq=False)
class Graph:
    """The validated step graph of one blueprint.

    ``order`` puts every step after its depends_on and every catch step after each step that
    routes to it. ``ancestors`` are the steps whose outputs exist whenever a step runs (for a
    catch step: the ancestors shared by every step routing to it, inherited below it).
    ``descendants`` follow depends_on only. ``branch[c]`` is catch step ``c`` and its
    descendants. ``conditions`` holds the compiled ``when`` of each step that has one, and
    ``payloads`` the compiled ``payload_template`` of each step.
    """

    steps: dict[str, Step]
    order: tuple[str, ...]
    starts: tuple[str, ...]
    deps: dict[str, tuple[str, ...]]
    dependents: dict[str, tuple[str, ...]]
    catch_of: dict[str, str | None]
    routers: dict[str, tuple[str, ...]]
    catch_steps: frozenset[str]
    branch: dict[str, frozenset[str]]
    in_catch_branch: frozenset[str]
    ancestors: dict[str, frozenset[str]]
    descendants: dict[str, frozenset[str]]
    input_placeholders: list[Placeholder]
    conditions: dict[str, Condition] = field(default_factory=dict)
    payloads: dict[str, Renderer] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        payloads = {
            sid: compile_template(step.payload_template) for sid, step in self.steps.items()
        }
        object.__setattr__(self, "payloads", payloads)


def build_graph(spec: BlueprintSpec) -> Graph:
    """The graph of a blueprint, after checking every rule its types do not enforce.

    Raises:
        Invalid: with one ``{path, message}`` detail per problem, in step order.
    """
    graph, problems = check_blueprint(spec)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise Invalid(f"invalid blueprint: {first['path']}: {first['message']}{more}", problems)
    return graph


def check_blueprint(spec: BlueprintSpec) -> tuple[Graph, list[Problem]]:
    """The graph (meaningful only without problems) and every problem, in step order."""
    return _Builder(spec).build()


def _cycle_text(cycle: list[str]) -> str:
    return " -> ".join([*cycle, cycle[0]])


class _Builder:
    """Collects problems step by step; each check runs only when its inputs are sound."""

    def __init__(self, spec: BlueprintSpec) -> None:
        self.spec = spec
        self.index: dict[str, int] = {}
        self.problems: list[tuple[int, int, Problem]] = []
        self.for_each: dict[int, list[Placeholder]] = {}

    def add(self, step: int, path: str, message: str) -> None:
        self.problems.append((step, len(self.problems), {"path": path, "message": message}))

    def build(self) -> tuple[Graph, list[Problem]]:
        steps = self._ids()
        placeholders = [self._step_local(i, step) for i, step in enumerate(self.spec.steps)]
        conditions = self._conditions(steps)
        deps, dep_at = self._depends_on()
        catch_of = self._catch_targets(steps)
        dependents = {s: tuple(d for d in steps if s in deps[d]) for s in steps}
        descendants = {s: dag.reach(s, lambda x: dependents[x]) for s in steps}
        routers = {c: tuple(s for s in steps if catch_of[s] == c) for c in steps}
        catch_steps = frozenset(c for c in steps if routers[c])
        branch = {c: descendants[c] | {c} for c in catch_steps}
        self._catch_rules(steps, catch_of, branch)
        catch_of = {
            s: c if c is not None and c != s and s not in branch[c] else None
            for s, c in catch_of.items()
        }
        routers = {c: tuple(s for s in steps if catch_of[s] == c) for c in steps}
        in_branch = frozenset(s for members in branch.values() for s in members)

        waits = {s: [*deps[s], *routers[s]] for s in steps}
        # Name depends_on cycles first; only a graph without them can cycle through a catch.
        cycles = dag.cycles(list(steps), {s: list(deps[s]) for s in steps}) or dag.cycles(
            list(steps), waits
        )
        order: tuple[str, ...] = ()
        ancestors: dict[str, frozenset[str]] = {}
        if cycles:
            self._report_cycles(cycles, deps, dep_at, catch_of)
        else:
            order = dag.topological(list(steps), waits)
            ancestors = dag.ancestors(order, deps, routers)
        for i, step in enumerate(self.spec.steps):
            if self.index[step.id] == i:
                known = ancestors.get(step.id)  # None when a cycle left them undefined
                self._references(i, step, placeholders[i], known, in_branch)
                self._when_references(i, step, conditions, known)
                for_each = self.for_each.get(i, [])
                self._references(i, step, for_each, known, in_branch, f"$.steps[{i}].for_each")
        graph = Graph(
            steps=steps,
            order=order,
            starts=tuple(s for s in steps if not deps[s] and s not in catch_steps),
            deps=deps,
            dependents=dependents,
            catch_of=catch_of,
            routers={c: routers[c] for c in steps if routers[c]},
            catch_steps=catch_steps,
            branch=branch,
            in_catch_branch=in_branch,
            ancestors=ancestors,
            descendants=descendants,
            input_placeholders=_distinct_inputs(
                [*placeholders[self.index[s]], *self.for_each.get(self.index[s], [])] for s in steps
            ),
            conditions=conditions,
        )
        return graph, [problem for _, _, problem in sorted(self.problems, key=_problem_key)]

    def _ids(self) -> dict[str, Step]:
        steps: dict[str, Step] = {}
        for i, step in enumerate(self.spec.steps):
            if step.id in self.index:
                first = self.index[step.id]
                self.add(
                    i, f"$.steps[{i}].id", f"duplicate step id {step.id!r} (see $.steps[{first}])"
                )
                continue
            self.index[step.id] = i
            steps[step.id] = step
        return steps

    def _step_local(self, i: int, step: Step) -> list[Placeholder]:
        """Kind, job trigger and template syntax: the checks that need no other step."""
        kinds = step.kinds
        if len(kinds) != 1:
            names = ", ".join(kind.value for kind in StepKind)
            has = f"it has {', '.join(k.value for k in kinds)}" if kinds else "it has none"
            self.add(i, f"$.steps[{i}]", f"a step needs exactly one of {names}: {has}")
        if step.job_trigger is not None:
            self._job_trigger(i, step.job_trigger)
        elif step.payload_template is not None:
            self.add(i, f"$.steps[{i}].payload_template", "only a job_trigger step has a payload")
        found, problems = scan(step.template, f"$.steps[{i}].{_template_field(step)}")
        for problem in problems:
            self.add(i, problem["path"], problem["message"])
        for problem in item_problems(step, i, found):
            self.add(i, problem["path"], problem["message"])
        if step.for_each is not None:
            placeholder, message = for_each_placeholder(step.for_each)
            if placeholder is None:
                self.add(i, f"$.steps[{i}].for_each", message)
            else:
                self.for_each[i] = [placeholder]
        return found

    def _job_trigger(self, i: int, job_trigger: StepJob) -> None:
        path = f"$.steps[{i}].job_trigger"
        spec = job_trigger.to_spec()
        if isinstance(spec.trigger, Scheduled):
            self.add(
                i,
                f"{path}.trigger.type",
                "scheduled is not allowed in a step (use immediate, delayed, queue or pull)",
            )
            spec = msgspec.structs.replace(spec, trigger=Immediate())
        for problem in spec_problems(spec, path):
            self.add(i, problem["path"], problem["message"])

    def _conditions(self, steps: dict[str, Step]) -> dict[str, Condition]:
        """Each ``when`` compiled; one that does not compile is a problem at its path."""
        conditions: dict[str, Condition] = {}
        for s, step in steps.items():
            if step.when is None:
                continue
            i = self.index[s]
            try:
                conditions[s] = compile_condition(step.when)
            except ConditionError as exc:
                self.add(i, f"$.steps[{i}].when", exc.message)
        return conditions

    def _when_references(
        self,
        i: int,
        step: Step,
        conditions: dict[str, Condition],
        ancestors: frozenset[str] | None,
    ) -> None:
        """Steps a compiled ``when`` names must be ancestors (``None``: a cycle, unknown)."""
        if step.id not in conditions:
            return
        path = f"$.steps[{i}].when"
        source = conditions[step.id].source
        for other in step_references(source):
            if other not in self.index:
                hint = ' (write steps["a-b"] for an id with "-")' if "-" in source else ""
                self.add(i, path, f"unknown step {other!r}{hint}")
            elif ancestors is not None and other not in ancestors:
                self.add(
                    i,
                    path,
                    f"{other!r} is not an ancestor of {step.id!r}, so it may not have run"
                    " when the condition is evaluated",
                )

    def _depends_on(self) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], int]]:
        deps: dict[str, tuple[str, ...]] = {}
        dep_at: dict[tuple[str, str], int] = {}
        for i, step in enumerate(self.spec.steps):
            valid: list[str] = []
            for j, dep in enumerate(step.depends_on):
                path = f"$.steps[{i}].depends_on[{j}]"
                if dep == step.id:
                    self.add(i, path, "a step cannot depend on itself")
                elif dep not in self.index:
                    self.add(i, path, f"unknown step {dep!r}")
                elif dep in valid:
                    self.add(i, path, f"{dep!r} is listed more than once")
                else:
                    valid.append(dep)
            if self.index[step.id] == i:
                deps[step.id] = tuple(valid)
                dep_at.update(((step.id, dep), step.depends_on.index(dep)) for dep in valid)
        return deps, dep_at

    def _catch_targets(self, steps: dict[str, Step]) -> dict[str, str | None]:
        catch_of: dict[str, str | None] = {}
        for s, step in steps.items():
            i = self.index[s]
            if step.catch is not None and step.catch not in steps:
                self.add(i, f"$.steps[{i}].catch", f"unknown step {step.catch!r}")
                catch_of[s] = None
            else:
                catch_of[s] = step.catch
        return catch_of

    def _catch_rules(
        self,
        steps: dict[str, Step],
        catch_of: dict[str, str | None],
        branch: dict[str, frozenset[str]],
    ) -> None:
        for s, c in catch_of.items():
            i = self.index[s]
            if c == s:
                self.add(i, f"$.steps[{i}].catch", "a step cannot catch into itself")
            elif c is not None and s in branch[c]:
                self.add(
                    i,
                    f"$.steps[{i}].catch",
                    f"a step cannot catch into itself: {s!r} is in the catch branch of {c!r}",
                )
        for c in branch:
            if steps[c].depends_on:
                i = self.index[c]
                routed = ", ".join(repr(s) for s, t in catch_of.items() if t == c)
                self.add(
                    i,
                    f"$.steps[{i}].depends_on",
                    f"a catch step (the catch of {routed}) cannot have depends_on of its own",
                )

    def _report_cycles(
        self,
        cycles: list[list[str]],
        deps: dict[str, tuple[str, ...]],
        dep_at: dict[tuple[str, str], int],
        catch_of: dict[str, str | None],
    ) -> None:
        for cycle in cycles:
            start, nxt = cycle[0], cycle[1 % len(cycle)]
            i = self.index[start]
            if nxt in deps[start]:
                path = f"$.steps[{i}].depends_on[{dep_at[start, nxt]}]"
            else:
                path = f"$.steps[{self.index[nxt]}].catch"
            through_catch = any(
                catch_of[b] == a for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)
            )
            label = "cycle through catch" if through_catch else "cycle"
            self.add(i, path, f"{label}: {_cycle_text(cycle)}")

    def _references(
        self,
        i: int,
        step: Step,
        placeholders: list[Placeholder],
        ancestors: frozenset[str] | None,
        in_branch: frozenset[str],
        at: str | None = None,
    ) -> None:
        """Placeholders that name other steps or the failure; ``ancestors`` None skips them.

        ``at`` is the path of a field that is one placeholder (``for_each``), else the
        placeholders are the template's.
        """
        base = f"$.steps[{i}].{_template_field(step)}"
        for placeholder in placeholders:
            path = at or base + placeholder.location[1:]
            other = placeholder.step_id
            if other is not None and other not in self.index:
                self.add(i, path, f"{{{{{placeholder.text}}}}}: unknown step {other!r}")
            elif other is not None and ancestors is not None and other not in ancestors:
                self.add(
                    i,
                    path,
                    f"{{{{{placeholder.text}}}}}: {other!r} is not an ancestor of {step.id!r},"
                    " so its output may not exist when it runs",
                )
            elif placeholder.root == "failure" and step.id not in in_branch:
                self.add(
                    i,
                    path,
                    f"{{{{{placeholder.text}}}}}: failure.* is only bound in a catch branch,"
                    f" and {step.id!r} is not in one",
                )


def _template_field(step: Step) -> str:
    """Where a step's template is, as a JSON path from the step."""
    return "sub_workflow.input" if step.sub_workflow is not None else "payload_template"


def _distinct_inputs(groups: Iterable[list[Placeholder]]) -> list[Placeholder]:
    """The ``input.*`` placeholders, one per distinct path, first seen first."""
    seen: dict[str, Placeholder] = {}
    for group in groups:
        for placeholder in group:
            if placeholder.root == "input":
                seen.setdefault(placeholder.text, placeholder)
    return list(seen.values())


def _problem_key(item: tuple[int, int, Problem]) -> tuple[int, int]:
    return item[0], item[1]
