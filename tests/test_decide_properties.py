"""Property test of ``decide``: random DAGs with catch steps and ``when`` conditions, driven
by random messages.

It checks the scheduling, attempt and quiescence rules of DESIGN §4 after every transition,
and that replaying the event log always rebuilds the same state.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from flowyard.errors import Conflict, Invalid
from flowyard.workflows.blueprint import BlueprintSpec, Graph, StepKind, check_blueprint
from flowyard.workflows.children import MAX_DEPTH
from flowyard.workflows.state import (
    ACTIVE,
    CANCELLABLE,
    CONDITION_FALSE,
    FINISHED,
    ITEM_ACTIVE,
    OPEN,
    CancelChild,
    CancelExecution,
    ChildFinished,
    ChildStarted,
    DeadlinePassed,
    Effect,
    Event,
    ExecutionState,
    ExecutionStatus,
    ItemState,
    ItemStatus,
    JobFinished,
    JobStarted,
    Message,
    PauseExecution,
    QueueJob,
    ResumeExecution,
    SendSignal,
    SignalTimedOut,
    Start,
    StartChild,
    StepError,
    StepState,
    StepStatus,
    WithdrawJob,
)
from tests.decide_support import Sim, item_job_id, job_id, step, waits

TIMED_OUT = StepError("timed_out", "the execution ran past its max_duration_sec")
OUTPUTS = [{"v": 1}, {"v": "x"}, {}, 3, None]
"""Step outputs; ``{}``, ``3`` and ``None`` make ``{{steps.X.output.v}}`` a template_error."""
INPUT = {"go": True, "stop": False}
WHENS = ["true", "false", "input.go", "input.stop", "input.missing", "'not a boolean'"]
"""``when`` of any step; ones naming a dependency are added per step (see ``blueprints``)."""
SIGNALS = ["x", "y"]
"""The signal names wait_for_signal steps wait for."""


# ----------------------------------------------------------------------------- blueprints


@st.composite
def blueprints(draw: st.DrawFn) -> list[dict[str, Any]]:
    """2-8 steps: depends_on point backwards, catch points forwards to a step without deps.

    Catch targets come later than the steps routing to them and depends_on earlier, so the
    graph of waits is acyclic and no step is in its own catch branch.
    """
    n = draw(st.integers(2, 8))
    ids = [f"s{i}" for i in range(n)]
    candidate = [i > 0 and draw(st.integers(0, 2)) == 0 for i in range(n)]
    bodies: list[dict[str, Any]] = []
    for i, sid in enumerate(ids):
        deps: list[str] = []
        if not candidate[i] and i > 0:
            picks = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True))
            deps = [ids[j] for j in sorted(picks)]
        later = [ids[j] for j in range(i + 1, n) if candidate[j]]
        catch = draw(st.sampled_from([None, *later, *later])) if later else None
        bodies.append(step(sid, *deps, catch=catch))
    targets = {b["catch"] for b in bodies if "catch" in b}
    for i, body in enumerate(bodies):
        kind = draw(st.integers(0, 5)) if body["id"] not in targets else -1
        if kind == 0:
            name = draw(st.sampled_from(SIGNALS))
            timeout = draw(st.sampled_from([None, 30]))
            deps = body.get("depends_on", [])
            bodies[i] = waits(
                body["id"], *deps, name=name, timeout=timeout, catch=body.get("catch")
            )
        elif kind == 1:
            # a for_each step over the input's list (0-4 items), 1-3 at once
            body["for_each"] = "{{input.xs}}"
            body["max_concurrency"] = draw(st.integers(1, 3))
            body["payload_template"] = {"x": "{{item}}", "i": "{{item_index}}"}
            if draw(st.booleans()):  # one child execution per item instead of one job
                del body["job_trigger"]
                template = body.pop("payload_template")
                body["sub_workflow"] = {"blueprint_id": "wf_child", "input": template}
        elif body["id"] in targets:
            body["payload_template"] = {
                "f": "{{failure.step_id}}",
                "n": "{{failure.attempt}}",
                "i": "{{failure.item_index}}",
            }
        elif body.get("depends_on") and draw(st.booleans()):
            dep = body["depends_on"][0]
            body["payload_template"] = {"v": f"{{{{steps.{dep}.output.v}}}}", "i": i}
        if draw(st.integers(0, 2)) == 0:
            named = [
                w
                for dep in body.get("depends_on", [])[:1]
                for w in (
                    f"steps.{dep}.output.v == 1",  # {"v": 1}: true, {"v": "x"}: false, else error
                    f"steps.{dep}.status == 'completed'",  # false after a condition skip
                )
            ]
            body["when"] = draw(st.sampled_from(WHENS + named))
        if "job_trigger" in body and "for_each" not in body and draw(st.integers(0, 3)) == 0:
            # a sub_workflow step: its template is the input
            template = body.pop("payload_template", None)
            del body["job_trigger"]
            body["sub_workflow"] = {"blueprint_id": "wf_child", "input": template}
    return bodies


def build(bodies: list[dict[str, Any]]) -> Graph:
    spec = msgspec.convert({"name": "bp", "steps": bodies, "max_duration_sec": 60}, BlueprintSpec)
    g, problems = check_blueprint(spec)
    assert problems == [], problems  # the strategy only makes valid blueprints
    return g


# ----------------------------------------------------------------------------- actions

outcomes = st.sampled_from(["completed", "completed", "failed", "cancelled"])
finishes = st.tuples(
    st.just("finish"), st.integers(0, 7), outcomes, st.integers(0, len(OUTPUTS) - 1)
)
resumes = st.tuples(
    st.just("resume"),
    st.one_of(st.none(), st.integers(0, 11)),  # 0-7 aim at a resumable step, 8-11 at any
    st.booleans(),
    st.integers(0, len(OUTPUTS) - 1),
)
actions = st.lists(
    st.one_of(
        finishes,
        finishes,
        finishes,
        resumes,
        resumes,
        st.tuples(st.just("started"), st.integers(0, 7)),
        st.tuples(st.just("signal"), st.sampled_from(SIGNALS), st.integers(0, len(OUTPUTS) - 1)),
        st.tuples(st.just("timeout"), st.integers(0, 7), st.booleans()),
        st.tuples(st.just("child_started"), st.integers(0, 7)),
        st.tuples(st.just("stale"), st.integers(0, 7), st.sampled_from(["completed", "failed"])),
        st.one_of(
            st.tuples(st.just("cancel")),
            st.tuples(st.just("pause")),
            st.tuples(st.just("deadline"), st.booleans()),
        ),
    ),
    max_size=40,
)


# ----------------------------------------------------------------------------- the model


def out(state: ExecutionState) -> list[str]:
    """Steps with something out: a queued, running or waiting step, or a map with items out."""
    return [
        sid
        for sid, s in state.steps.items()
        if (s.items.active if s.items is not None else s.status in OPEN)
    ]


@dataclass
class Checker:
    """Drives one execution and checks the rules after every transition."""

    sim: Sim

    def __post_init__(self) -> None:
        self.graph = self.sim.graph
        self.attempts: dict[str, list[int]] = {s: [] for s in self.graph.steps}
        self.item_jobs: set[tuple[str, int, int]] = set()
        self.item_children: set[tuple[str, int, int]] = set()

    def is_child(self, sid: str) -> bool:
        return self.graph.steps[sid].kind is StepKind.SUB_WORKFLOW

    def ended(
        self, sid: str, s: StepState, outcome: str, output: Any, error: str | None, attempts: int
    ) -> Message:
        """The end of a step's current attempt: its job's, or its child's."""
        if not self.is_child(sid):
            return JobFinished(
                sid, s.attempt, job_id(sid, s.attempt), outcome, output, error, attempts
            )
        child = s.child_execution_id or f"wfexec_{sid}_{s.attempt}"
        status = "completed" if outcome == "completed" else outcome
        failure = None if error is None else StepError("x", error)
        return ChildFinished(sid, s.attempt, child, status, output, failure)

    def send(self, message: Message) -> bool:
        """Apply ``message``; False when it was refused (and then nothing changed)."""
        before = self.sim.state
        items = {sid: list(items) for sid, items in self.sim.items.items()}
        try:
            effects, events = self.sim.send(message)
        except (Conflict, Invalid):
            assert self.sim.state is before
            return False
        self.check_items(items, effects)
        self.check(before_steps=dict(before.steps), effects=effects, events=events)
        return True

    def check_items(self, before: dict[str, list[ItemState]], effects: list[Effect]) -> None:
        """Item jobs: one per item attempt, only for a running map, never more than its
        max_concurrency out; counts match the items; a completed map's output is theirs."""
        state = self.sim.state
        for effect in effects:
            if isinstance(effect, QueueJob) and effect.item_index is not None:
                key = (effect.step_id, effect.item_index, effect.attempt)
                assert key not in self.item_jobs
                self.item_jobs.add(key)
                assert state.status is ExecutionStatus.RUNNING
            elif isinstance(effect, WithdrawJob) and effect.item_index is not None:
                was = before[effect.step_id][effect.item_index]
                assert was.status in ITEM_ACTIVE and was.job_id == effect.job_id
            elif isinstance(effect, StartChild) and effect.item_index is not None:
                # one child per item attempt, never deeper than the limit
                key = (effect.step_id, effect.item_index, effect.attempt)
                assert key not in self.item_children
                self.item_children.add(key)
                assert state.status is ExecutionStatus.RUNNING and state.depth < MAX_DEPTH
                assert self.is_child(effect.step_id)
                item = self.sim.items[effect.step_id][effect.item_index]
                assert item.status is ItemStatus.QUEUED and item.attempt == effect.attempt
            elif isinstance(effect, CancelChild) and effect.item_index is not None:
                was = before[effect.step_id][effect.item_index]
                assert was.status in ITEM_ACTIVE and was.attempt == effect.attempt
                assert was.child_execution_id == effect.child_execution_id
        for sid, items in self.sim.items.items():
            s = state.steps[sid]
            progress = s.items
            assert progress is not None and progress.total == len(items)
            by_status = Counter(i.status for i in items)
            assert progress.completed == by_status[ItemStatus.COMPLETED]
            assert progress.failed == by_status[ItemStatus.FAILED]
            assert progress.running == by_status[ItemStatus.RUNNING]
            assert progress.queued == by_status[ItemStatus.QUEUED]
            assert progress.cancelled == by_status[ItemStatus.CANCELLED]
            assert progress.active <= self.graph.steps[sid].concurrency
            if progress.active:
                assert s.status is StepStatus.RUNNING
            if s.status is StepStatus.COMPLETED and progress.completed == progress.total:
                overridden = any(
                    e.type == "output_overridden" and e.step_id == sid for e in self.sim.log
                )
                assert overridden or s.output == [i.output for i in items]

    def signal(self, name: str, data: Any) -> bool:
        """Send a signal; it goes to the oldest step waiting for ``name``, or is kept."""
        state = self.sim.state
        waiting = [
            (state.steps[sid].started_at, i, sid)
            for i, sid in enumerate(self.graph.order)
            if state.steps[sid].status is StepStatus.WAITING and state.steps[sid].signal == name
        ]
        signal_id = f"sig_{state.signal_seq + 1}"
        ok = self.send(SendSignal(signal_id, name, data))
        assert ok == (state.status in (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED))
        if ok:
            after = self.sim.state
            if waiting:
                taker = min(waiting)[2]  # type: ignore[type-var]
                assert after.steps[taker].signal_id == signal_id
                assert after.steps[taker].output == data
            else:
                assert after.signals[-1].id == signal_id
        return ok

    def check(
        self, *, before_steps: dict[str, Any], effects: list[Effect], events: list[Event]
    ) -> None:
        state = self.sim.state
        g = self.graph
        for effect in effects:
            if isinstance(effect, (StartChild, QueueJob)) and effect.item_index is None:
                sid = effect.step_id
                assert isinstance(effect, StartChild) == self.is_child(sid)
                assert state.depth < MAX_DEPTH or not self.is_child(sid)
                assert state.status is ExecutionStatus.RUNNING
                assert all(state.steps[d].done for d in g.deps[sid])
                if sid in g.catch_steps:
                    failure = state.steps[sid].failure
                    assert failure is not None and failure.step_id in g.routers[sid]
                    assert state.steps[failure.step_id].caught_by == sid or any(
                        e.type == "caught" and e.step_id == failure.step_id for e in self.sim.log
                    )
                seen = self.attempts[sid]
                assert effect.attempt == (seen[-1] if seen else 0) + 1
                seen.append(effect.attempt)
            elif isinstance(effect, CancelChild) and effect.item_index is None:
                was = before_steps[effect.step_id]
                assert self.is_child(effect.step_id) and was.status is StepStatus.RUNNING
                assert effect.attempt == was.attempt
                assert effect.child_execution_id == was.child_execution_id
            elif isinstance(effect, WithdrawJob) and effect.item_index is None:
                was = before_steps[effect.step_id]
                assert was.status in ACTIVE
                assert effect.job_id == was.job_id == job_id(effect.step_id, was.attempt)
        for event in events:
            if event.type == "step_waiting":
                assert event.step_id is not None
                seen = self.attempts[event.step_id]
                assert event.data["attempt"] == (seen[-1] if seen else 0) + 1
                seen.append(event.data["attempt"])
        for sid, s in state.steps.items():
            if g.steps[sid].for_each is None:
                assert s.attempt == (self.attempts[sid][-1] if self.attempts[sid] else 0)
            if s.skip_reason is not None:  # only a when skips with a reason, and for good
                assert s.skip_reason == CONDITION_FALSE and sid in g.conditions
                assert s.status is StepStatus.SKIPPED and s.output is None
                assert all(state.steps[d].done for d in g.deps[sid])
                assert before_steps[sid].skip_reason in (None, CONDITION_FALSE)
            if s.error is not None and s.error.code == "condition_error":
                assert sid in g.conditions
            if self.is_child(sid):
                assert s.job_id is None and s.status is not StepStatus.QUEUED
                if s.status is StepStatus.FAILED and state.depth >= MAX_DEPTH:
                    # it never starts: unless its when failed first, it fails for the depth
                    assert s.error is not None
                    assert s.error.code in ("sub_workflow_depth", "condition_error")
            else:
                assert s.child_execution_id is None
            if s.caught_by is not None:
                assert s.status is StepStatus.FAILED and s.caught_by == g.catch_of[sid]
                # a caught failure cuts its descendants off until it is retried or overridden
                assert all(state.steps[d].status is StepStatus.SKIPPED for d in g.descendants[sid])
            elif s.status is StepStatus.FAILED:
                below = {state.steps[d].status for d in g.descendants[sid]}
                assert below <= {StepStatus.PENDING, StepStatus.SKIPPED}
        if state.status is ExecutionStatus.RUNNING:
            # a running execution with nothing out and nothing waiting has settled
            assert out(state)
        # a kept signal is one that no waiting step could take
        waiting_for = {s.signal for s in state.steps.values() if s.status is StepStatus.WAITING}
        assert not waiting_for & {signal.name for signal in state.signals}
        self.check_status()

    def check_status(self) -> None:
        """The execution status follows DESIGN §4 once it is quiescent."""
        state = self.sim.state
        g = self.graph
        steps = state.steps
        status = {sid: s.status for sid, s in steps.items()}
        uncaught = [
            sid for sid in g.order if status[sid] is StepStatus.FAILED and not steps[sid].caught_by
        ]
        caught = [sid for sid, s in steps.items() if s.status is StepStatus.FAILED and s.caught_by]
        if state.status in FINISHED:
            assert not uncaught
            assert all(st_ in ("completed", "failed", "skipped") for st_ in status.values())
            outside = [sid for sid in g.steps if sid not in g.in_catch_branch]
            every_outside_completed = all(steps[sid].done for sid in outside)
            if state.status is ExecutionStatus.COMPLETED:
                assert every_outside_completed and not caught
            else:
                assert caught
            for c in g.catch_steps:
                activated = steps[c].failure is not None
                for member in g.branch[c]:
                    if not activated:
                        assert status[member] == "skipped"
                    else:
                        assert status[member] in ("completed", "skipped", "failed")
        elif state.status is ExecutionStatus.FAILED and state.error != TIMED_OUT:
            # failed at quiescence: by the first uncaught failure
            assert uncaught
            assert state.error == steps[uncaught[0]].error
            assert not any(s.status in OPEN for s in steps.values())
        if state.status is not ExecutionStatus.RUNNING:
            assert not any(s.status is StepStatus.QUEUED for s in steps.values()) or (
                state.status is ExecutionStatus.PAUSED
            )

    # ------------------------------------------------------------------ actions

    def pick(self, statuses: frozenset[StepStatus] | set[StepStatus], n: int) -> str | None:
        found = [sid for sid in self.graph.order if self.sim.state.steps[sid].status in statuses]
        return found[n % len(found)] if found else None

    def act(self, action: tuple[Any, ...]) -> None:
        state = self.sim.state
        match action:
            case ("finish", n, outcome, out):
                sid = self.pick(ACTIVE, n)
                if sid is not None and self.graph.steps[sid].for_each is not None:
                    self.finish_item(sid, n, outcome, OUTPUTS[out])
                elif sid is not None:
                    s = state.steps[sid]
                    output = OUTPUTS[out] if outcome == "completed" else None
                    error = None if outcome == "completed" else f"{outcome} #{s.attempt}"
                    self.send(self.ended(sid, s, outcome, output, error, 1 + n % 3))
            case ("child_started", n):
                sid = self.pick({StepStatus.RUNNING}, n)
                if sid is not None and self.is_child(sid) and self.graph.steps[sid].for_each:
                    self.item_started(sid, n)
                elif sid is not None and self.is_child(sid):
                    s = state.steps[sid]
                    child = f"wfexec_{sid}_{s.attempt}"
                    assert self.send(ChildStarted(sid, s.attempt, child))
                    assert self.sim.state.steps[sid].child_execution_id == child
            case ("signal", name, out):
                self.signal(name, OUTPUTS[out])
            case ("timeout", n, stale):
                sid = self.pick({StepStatus.WAITING}, n)
                if sid is not None:
                    s = state.steps[sid]
                    attempt = s.attempt - 1 if stale else s.attempt
                    self.send(SignalTimedOut(sid, attempt))
                    if stale:
                        assert self.sim.state == state
                    else:
                        after = self.sim.state.steps[sid]
                        assert after.status is StepStatus.FAILED
                        assert after.error is not None and after.error.code == "signal_timeout"
            case ("started", n):
                sid = self.pick({StepStatus.QUEUED, StepStatus.RUNNING}, n)
                if sid is not None and self.graph.steps[sid].for_each and self.is_child(sid):
                    self.item_started(sid, n)
                    return
                if sid is not None and self.graph.steps[sid].for_each is not None:
                    queued = [i for i in self.sim.items[sid] if i.status is ItemStatus.QUEUED]
                    if queued:
                        item = queued[n % len(queued)]
                        message = JobStarted(sid, item.attempt, item.job_id or "", item.index)
                        assert self.send(message)
                    return
                sid = self.pick({StepStatus.QUEUED}, n)
                if sid is not None:
                    s = state.steps[sid]
                    assert self.send(JobStarted(sid, s.attempt, job_id(sid, s.attempt)))
            case ("stale", n, outcome):
                sid = self.graph.order[n % len(self.graph.order)]
                s = state.steps[sid]
                if self.graph.steps[sid].for_each is not None:
                    for item in self.sim.items.get(sid, []):
                        jid = item_job_id(sid, item.index, item.attempt)
                        late: Message = JobFinished(
                            sid, item.attempt - 1, jid, outcome, 0, "x", 1, item.index
                        )
                        if self.is_child(sid):
                            late = ChildFinished(
                                sid, item.attempt - 1, "wfexec_old", outcome, 0, None, item.index
                            )
                        assert self.sim.send(late) == ([], [])
                    assert self.sim.state == state
                    return
                attempt = s.attempt if s.status not in ACTIVE else s.attempt - 1
                stale: Message = JobFinished(
                    sid, attempt, job_id(sid, attempt), outcome, {"v": 0}, "x"
                )
                if self.is_child(sid):
                    stale = ChildFinished(sid, attempt, "wfexec_old", outcome, {"v": 0})
                assert self.sim.send(stale) == ([], [])
                assert self.sim.state == state
            case ("cancel",):
                assert self.send(CancelExecution()) == (state.status in CANCELLABLE)
            case ("pause",):
                assert self.send(PauseExecution()) == (state.status is ExecutionStatus.RUNNING)
            case ("resume", None, override, out):
                ok = self.send(ResumeExecution(override=override, output=OUTPUTS[out]))
                expected = not override and state.status not in FINISHED
                assert ok == (expected and state.status is not ExecutionStatus.RUNNING)
            case ("resume", n, override, out):
                allowed = {StepStatus.FAILED, StepStatus.CANCELLED}
                if override:
                    allowed |= OPEN
                sid = self.pick(allowed, n) if n < 8 else None
                sid = sid or self.graph.order[n % len(self.graph.order)]
                resume = ResumeExecution(step_id=sid, override=override, output=OUTPUTS[out])
                expected = state.status not in FINISHED and state.steps[sid].status in allowed
                assert self.send(resume) == expected
                if expected:
                    assert self.sim.state.status is not ExecutionStatus.PAUSED
            case ("deadline", stale):
                at = state.deadline_at - 1 if stale else state.deadline_at
                self.send(DeadlinePassed(at))
                live = not stale and state.status in (
                    ExecutionStatus.RUNNING,
                    ExecutionStatus.PAUSED,
                )
                if live:
                    assert self.sim.state.status is ExecutionStatus.FAILED
                    assert self.sim.state.error is not None
                    assert self.sim.state.error.code == "timed_out"
                else:
                    assert self.sim.state == state
            case _:
                raise AssertionError(action)

    def item_started(self, sid: str, n: int) -> None:
        """The child of a queued item of map ``sid`` exists."""
        queued = [i for i in self.sim.items[sid] if i.status is ItemStatus.QUEUED]
        if queued:
            item = queued[n % len(queued)]
            child = f"wfexec_{sid}_{item.index}_{item.attempt}"
            assert self.send(ChildStarted(sid, item.attempt, child, item.index))
            after = self.sim.items[sid][item.index]
            assert after.status is ItemStatus.RUNNING and after.child_execution_id == child

    def finish_item(self, sid: str, n: int, outcome: str, output: Any) -> bool:
        """An active item of map ``sid`` ends (its job, or its child); False when it has
        none out."""
        out = [i for i in self.sim.items.get(sid, []) if i.status in ITEM_ACTIVE]
        if not out:
            return False
        item = out[n % len(out)]
        jid = item_job_id(sid, item.index, item.attempt)
        error = None if outcome == "completed" else f"{outcome} #{item.attempt}"
        value = output if outcome == "completed" else None
        message: Message = JobFinished(
            sid, item.attempt, jid, outcome, value, error, 1 + n % 3, item.index
        )
        if self.is_child(sid):
            child = item.child_execution_id or f"wfexec_{sid}_{item.index}_{item.attempt}"
            failure = None if error is None else StepError("x", error)
            message = ChildFinished(sid, item.attempt, child, outcome, value, failure, item.index)
        assert self.send(message)
        after = self.sim.items[sid][item.index]
        if self.is_child(sid):
            assert after.child_execution_id == child
            if outcome != "completed":
                assert after.error is not None and after.error.code == "sub_workflow_failed"
        return True

    def drain(self, outcomes: list[str]) -> None:
        """Resume if needed and finish every job until the execution is quiescent.

        Jobs end with ``outcomes`` first, then all complete (so it ends in a few rounds).
        """
        outcomes = list(outcomes)
        for turn in range(len(outcomes) + 2 * len(self.graph.order) + 6):
            state = self.sim.state
            if state.status in FINISHED:
                return
            if not out(state):
                assert state.status is not ExecutionStatus.RUNNING
                # alternate: retry one failed or cancelled step, then resume everything
                retry = self.pick({StepStatus.FAILED, StepStatus.CANCELLED}, 0)
                step_id = retry if turn % 2 == 0 else None
                assert self.send(ResumeExecution(step_id=step_id, reason="drain"))
            for _ in range(12 * len(self.graph.order)):
                sid = next(iter(out(self.sim.state)), None)
                if sid is None:
                    break
                s = self.sim.state.steps[sid]
                if s.status is StepStatus.WAITING:
                    assert s.signal is not None
                    assert self.signal(s.signal, {"v": 2})
                    continue
                outcome = outcomes.pop(0) if outcomes else "completed"
                output = {"v": 2} if outcome == "completed" else None
                if self.graph.steps[sid].for_each is not None:
                    assert self.finish_item(sid, 0, outcome, output)
                    continue
                self.send(self.ended(sid, s, outcome, output, None, 1))
            assert not out(self.sim.state)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    bodies=blueprints(),
    script=actions,
    ending=st.lists(outcomes, max_size=8),
    xs=st.lists(st.integers(0, 9), max_size=4),
    depth=st.sampled_from([0, 0, 0, MAX_DEPTH]),
)
def test_random_executions_follow_the_rules_and_replay(
    bodies: list[dict[str, Any]],
    script: list[tuple[Any, ...]],
    ending: list[str],
    xs: list[int],
    depth: int,
) -> None:
    g = build(bodies)
    sim = Sim(g, input_data={**INPUT, "xs": xs}, check_replay=False, depth=depth)
    checker = Checker(sim)
    assert checker.send(Start())
    started = checker.sim.state.steps
    assert set(g.starts) == {s for s in g.order if not g.deps[s]} - g.catch_steps
    if depth < MAX_DEPTH:  # every root started (a child of depth 5 fails without starting)
        for sid in g.starts:  # or was decided by its when at once
            if sid not in g.conditions:
                assert started[sid].attempt == 1
            else:
                assert started[sid].status is not StepStatus.PENDING
    for action in script:
        checker.act(action)
        checker.sim.assert_replays()
    checker.drain(ending)
    state = checker.sim.state
    # quiescent: nothing out, and only a failed execution leaves steps pending
    assert not any(s.status in OPEN for s in state.steps.values())
    assert state.status is not ExecutionStatus.RUNNING
    if state.status is not ExecutionStatus.FAILED:
        assert state.status in FINISHED
    checker.sim.assert_replays()


def test_refusals_change_nothing() -> None:
    """The harness itself: a refused command raises and leaves the state alone."""
    checker = Checker(Sim(build([step("a"), step("b", "a")])))
    assert checker.send(Start())
    before = checker.sim.state
    assert not checker.send(ResumeExecution())  # running: 409
    assert not checker.send(ResumeExecution(step_id="zz"))  # unknown: 400
    assert checker.sim.state is before and len(checker.sim.log) == 2
