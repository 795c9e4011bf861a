"""``when`` conditions end to end over real HTTP (DESIGN §8): an if/else that joins, a
condition on a step's output, a ``condition_error`` caught by a catch step, and the 400 at
create. Every job is done by a real pull worker (claim and ack over HTTP)."""

from typing import Any

import msgspec
import pytest

from flowyard.http import api_types as api
from flowyard.workflows.replay import initial, replay
from flowyard.workflows.state import Event, ExecutionState, StepState
from tests.conftest import Service
from tests.workflow_support import (
    ack,
    claim_one,
    events,
    execution,
    pull_step,
    queue_jobs,
    start,
    statuses,
    step_of,
    wait_status,
    wait_step,
    workers,
)


def routed(amount: Any) -> list[dict[str, Any]]:
    """check -> (manual if the amount is over 100, else auto) -> record, joining both."""
    return [
        pull_step("check", "w-check", {"amount": "{{input.amount}}"}),
        pull_step("manual", "w-manual", {"n": "{{steps.check.output.amount}}"}, ["check"])
        | {"when": "steps.check.output.amount > 100.0"},
        pull_step("auto", "w-auto", {"n": "{{steps.check.output.amount}}"}, ["check"])
        | {"when": "!(steps.check.output.amount > 100.0)"},
        pull_step(
            "record",
            "w-record",
            {"manual": "{{steps.manual.output}}", "auto": "{{steps.auto.output}}"},
            ["manual", "auto"],
        )
        | {"when": "steps.manual.status == 'completed' || steps.auto.status == 'completed'"},
    ]


@pytest.mark.parametrize(
    ("amount", "taken", "other"), [(250, "manual", "auto"), (40, "auto", "manual")]
)
async def test_if_else_branches_join(service: Service, amount: int, taken: str, other: str) -> None:
    client = service.client
    recorded: list[dict[str, Any]] = []

    def record(job: dict[str, Any]) -> Any:
        recorded.append(job["payload"])
        return {"recorded": True}

    fns = {
        "w-check": lambda job: {"amount": job["payload"]["amount"]},  # an int: CEL compares 100.0
        "w-manual": lambda job: {"by": "manual", "n": job["payload"]["n"]},
        "w-auto": lambda job: {"by": "auto", "n": job["payload"]["n"]},
        "w-record": record,
    }
    execution_id = await start(client, routed(None), {"amount": amount})
    async with workers(client, fns):
        state = await wait_status(client, execution_id, "completed")

    assert statuses(state) == {
        "check": "completed",
        taken: "completed",
        other: "skipped",
        "record": "completed",
    }
    skipped = step_of(state, other)
    assert skipped["skip_reason"] == "condition_false"
    assert skipped["output"] is None and skipped["job_id"] is None and skipped["attempt"] == 0
    assert skipped["completed_at"] is not None
    assert step_of(state, taken)["skip_reason"] is None
    assert recorded == [{taken: {"by": taken, "n": amount}, other: None}]
    assert other not in state["result"]
    assert await queue_jobs(client, f"w-{other}") == []  # never got a job
    log = await events(client, execution_id)
    [skip] = [e for e in log if e["type"] == "step_skipped"]
    assert (skip["step_id"], skip["data"]) == (other, {"reason": "condition_false"})
    assert log[-1]["type"] == "completed"
    assert_replays(state, log)
    answer = await client.get(f"/infra/workflows/executions/{execution_id}")
    decoded = msgspec.json.decode(answer.content, type=api.Execution)  # the documented type
    assert {s.step_id: s.skip_reason for s in decoded.steps}[other] == "condition_false"


async def test_a_condition_error_is_caught_by_the_catch_step(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("score", "e-score", None),
        pull_step("review", "e-review", None, ["score"], catch="fallback")
        | {"when": "steps.score.output.risk > 5"},
        pull_step("after", "e-after", None, ["review"]),
        pull_step(
            "fallback", "e-fallback", {"code": "{{failure.code}}", "why": "{{failure.error}}"}
        ),
    ]
    fallbacks: list[dict[str, Any]] = []

    def fallback(job: dict[str, Any]) -> Any:
        fallbacks.append(job["payload"])
        return {"fell_back": True}

    execution_id = await start(client, steps, {})
    fns = {"e-score": lambda job: {"score": 3}, "e-fallback": fallback}  # no "risk" key
    async with workers(client, fns):
        state = await wait_status(client, execution_id, "compensated")

    review = step_of(state, "review")
    assert review["status"] == "failed" and review["caught_by"] == "fallback"
    assert review["error"] == {"code": "condition_error", "message": "no such key: risk"}
    assert review["job_id"] is None
    assert statuses(state) == {
        "score": "completed",
        "review": "failed",
        "after": "skipped",
        "fallback": "completed",
    }
    assert step_of(state, "after")["skip_reason"] is None
    assert fallbacks == [{"code": "condition_error", "why": "no such key: risk"}]
    assert_replays(state, await events(client, execution_id))


