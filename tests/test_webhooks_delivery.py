"""Webhook delivery end to end: every topic's payload, retries until success and until failed,
manual retry, deletion, lanes, --handler-network public, callback_url notices."""

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flowyard.actors.outbox import LANE_CONCURRENCY
from flowyard.signing import verify
from tests.api_surface import assert_error
from tests.conftest import Handler, Service, serve_app
from tests.job_helpers import ack, claim, create_job
from tests.webhook_support import create_webhook, deliveries, wait_deliveries

Json = dict[str, Any]
FAST = {"webhook_retry_base_seconds": 0.05}


@pytest.fixture
async def fast(service_with: Any) -> AsyncIterator[Service]:
    """The service with webhook retries 50 ms apart (doubling)."""
    async with service_with(**FAST) as svc:
        yield svc


def events(handler: Handler, path: str) -> list[Json]:
    return [d.json() for d in handler.to(path)]


async def test_job_topics_carry_their_payloads(fast: Service, handler: Handler) -> None:
    hook = await create_webhook(fast.client, handler.at("/jobs"), topics=["jobs.*"])
    done = await create_job(fast, name="ok", trigger={"type": "pull", "queue": "q"})
    [claimed] = await claim(fast, "q")
    assert (await ack(fast, claimed, status="completed", result={"n": 1})).status_code == 200
    [completed] = await handler.wait_for("/jobs")
    body = completed.json()
    assert body["topic"] == "jobs.completed" and body["project_id"] == fast.project_id
    run_id = completed.json()["data"]["run_id"]
    assert run_id.startswith("run_")
    assert body["data"] == {
        "job_id": done["id"],
        "name": "ok",
        "run_id": run_id,
        "attempt": 1,
        "result": {"n": 1},
    }
    assert verify(hook["secret"], completed.body, completed.headers["x-flowyard-signature"])

    failing = await create_job(
        fast, name="bad", trigger={"type": "pull", "queue": "f"}, max_attempts=2
    )
    [first] = await claim(fast, "f")
    assert (await ack(fast, first, status="failed", error="boom")).status_code == 200
    [_, failed] = await handler.wait_for("/jobs", 2)
    data = failed.json()["data"]
    assert failed.json()["topic"] == "jobs.failed"
    assert set(data) == {"job_id", "name", "run_id", "attempt", "error", "retry_at"}
    assert (data["job_id"], data["attempt"], data["error"]) == (failing["id"], 1, "boom")
    with anyio.fail_after(10):
        while not (second := await claim(fast, "f", wait_seconds=1)):
            pass
    assert (await ack(fast, second[0], status="failed", error="again")).status_code == 200
    [*_, dead] = await handler.wait_for("/jobs", 3)
    assert dead.json()["topic"] == "jobs.dead"
    assert dead.json()["data"] == {
        "job_id": failing["id"],
        "name": "bad",
        "run_id": dead.json()["data"]["run_id"],
        "attempt": 2,
        "error": "again",
        "max_attempts": 2,
    }


async def test_not_retryable_is_dead_at_once(fast: Service, handler: Handler) -> None:
    await create_webhook(fast.client, handler.at("/dead"), topics=["jobs.dead"])
    await create_job(fast, trigger={"type": "pull", "queue": "q"}, max_attempts=5)
    [job] = await claim(fast, "q")
    await ack(fast, job, status="failed", error="no", retryable=False)
    [dead] = await handler.wait_for("/dead")
    assert dead.json()["data"]["max_attempts"] == 5 and dead.json()["data"]["attempt"] == 1


BLUEPRINT: Json = {
    "name": "hooked",
    "steps": [
        {"id": "a", "job_trigger": {"trigger": {"type": "pull", "queue": "wa"}}},
        {
            "id": "b",
            "depends_on": ["a"],
            "job_trigger": {"trigger": {"type": "pull", "queue": "wb"}, "max_attempts": 1},
        },
    ],
}


async def start_execution(service: Service) -> tuple[str, str]:
    created = await service.client.post("/infra/workflows/blueprints", json=BLUEPRINT)
    assert created.status_code == 200, created.text
    blueprint_id = created.json()["id"]
    path = f"/infra/workflows/blueprints/{blueprint_id}/trigger"
    started = await service.client.post(path, json={"input_data": {}})
    assert started.status_code == 200, started.text
    return blueprint_id, started.json()["execution_id"]


