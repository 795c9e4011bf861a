"""Controlling executions over real HTTP: resume, override, cancel, pause and deadlines."""

from typing import Any

import httpx

from tests.conftest import Service
from tests.job_helpers import ms
from tests.jobs_support import error_of
from tests.workflow_support import (
    ack,
    claim,
    claim_one,
    events,
    execution,
    get_job,
    pull_step,
    queue_jobs,
    start,
    statuses,
    step_of,
    wait_execution,
    wait_status,
    wait_step,
)

EXECUTIONS = "/infra/workflows/executions"


async def control(
    client: httpx.AsyncClient, execution_id: str, action: str, body: Any = None
) -> httpx.Response:
    return await client.post(f"{EXECUTIONS}/{execution_id}/{action}", json=body or {})


async def ok(client: httpx.AsyncClient, execution_id: str, action: str, **body: Any) -> Any:
    response = await control(client, execution_id, action, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"] == execution_id
    return answer


async def test_failed_step_resumed_with_a_new_job(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("charge", "rs-pay"),
        pull_step(
            "ship",
            "rs-ship",
            {"charge_id": "{{steps.charge.output.charge_id}}"},
            depends_on=["charge"],
            max_attempts=1,
        ),
    ]
    execution_id = await start(client, steps)
    await ack(client, await claim_one(client, "rs-pay"), {"charge_id": "ch_1"})
    first = await claim_one(client, "rs-ship")
    await ack(client, first, error="carrier down", retryable=False)
    state = await wait_status(client, execution_id, "failed")
    assert state["error"] == {"code": "job_failed", "message": "carrier down"}
    ship = step_of(state, "ship")
    assert ship["status"] == "failed" and ship["caught_by"] is None
    assert (ship["job_id"], ship["attempt"]) == (first["id"], 1)

    response = await control(client, execution_id, "resume", {"step_id": "nope"})
    error_of(response, 400, "bad_request")
    answer = await ok(client, execution_id, "resume", step_id="ship", reason="carrier back")
    assert answer["status"] == "running" and answer["resumed_at"] is not None

    second = await claim_one(client, "rs-ship")
    assert second["id"] != first["id"]
    assert second["payload"] == {"charge_id": "ch_1"}
    assert second["attempt"] == 1  # fresh attempts on the new job
    state = await execution(client, execution_id)
    assert state["error"] is None
    ship = step_of(state, "ship")
    assert (ship["job_id"], ship["attempt"]) == (second["id"], 2)
    assert (await get_job(client, first["id"]))["status"] == "failed"
    await ack(client, second, {"tracking": "T2"})
    state = await wait_status(client, execution_id, "completed")
    assert step_of(state, "ship")["output"] == {"tracking": "T2"}
    assert len(await queue_jobs(client, "rs-ship")) == 2
    resumed = [e for e in await events(client, execution_id) if e["type"] == "resumed"]
    assert [(e["step_id"], e["data"]["reason"]) for e in resumed] == [("ship", "carrier back")]
    error_of(await control(client, execution_id, "resume", {"step_id": "ship"}), 409, "conflict")


async def test_override_output_injects_a_manual_review(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("review", "ov-review"),
        pull_step(
            "publish",
            "ov-publish",
            {"decision": "{{steps.review.output.decision}}", "all": "{{steps.review.output}}"},
            depends_on=["review"],
        ),
    ]
    execution_id = await start(client, steps)
    state = await wait_step(client, execution_id, "review", "queued")
    review_job = step_of(state, "review")["job_id"]
    response = await control(client, execution_id, "resume", {"override_output": 1})
    error_of(response, 400, "bad_request")
    response = await control(
        client, execution_id, "resume", {"step_id": "publish", "override_output": 1}
    )
    error_of(response, 409, "conflict")  # publish is pending: nothing to override

    decision = {"decision": "approved", "by": "alice"}
    answer = await ok(
        client,
        execution_id,
        "resume",
        step_id="review",
        override_output=decision,
        reason="manual review",
    )
    assert answer["status"] == "running"
    state = await execution(client, execution_id)
    review = step_of(state, "review")
    assert review["status"] == "completed" and review["output"] == decision
    assert (await get_job(client, review_job))["status"] == "cancelled"
    assert await claim(client, "ov-review", wait=0) == []

    publish = await claim_one(client, "ov-publish")
    assert publish["payload"] == {"decision": "approved", "all": decision}
    log = await events(client, execution_id)
    [overridden] = [e for e in log if e["type"] == "output_overridden"]
    assert overridden["step_id"] == "review"
    assert overridden["data"]["output"] == decision
    assert overridden["data"]["reason"] == "manual review"
    await ack(client, publish, {"published": True})
    state = await wait_status(client, execution_id, "completed")
    assert state["result"] == {"review": decision, "publish": {"published": True}}


async def test_override_a_failed_step_of_a_failed_execution(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("check", "ovf-check", max_attempts=1),
        pull_step("next", "ovf-next", {"v": "{{steps.check.output.v}}"}, depends_on=["check"]),
    ]
    execution_id = await start(client, steps)
    await ack(client, await claim_one(client, "ovf-check"), error={"why": "bad"})
    state = await wait_status(client, execution_id, "failed")
    assert step_of(state, "check")["error"]["message"] == '{"why":"bad"}'  # JSON text of it
    await ok(client, execution_id, "resume", step_id="check", override_output={"v": 5})
    job = await claim_one(client, "ovf-next")
    assert job["payload"] == {"v": 5}
    await ack(client, job, "done")
    await wait_status(client, execution_id, "completed")


async def test_cancel_withdraws_queued_jobs_and_records_running_ones(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("A", "cx-a"),
        pull_step("B", "cx-b"),
        pull_step("C", "cx-c", depends_on=["A"]),
    ]
    execution_id = await start(client, steps)
    job_a = await claim_one(client, "cx-a")
    state = await wait_step(client, execution_id, "A", "running")
    job_b = step_of(state, "B")["job_id"]

    answer = await ok(client, execution_id, "cancel")
    assert answer["status"] == "cancelled" and answer["cancelled_at"] is not None
    state = await execution(client, execution_id)
    assert statuses(state) == {"A": "running", "B": "cancelled", "C": "pending"}
    assert (await get_job(client, job_b))["status"] == "cancelled"
    assert await claim(client, "cx-b", wait=0) == []

    await ack(client, job_a, {"late": True})  # the running job finishes
    state = await execution(client, execution_id)
    assert state["status"] == "cancelled"
    assert statuses(state) == {"A": "completed", "B": "cancelled", "C": "pending"}
    assert step_of(state, "A")["output"] == {"late": True}
    assert state["result"] == {"A": {"late": True}}
    assert await queue_jobs(client, "cx-c") == []  # nothing new scheduled
    kinds = [(e["type"], e["step_id"]) for e in await events(client, execution_id)]
    assert kinds.index(("cancelled", None)) < kinds.index(("step_completed", "A"))
    assert ("step_queued", "C") not in kinds

    error_of(await control(client, execution_id, "cancel"), 409, "conflict")
    error_of(await control(client, execution_id, "pause"), 409, "conflict")


async def test_finished_executions_refuse_controls(service: Service) -> None:
    client = service.client
    execution_id = await start(client, [pull_step("only", "fin-q")])
    await ack(client, await claim_one(client, "fin-q"), 1)
    await wait_status(client, execution_id, "completed")
    for action, body in (
        ("cancel", None),
        ("pause", None),
        ("resume", None),
        ("resume", {"step_id": "only", "override_output": 2}),
    ):
        error_of(await control(client, execution_id, action, body), 409, "conflict")
    state = await execution(client, execution_id)
    assert state["status"] == "completed" and state["result"] == {"only": 1}


async def test_pause_holds_dependents_until_resume(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("A", "pz-a"),
        pull_step("B", "pz-b", {"a": "{{steps.A.output}}"}, depends_on=["A"]),
        pull_step("X", "pz-x"),
    ]
    execution_id = await start(client, steps)
    job_a = await claim_one(client, "pz-a")
    await wait_step(client, execution_id, "A", "running")
    answer = await ok(client, execution_id, "pause")
    assert answer["status"] == "paused" and answer["paused_at"] is not None
    error_of(await control(client, execution_id, "pause"), 409, "conflict")

    job_x = await claim_one(client, "pz-x", wait=0)  # queued jobs stay claimable
    await ack(client, job_x, "x")
    await ack(client, job_a, {"a": 1})
    state = await execution(client, execution_id)
    assert state["status"] == "paused"
    assert statuses(state) == {"A": "completed", "B": "pending", "X": "completed"}
    assert await queue_jobs(client, "pz-b") == []

    answer = await ok(client, execution_id, "resume", reason="go on")
    assert answer["status"] == "running"
    job_b = await claim_one(client, "pz-b")
    assert job_b["payload"] == {"a": {"a": 1}}
    error_of(await control(client, execution_id, "resume"), 409, "conflict")
    await ack(client, job_b, "b")
    state = await wait_status(client, execution_id, "completed")
    assert state["result"] == {"A": {"a": 1}, "B": "b", "X": "x"}
    kinds = [e["type"] for e in await events(client, execution_id)]
    assert kinds.count("paused") == 1 and kinds.count("resumed") == 1


async def test_deadline_fails_the_execution_and_resume_opens_a_new_window(
    service: Service,
) -> None:
    client = service.client
    steps = [
        pull_step("work", "dl-work"),
        pull_step("next", "dl-next", depends_on=["work"]),
        pull_step("idle", "dl-idle"),
    ]
    execution_id = await start(client, steps, max_duration_sec=1)
    job = await claim_one(client, "dl-work")
    state = await wait_step(client, execution_id, "work", "running")
    idle_job = step_of(state, "idle")["job_id"]
    assert ms(state["deadline_at"]) == ms(state["started_at"]) + 1000

    state = await wait_status(client, execution_id, "failed", timeout=10)
    assert state["error"]["code"] == "timed_out"
    assert ms(state["completed_at"]) >= ms(state["deadline_at"])
    assert statuses(state) == {"work": "running", "next": "pending", "idle": "cancelled"}
    assert (await get_job(client, idle_job))["status"] == "cancelled"
    kinds = [e["type"] for e in await events(client, execution_id)]
    assert kinds[-2:] == ["timed_out", "failed"]

    await ack(client, job, {"late": True})  # recorded, but schedules nothing
    state = await execution(client, execution_id)
    assert state["status"] == "failed"
    assert step_of(state, "work")["output"] == {"late": True}
    assert step_of(state, "next")["status"] == "pending"
    assert await queue_jobs(client, "dl-next") == []

    answer = await ok(client, execution_id, "resume", reason="more time")
    assert answer["status"] == "running"
    state = await execution(client, execution_id)
    assert state["error"] is None
    assert ms(state["deadline_at"]) == ms(answer["resumed_at"]) + 1000
    assert statuses(state) == {"work": "completed", "next": "queued", "idle": "queued"}
    assert step_of(state, "idle")["attempt"] == 2
    assert step_of(state, "idle")["job_id"] != idle_job
    # Nobody works: the new window runs out in its turn.
    state = await wait_execution(
        client, execution_id, lambda s: s["status"] == "failed", timeout=10
    )
    assert state["error"]["code"] == "timed_out"
    assert ms(state["completed_at"]) >= ms(answer["resumed_at"]) + 1000
    assert statuses(state) == {"work": "completed", "next": "cancelled", "idle": "cancelled"}
