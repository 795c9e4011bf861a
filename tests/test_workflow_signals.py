"""wait_for_signal steps and ``POST .../executions/{id}/signals`` end to end over HTTP
(DESIGN §8): waiting, taking, keeping, idempotency, refusals, timeouts and controls."""

from pathlib import Path
from typing import Any

import anyio

from tests.api_surface import assert_error
from tests.conftest import Handler, Service, running_service
from tests.signal_support import post_signal, send, wait_step
from tests.webhook_support import create_webhook
from tests.workflow_support import (
    ack,
    claim_one,
    events,
    execution,
    pull_step,
    start,
    statuses,
    step_of,
    wait_status,
)
from tests.workflow_support import (
    wait_step as wait_for_step,
)

APPROVAL = [
    wait_step("approve", "approval"),
    pull_step("ship", "sig-ship", {"by": "{{steps.approve.output.by}}"}, depends_on=["approve"]),
]


async def test_a_waiting_step_takes_the_signal_and_its_dependents_run(service: Service) -> None:
    client = service.client
    execution_id = await start(client, APPROVAL)
    state = await wait_for_step(client, execution_id, "approve", "waiting")
    assert state["status"] == "running"
    approve = step_of(state, "approve")
    assert approve["started_at"] is not None and approve["signal"] == "approval"
    assert approve["attempt"] == 1 and approve["job_id"] is None

    answer = await send(client, execution_id, "approval", {"by": "ann"})
    assert answer == {
        "signal_id": answer["signal_id"],
        "execution_id": execution_id,
        "name": "approval",
        "consumed_by": "approve",
    }
    assert answer["signal_id"].startswith("wfsig_")
    state = await execution(client, execution_id)
    approve = step_of(state, "approve")
    assert approve["status"] == "completed" and approve["output"] == {"by": "ann"}
    assert approve["signal_id"] == answer["signal_id"]
    job = await claim_one(client, "sig-ship")
    assert job["payload"] == {"by": "ann"}
    await ack(client, job, result="shipped")
    state = await wait_status(client, execution_id, "completed")
    assert state["result"] == {"approve": {"by": "ann"}, "ship": "shipped"}

    log = await events(client, execution_id)
    kinds = [(e["type"], e["step_id"]) for e in log]
    assert kinds[:4] == [
        ("triggered", None),
        ("step_waiting", "approve"),
        ("signal_received", "approve"),
        ("step_completed", "approve"),
    ]
    assert log[1]["data"] == {"attempt": 1, "signal": "approval"}
    assert log[2]["data"]["signal_id"] == answer["signal_id"]
    assert log[3]["data"] == {"signal_id": answer["signal_id"], "output": {"by": "ann"}}


async def test_early_signals_are_kept_and_taken_in_arrival_order(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("first", "sig-first", {}),
        wait_step("one", "go", depends_on=["first"]),
        wait_step("two", "go", depends_on=["one"]),
    ]
    execution_id = await start(client, steps)
    kept = [await send(client, execution_id, "go", n) for n in (1, 2)]
    assert [k["consumed_by"] for k in kept] == [None, None]
    other = await send(client, execution_id, "other", "left over")
    assert other["consumed_by"] is None
    job = await claim_one(client, "sig-first")
    await ack(client, job, result=0)
    state = await wait_status(client, execution_id, "completed")
    assert state["result"] == {"first": 0, "one": 1, "two": 2}
    assert [step_of(state, s)["signal_id"] for s in ("one", "two")] == [
        k["signal_id"] for k in kept
    ]
    received = [e for e in await events(client, execution_id) if e["type"] == "signal_received"]
    assert [e["data"]["consumed_by"] for e in received] == [None, None, None]


async def test_the_oldest_waiting_step_takes_a_signal(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("first", "sig-old", {}),
        wait_step("late", "go", depends_on=["first"]),
        wait_step("early", "go"),
    ]
    execution_id = await start(client, steps)
    await wait_for_step(client, execution_id, "early", "waiting")
    await ack(client, await claim_one(client, "sig-old"), result=0)
    await wait_for_step(client, execution_id, "late", "waiting")
    assert (await send(client, execution_id, "go", "a"))["consumed_by"] == "early"
    assert (await send(client, execution_id, "go", "b"))["consumed_by"] == "late"