async def test_workflow_topics_and_step_jobs(fast: Service, handler: Handler) -> None:
    await create_webhook(fast.client, handler.at("/wf"), topics=["workflows.*", "jobs.*"])
    blueprint_id, execution_id = await start_execution(fast)
    [a] = await claim(fast, "wa", wait_seconds=5)
    await ack(fast, a, status="completed", result={"charged": True})
    [step_done] = await handler.wait_for("/wf")
    assert step_done.json()["topic"] == "jobs.completed"
    assert step_done.json()["data"]["workflow"] == {"execution_id": execution_id, "step_id": "a"}
    [b] = await claim(fast, "wb", wait_seconds=5)
    await ack(fast, b, status="failed", error="out of stock")
    received = await handler.wait_for("/wf", 4)
    # The three events of b's failure are one commit's; up to 4 deliveries to one receiver
    # are in flight at once, so they may arrive in any order.
    by_topic = {d.json()["topic"]: d.json()["data"] for d in received[1:]}
    assert sorted(by_topic) == ["jobs.dead", "workflows.execution.failed", "workflows.step.failed"]
    step_failed, ended = by_topic["workflows.step.failed"], by_topic["workflows.execution.failed"]
    assert step_failed["execution_id"] == execution_id and step_failed["step_id"] == "b"
    assert step_failed["attempt"] == 1 and step_failed["error"]["message"]
    assert ended["execution_id"] == execution_id and ended["blueprint_id"] == blueprint_id
    assert ended["status"] == "failed" and ended["result"] == {"a": {"charged": True}}
    assert ended["error"]["message"]


async def test_a_completed_execution(fast: Service, handler: Handler) -> None:
    await create_webhook(fast.client, handler.at("/end"), topics=["workflows.execution.*"])
    await start_execution(fast)
    for queue in ("wa", "wb"):
        [job] = await claim(fast, queue, wait_seconds=5)
        await ack(fast, job, status="completed", result={queue: 1})
    [ended] = await handler.wait_for("/end")
    assert ended.json()["topic"] == "workflows.execution.completed"
    assert ended.json()["data"]["result"] == {"a": {"wa": 1}, "b": {"wb": 1}}
    assert ended.json()["data"]["error"] is None


async def test_a_cancelled_execution(fast: Service, handler: Handler) -> None:
    await create_webhook(fast.client, handler.at("/end"), topics=["workflows.execution.*"])
    _, execution_id = await start_execution(fast)
    cancel = await fast.client.post(f"/infra/workflows/executions/{execution_id}/cancel")
    assert cancel.status_code == 200, cancel.text
    [ended] = await handler.wait_for("/end")
    assert ended.json()["topic"] == "workflows.execution.cancelled"
    assert ended.json()["data"]["status"] == "cancelled"


async def test_no_webhook_no_rows(fast: Service, handler: Handler) -> None:
    """Without a matching enabled webhook nothing is written to the outbox."""
    await create_webhook(fast.client, handler.at("/other"), topics=["orders.*"])
    await create_webhook(fast.client, handler.at("/off"), topics=["*"], enabled=False)
    await create_job(fast, trigger={"type": "pull", "queue": "q"})
    [job] = await claim(fast, "q")
    await ack(fast, job, status="completed")
    rows = await fast.supervisor.db.fetchall("SELECT id FROM webhook_deliveries")
    assert rows == [] and handler.received == []


async def test_retries_until_success(fast: Service, handler: Handler) -> None:
    url = handler.script("/flaky", (500, {"no": 1}, 0), (503, {}, 0), (200, {"yes": 1}, 0))
    hook = await create_webhook(fast.client, url)
    await fast.client.post("/infra/webhooks/publish", json={"topic": "t.x", "data": 1})
    [done] = await wait_deliveries(
        fast.client, hook["id"], lambda found: found and found[0]["status"] == "succeeded"
    )
    assert done["attempts"] == 3 and done["http_status"] == 200
    assert done["response_snippet"] == '{"yes":1}' and done["error"] is None
    received = handler.to("/flaky")
    assert len(received) == 3
    assert len({d.headers["x-flowyard-event-id"] for d in received}) == 1  # the same event
    assert len({d.body for d in received}) == 1


async def test_retries_until_failed_then_a_manual_retry(fast: Service, handler: Handler) -> None:
    url = handler.script("/down", (500, "x" * 3000, 0))
    hook = await create_webhook(fast.client, url)
    await fast.client.post("/infra/webhooks/publish", json={"topic": "t.x"})
    [failed] = await wait_deliveries(
        fast.client, hook["id"], lambda f: f and f[0]["status"] == "failed", timeout=30
    )
    assert failed["attempts"] == 8 and failed["http_status"] == 500
    assert failed["next_attempt_at"] is None
    assert len(failed["response_snippet"]) == 1024  # the first KiB of the answer
    assert len(handler.to("/down")) == 8
    assert await deliveries(fast.client, hook["id"], status="pending") == []
    assert len(await deliveries(fast.client, hook["id"], status="failed")) == 1

    handler.script("/down", (200, {}, 0))
    path = f"/infra/webhooks/{hook['id']}/deliveries/{failed['id']}/retry"
    retried = await fast.client.post(path)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    [done] = await wait_deliveries(
        fast.client, hook["id"], lambda f: f and f[0]["status"] == "succeeded"
    )
    assert done["attempts"] == 9
    assert_error(await fast.client.post(path), 409, "conflict")  # only a failed one


