"""A pure harness around ``decide``: it plays the shell's part without any I/O.

Like ``actors/workflows.py``, it fills in the job id of every queued step (``job_<step>_<n>``),
tags the ``step_queued`` event with it, counts events into ``event_seq`` and keeps the log, so
that every transition can be checked against ``replay(initial(start), log)``.
"""

from typing import Any

import msgspec

from flowyard.actors.execution import decide
from flowyard.workflows.blueprint import BlueprintSpec, Graph, build_graph
from flowyard.workflows.replay import initial, replay
from flowyard.workflows.state import (
    Effect,
    Event,
    ExecutionState,
    ExecutionStatus,
    ItemState,
    JobFinished,
    JobStarted,
    Message,
    PutItems,
    QueueJob,
    StepState,
    StepStatus,
)

replace = msgspec.structs.replace

T0 = 1_000_000
MAX_MS = 60_000
HANDLER = "https://handlers.example/run"


def step(
    id: str, *deps: str, catch: str | None = None, template: Any = None, when: str | None = None
) -> dict[str, Any]:
    """A blueprint step body (a push-queue job)."""
    body: dict[str, Any] = {
        "id": id,
        "job_trigger": {"trigger": {"type": "queue", "queue": "q"}, "handler": HANDLER},
    }
    if deps:
        body["depends_on"] = list(deps)
    if catch is not None:
        body["catch"] = catch
    if template is not None:
        body["payload_template"] = template
    if when is not None:
        body["when"] = when
    return body


def waits(
    id: str, *deps: str, name: str = "go", timeout: int | None = None, catch: str | None = None
) -> dict[str, Any]:
    """A blueprint step body that waits for the signal ``name``."""
    wait: dict[str, Any] = {"name": name}
    if timeout is not None:
        wait["timeout_sec"] = timeout
    body: dict[str, Any] = {"id": id, "wait_for_signal": wait}
    if deps:
        body["depends_on"] = list(deps)
    if catch is not None:
        body["catch"] = catch
    return body