async def test_the_same_idempotency_key_answers_the_first_answer(service: Service) -> None:
    client = service.client
    execution_id = await start(client, [pull_step("first", "sig-idem", {}), *APPROVAL[:1]])
    await wait_for_step(client, execution_id, "approve", "waiting")
    body = {"idempotency_key": "k-1"}
    first = await post_signal(client, execution_id, "approval", {"by": "ann"}, **body)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = await post_signal(client, execution_id, "approval", {"by": "ann"}, **body)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = await post_signal(client, execution_id, "approval", {"by": "bo"}, **body)
    assert_error(other, 409, "conflict")
    renamed = await post_signal(client, execution_id, "other", {"by": "ann"}, **body)
    assert_error(renamed, 409, "conflict")

    # A kept signal answers consumed_by null again, even once a step has taken it.
    kept = await send(client, execution_id, "later", 5, idempotency_key="k-2")
    assert kept["consumed_by"] is None
    assert (await send(client, execution_id, "later", 5, idempotency_key="k-2")) == kept
    # The key is scoped to the execution.
    elsewhere = await start(client, APPROVAL)
    fresh = await send(client, elsewhere, "approval", {"by": "ann"}, idempotency_key="k-1")
    assert fresh["signal_id"] != first.json()["signal_id"]
    state = await execution(client, execution_id)
    assert [e["type"] for e in await events(client, execution_id)].count("signal_received") == 2
    assert step_of(state, "approve")["output"] == {"by": "ann"}


async def test_bad_signals_are_400_with_details(service: Service) -> None:
    client = service.client
    execution_id = await start(client, APPROVAL)
    path = f"/infra/workflows/executions/{execution_id}/signals"
    cases: list[tuple[Any, str]] = [
        ({"name": ""}, "$.name"),
        ({"name": "x" * 129}, "$.name"),
        ({"data": 1}, "$"),
        ({"name": "go", "extra": 1}, "$"),
        ({"name": "go", "idempotency_key": ""}, "$.idempotency_key"),
        ({"name": "go", "data": "x" * (256 * 1024)}, "$.data"),
    ]
    for body, where in cases:
        response = await client.post(path, json=body)
        assert_error(response, 400, "bad_request")
        details = response.json()["details"]
        assert details and details[0]["path"].startswith(where), (body, details)
    exactly = {"name": "go", "data": "x" * (256 * 1024 - 2)}  # 256 KiB with its quotes
    assert (await client.post(path, json=exactly)).status_code == 200
    missing = await post_signal(client, "wfexec_nope", "go")
    assert_error(missing, 404, "not_found")


async def test_ended_executions_refuse_signals_and_paused_ones_take_them(service: Service) -> None:
    client = service.client
    done = await start(client, [wait_step("w", "go")])
    await send(client, done, "go")
    await wait_status(client, done, "completed")
    assert_error(await post_signal(client, done, "go"), 409, "conflict")
    cancelled = await start(client, APPROVAL)
    assert (await client.post(f"/infra/workflows/executions/{cancelled}/cancel")).is_success
    assert_error(await post_signal(client, cancelled, "approval"), 409, "conflict")

    paused = await start(client, APPROVAL)
    await wait_for_step(client, paused, "approve", "waiting")
    assert (await client.post(f"/infra/workflows/executions/{paused}/pause")).is_success
    answer = await send(client, paused, "approval", {"by": "cy"})
    assert answer["consumed_by"] == "approve"
    state = await execution(client, paused)
    assert state["status"] == "paused"
    assert statuses(state) == {"approve": "completed", "ship": "pending"}
    assert (await client.post(f"/infra/workflows/executions/{paused}/resume")).is_success
    job = await claim_one(client, "sig-ship")
    assert job["payload"] == {"by": "cy"}


async def test_kept_signals_are_bounded(service: Service) -> None:
    client = service.client
    execution_id = await start(client, APPROVAL)

    async def sender(start_at: int) -> None:
        for n in range(start_at, 1000, 8):
            await send(client, execution_id, "unheard", n)

    async with anyio.create_task_group() as tg:
        for k in range(8):
            tg.start_soon(sender, k)
    refused = await post_signal(client, execution_id, "unheard", "one more")
    assert_error(refused, 409, "conflict")
    assert "1000" in refused.json()["message"]
    # A signal a step waits for is still taken.
    assert (await send(client, execution_id, "approval", {"by": "x"}))["consumed_by"] == "approve"