async def test_delete_drops_pending_deliveries(service_with: Any, handler: Handler) -> None:
    async with service_with(webhook_retry_base_seconds=3600) as service:
        url = handler.script("/later", (500, {}, 0))
        hook = await create_webhook(service.client, url)
        await service.client.post("/infra/webhooks/publish", json={"topic": "t.x"})
        [pending] = await wait_deliveries(
            service.client, hook["id"], lambda f: f and f[0]["attempts"] == 1
        )
        assert pending["status"] == "pending" and pending["next_attempt_at"] is not None
        deleted = await service.client.delete(f"/infra/webhooks/{hook['id']}")
        assert deleted.json() == {"id": hook["id"], "deleted": True}
        rows = await service.supervisor.db.fetchall(
            "SELECT id FROM webhook_deliveries WHERE status = 'pending'"
        )
        assert rows == []
        assert service.supervisor.outbox.pending == {}


class Gate:
    """A receiver that holds every request until ``release`` is set."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.held = 0
        self.arrived = anyio.Event()

    async def endpoint(self, request: Request) -> JSONResponse:
        self.held += 1
        self.arrived.set()
        await self.release.wait()
        return JSONResponse({})


async def test_a_slow_receiver_does_not_delay_another(fast: Service, handler: Handler) -> None:
    gate = Gate()
    app = Starlette(routes=[Route("/{path:path}", gate.endpoint, methods=["POST"])])
    async with serve_app(app) as slow_url:
        slow = await create_webhook(fast.client, f"{slow_url}/slow")
        await create_webhook(fast.client, handler.at("/quick"))
        for n in range(20):
            response = await fast.client.post(
                "/infra/webhooks/publish", json={"topic": "t.x", "data": n}
            )
            assert response.json()["deliveries"] == 2
        received = await handler.wait_for("/quick", 20)  # while the slow one holds its lane
        assert sorted(d.json()["data"] for d in received) == list(range(20))
        with anyio.fail_after(10):
            while gate.held < LANE_CONCURRENCY:
                gate.arrived = anyio.Event()
                await gate.arrived.wait()
        assert gate.held == LANE_CONCURRENCY  # a bounded number in flight to the slow one
        gate.release.set()
        await wait_deliveries(
            fast.client,
            slow["id"],
            lambda f: len(f) == 20 and all(d["status"] == "succeeded" for d in f),
        )


async def test_public_network_refuses_loopback_webhooks(
    service_with: Any, handler: Handler
) -> None:
    async with service_with(handler_network="public", **FAST) as service:
        hook = await create_webhook(service.client, handler.at("/local"))
        await service.client.post("/infra/webhooks/publish", json={"topic": "t.x"})
        [failed] = await wait_deliveries(
            service.client, hook["id"], lambda f: f and f[0]["status"] == "failed", timeout=30
        )
        assert failed["error"].startswith("handler_blocked")
        assert failed["http_status"] is None
        tested = await service.client.post(f"/infra/webhooks/{hook['id']}/test")
        assert tested.json()["error"].startswith("handler_blocked")
        assert handler.received == []


async def test_callback_url_notices_are_retried(fast: Service, handler: Handler) -> None:
    notice_url = handler.script("/notice", (500, {}, 0), (200, {}, 0))
    job = await create_job(fast, trigger={"type": "pull", "queue": "q"}, callback_url=notice_url)
    [claimed] = await claim(fast, "q")
    await ack(fast, claimed, status="completed", result=3)
    first, second = await handler.wait_for("/notice", 2)
    assert first.body == second.body
    assert first.json()["job_id"] == job["id"] and first.json()["result"] == 3
    assert second.headers["x-flowyard-job-id"] == job["id"]
    secret = (await fast.client.get("/infra/jobs/signing-secret")).json()["signing_secret"]
    assert verify(secret, second.body, second.headers["x-flowyard-signature"])


async def test_a_compensated_execution(fast: Service, handler: Handler) -> None:
    await create_webhook(fast.client, handler.at("/end"), topics=["workflows.*"])
    blueprint = {
        "name": "caught",
        "steps": [
            {
                "id": "ship",
                "catch": "refund",
                "job_trigger": {"trigger": {"type": "pull", "queue": "s"}, "max_attempts": 1},
            },
            {"id": "refund", "job_trigger": {"trigger": {"type": "pull", "queue": "r"}}},
        ],
    }
    created = await fast.client.post("/infra/workflows/blueprints", json=blueprint)
    trigger = f"/infra/workflows/blueprints/{created.json()['id']}/trigger"
    execution_id = (await fast.client.post(trigger, json={"input_data": {}})).json()["execution_id"]
    [ship] = await claim(fast, "s", wait_seconds=5)
    await ack(fast, ship, status="failed", error="P.O. box")
    [refund] = await claim(fast, "r", wait_seconds=5)
    await ack(fast, refund, status="completed", result={"refunded": True})
    step_failed, ended = await handler.wait_for("/end", 2)
    assert step_failed.json()["topic"] == "workflows.step.failed"
    assert step_failed.json()["data"]["step_id"] == "ship"
    assert ended.json()["topic"] == "workflows.execution.compensated"
    assert ended.json()["data"]["execution_id"] == execution_id
    assert ended.json()["data"]["result"] == {"refund": {"refunded": True}}