def graph(*steps: dict[str, Any]) -> Graph:
    """The validated graph of a blueprint made of ``steps``."""
    spec = msgspec.convert(
        {"name": "bp", "steps": list(steps), "max_duration_sec": MAX_MS // 1000}, BlueprintSpec
    )
    return build_graph(spec)


def job_id(step_id: str, attempt: int) -> str:
    """The fake job id the harness gives to one step attempt."""
    return f"job_{step_id}_{attempt}"


def item_job_id(step_id: str, index: int, attempt: int) -> str:
    """The fake job id the harness gives to one attempt of a for_each item."""
    return f"job_{step_id}_{index}_{attempt}"


def queued(step_id: str, attempt: int, payload: Any) -> QueueJob:
    """The effect that queues a step's job with this rendered payload."""
    return QueueJob(step_id, attempt, msgspec.Raw(msgspec.json.encode(payload)))


def kinds(events: list[Event]) -> list[tuple[str, str | None]]:
    """``(type, step_id)`` of each event, in order."""
    return [(e.type, e.step_id) for e in events]


def as_data(state: ExecutionState) -> Any:
    """The state as plain data (for equality with a replayed state)."""
    return msgspec.to_builtins(state)


class Sim:
    """One execution driven through ``decide``, with a fake shell and a clock."""

    def __init__(
        self, g: Graph, *, input_data: Any = None, check_replay: bool = True, depth: int = 0
    ) -> None:
        self.graph = g
        self.start = ExecutionState(
            id="wfexec_1",
            project_id="proj_1",
            blueprint_id="wf_1",
            input_data={} if input_data is None else input_data,
            started_at=T0,
            deadline_at=T0 + MAX_MS,
            max_duration_ms=MAX_MS,
            steps={sid: StepState(step_id=sid) for sid in g.steps},
            depth=depth,
        )
        self.state = self.start
        self.items: dict[str, list[ItemState]] = {}
        self.log: list[Event] = []
        self.now = T0
        self.check_replay = check_replay

    # ------------------------------------------------------------------ driving

    def send(self, message: Message, *, dt: int = 1) -> tuple[list[Effect], list[Event]]:
        """Apply one message (exceptions leave the state as it was)."""
        self.now += dt
        new, effects, events = decide(self.state, message, self.now, self.graph, self.items)
        item_jobs = {
            (e.step_id, e.item_index): item_job_id(e.step_id, e.item_index, e.attempt)
            for e in effects
            if isinstance(e, QueueJob) and e.item_index is not None
        }
        events = [
            replace(e, data={**e.data, "job_id": item_jobs[e.step_id, e.data["index"]]})
            if e.type == "item_queued" and (e.step_id, e.data["index"]) in item_jobs
            else e
            for e in events
        ]
        for effect in effects:
            if isinstance(effect, PutItems):
                items = self.items.setdefault(effect.step_id, [])
                for item in effect.items:
                    jid = item_jobs.get((effect.step_id, item.index))
                    item = replace(item, job_id=jid) if jid else item
                    if item.index < len(items):
                        items[item.index] = item
                    else:
                        items.append(item)
            if isinstance(effect, QueueJob) and effect.item_index is None:
                jid = job_id(effect.step_id, effect.attempt)
                steps = dict(new.steps)
                steps[effect.step_id] = replace(steps[effect.step_id], job_id=jid)
                new = replace(new, steps=steps)
                events = [
                    replace(e, data={**e.data, "job_id": jid})
                    if e.type == "step_queued" and e.step_id == effect.step_id
                    else e
                    for e in events
                ]
        self.state = replace(new, event_seq=self.state.event_seq + len(events))
        self.log += events
        if self.check_replay:
            self.assert_replays()
        return effects, events

    def started(self, step_id: str) -> tuple[list[Effect], list[Event]]:
        """The current attempt's job was claimed."""
        s = self.step(step_id)
        return self.send(JobStarted(step_id, s.attempt, s.job_id or "job_none"))

    def finish(
        self,
        step_id: str,
        outcome: str = "completed",
        output: Any = None,
        error: str | None = None,
        *,
        attempt: int | None = None,
    ) -> tuple[list[Effect], list[Event]]:
        """The job of ``step_id`` (current attempt unless given) ended with ``outcome``."""
        s = self.step(step_id)
        n = s.attempt if attempt is None else attempt
        return self.send(JobFinished(step_id, n, job_id(step_id, n), outcome, output, error))

    # ------------------------------------------------------------------ reading

    def step(self, step_id: str) -> StepState:
        return self.state.steps[step_id]

    def status_of(self, step_id: str) -> StepStatus:
        return self.state.steps[step_id].status

    def statuses(self) -> dict[str, str]:
        return {sid: s.status.value for sid, s in self.state.steps.items()}

    @property
    def status(self) -> ExecutionStatus:
        return self.state.status

    def item(self, step_id: str, index: int) -> ItemState:
        return self.items[step_id][index]

    def item_started(self, step_id: str, index: int) -> tuple[list[Effect], list[Event]]:
        """The current job of an item was claimed."""
        item = self.item(step_id, index)
        return self.send(JobStarted(step_id, item.attempt, item.job_id or "job_none", index))

    def item_finished(
        self,
        step_id: str,
        index: int,
        outcome: str = "completed",
        output: Any = None,
        error: str | None = None,
        *,
        attempt: int | None = None,
    ) -> tuple[list[Effect], list[Event]]:
        """The job of an item (current attempt unless given) ended with ``outcome``."""
        n = self.item(step_id, index).attempt if attempt is None else attempt
        jid = item_job_id(step_id, index, n)
        return self.send(JobFinished(step_id, n, jid, outcome, output, error, 1, index))

    def assert_replays(self) -> None:
        items: dict[str, list[ItemState]] = {}
        replayed = replay(initial(self.start), self.log, items)
        assert as_data(replayed) == as_data(self.state)
        assert msgspec.to_builtins(items) == msgspec.to_builtins(self.items)