async def test_an_uncaught_non_boolean_fails_the_execution(service: Service) -> None:
    client = service.client
    steps = [pull_step("a", "n-a", None) | {"when": "input.mode"}]
    execution_id = await start(client, steps, {"mode": "fast"})
    state = await wait_status(client, execution_id, "failed")
    error = {"code": "condition_error", "message": "when must give a boolean, it gave 'fast'"}
    assert step_of(state, "a")["error"] == error
    assert state["error"] == error


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("steps.check.output.amount >", "not a CEL expression: Failed to parse expression"),
        ("steps.record.output != null", "'record' is not an ancestor of 'manual'"),
        ('steps["nope"].output', "unknown step 'nope'"),
    ],
)
async def test_a_bad_condition_is_refused_at_create(
    service: Service, when: str, message: str
) -> None:
    steps = routed(None)
    steps[1] = steps[1] | {"when": when}
    response = await service.client.post(
        "/infra/workflows/blueprints", json={"name": "bp", "steps": steps}
    )
    assert response.status_code == 400, response.text
    [detail] = response.json()["details"]
    assert detail["path"] == "$.steps[1].when"
    assert detail["message"].startswith(message)


async def test_a_condition_over_the_length_limit_is_refused(service: Service) -> None:
    steps = [pull_step("a", "l-a", None) | {"when": "true" + " " * 4093}]
    response = await service.client.post(
        "/infra/workflows/blueprints", json={"name": "bp", "steps": steps}
    )
    assert response.status_code == 400, response.text
    assert "$.steps[0].when" in response.text


async def test_the_blueprint_shows_its_conditions(service: Service) -> None:
    steps = routed(None)
    response = await service.client.post(
        "/infra/workflows/blueprints", json={"name": "bp", "steps": steps}
    )
    assert response.status_code == 200, response.text
    blueprint = (
        await service.client.get(f"/infra/workflows/blueprints/{response.json()['id']}")
    ).json()
    assert [s.get("when") for s in blueprint["steps"]] == [None] + [s["when"] for s in steps[1:]]


def assert_replays(state: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """The stored event log, folded from the start, gives the steps the API shows."""
    start_state = ExecutionState(
        id=state["id"],
        project_id=state["project_id"],
        blueprint_id=state["blueprint_id"],
        steps={s["step_id"]: StepState(step_id=s["step_id"]) for s in state["steps"]},
    )
    parsed = [Event(e["type"], 0, e["step_id"], e["data"]) for e in log]
    rebuilt = replay(initial(start_state), parsed)
    for shown in state["steps"]:
        step = rebuilt.steps[shown["step_id"]]
        assert (step.status, step.skip_reason, step.output) == (
            shown["status"],
            shown["skip_reason"],
            shown["output"],
        )
        assert (step.error.code if step.error else None) == (shown["error"] or {}).get("code")
    assert rebuilt.status == state["status"]


async def test_a_condition_skip_survives_a_restart(service_with: Any) -> None:
    async with service_with() as first:
        execution_id = await start(first.client, routed(None), {"amount": 40})
        job = await claim_one(first.client, "w-check")
        await ack(first.client, job, {"amount": 40})
        await wait_step(first.client, execution_id, "auto", "queued")
        db = first.db
    async with service_with(db=db) as second:
        state = await execution(second.client, execution_id)
        assert step_of(state, "manual")["skip_reason"] == "condition_false"
        fns = {"w-auto": lambda job: {"by": "auto"}, "w-record": lambda job: {"ok": True}}
        async with workers(second.client, fns):
            state = await wait_status(second.client, execution_id, "completed")
    assert statuses(state)["manual"] == "skipped"
    assert step_of(state, "manual")["skip_reason"] == "condition_false"