async def test_a_timeout_fails_the_step_with_signal_timeout_and_catch_runs(
    service: Service,
) -> None:
    client = service.client
    steps = [
        wait_step("approve", "approval", timeout=1, catch="escalate"),
        pull_step("escalate", "sig-escalate", {"why": "{{failure.code}}"}),
    ]
    execution_id = await start(client, steps)
    job = await claim_one(client, "sig-escalate", wait=10)
    assert job["payload"] == {"why": "signal_timeout"}
    state = await execution(client, execution_id)
    approve = step_of(state, "approve")
    assert approve["status"] == "failed" and approve["caught_by"] == "escalate"
    assert approve["error"]["code"] == "signal_timeout"
    # Too late: the step no longer waits, so the signal is kept.
    assert (await send(client, execution_id, "approval", 1))["consumed_by"] is None
    await ack(client, job, result="paged")
    await wait_status(client, execution_id, "compensated")


async def test_cancel_resume_and_override_of_a_waiting_step(service: Service) -> None:
    client = service.client
    execution_id = await start(client, APPROVAL)
    base = f"/infra/workflows/executions/{execution_id}"
    await wait_for_step(client, execution_id, "approve", "waiting")
    assert (await client.post(f"{base}/cancel")).is_success
    state = await execution(client, execution_id)
    assert step_of(state, "approve")["status"] == "cancelled"
    assert (await client.post(f"{base}/resume")).is_success
    state = await execution(client, execution_id)
    assert step_of(state, "approve")["status"] == "waiting"
    assert step_of(state, "approve")["attempt"] == 2
    override = {"step_id": "approve", "override_output": {"by": "ops"}, "reason": "by phone"}
    assert (await client.post(f"{base}/resume", json=override)).is_success
    job = await claim_one(client, "sig-ship")
    assert job["payload"] == {"by": "ops"}
    kinds = [e["type"] for e in await events(client, execution_id)]
    assert kinds.count("step_waiting") == 2 and "output_overridden" in kinds


async def test_a_waiting_step_is_announced_to_webhooks(service_with: Any, handler: Handler) -> None:
    async with service_with(webhook_retry_base_seconds=0.05) as svc:
        await create_webhook(svc.client, handler.at("/wait"), topics=["workflows.step.*"])
        execution_id = await start(svc.client, APPROVAL)
        [delivery] = await handler.wait_for("/wait")
    body = delivery.json()
    assert body["topic"] == "workflows.step.waiting"
    assert body["data"] == {
        "execution_id": execution_id,
        "step_id": "approve",
        "signal": "approval",
    }


async def test_waiting_steps_kept_signals_and_timeouts_survive_a_restart(tmp_path: Path) -> None:
    async with running_service(tmp_path) as svc:
        db = svc.db
        steps = [
            pull_step("first", "sig-restart", {}),
            wait_step("later", "kept", depends_on=["first"]),
            wait_step("now", "go"),
            wait_step("timer", "never", timeout=3),
        ]
        execution_id = await start(svc.client, steps)
        kept = await send(svc.client, execution_id, "kept", {"early": True})
        await wait_for_step(svc.client, execution_id, "now", "waiting")
    async with running_service(tmp_path, db=db) as svc:
        client = svc.client
        assert (await send(client, execution_id, "go", 1))["consumed_by"] == "now"
        await ack(client, await claim_one(client, "sig-restart"), result=0)
        state = await wait_for_step(client, execution_id, "later", "completed")
        assert step_of(state, "later")["output"] == {"early": True}
        assert step_of(state, "later")["signal_id"] == kept["signal_id"]
        state = await wait_status(client, execution_id, "failed")
        assert step_of(state, "timer")["error"]["code"] == "signal_timeout"


async def test_the_deadline_cancels_a_waiting_step_and_a_stale_timeout_does_nothing(
    service: Service,
) -> None:
    client = service.client
    steps = [wait_step("early", "go", timeout=1), wait_step("never", "nope")]
    execution_id = await start(client, steps, max_duration_sec=2)
    assert (await send(client, execution_id, "go", "in time"))["consumed_by"] == "early"
    state = await wait_status(client, execution_id, "failed", timeout=10)
    assert state["error"]["code"] == "timed_out"
    assert step_of(state, "never")["status"] == "cancelled"
    # The timeout of "early" came after it had its signal: it changed nothing.
    early = step_of(state, "early")
    assert early["status"] == "completed" and early["output"] == "in time"
    assert not [e for e in await events(client, execution_id) if e["type"] == "step_failed"]
