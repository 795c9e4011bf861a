"""Token balances over real HTTP and real SQLite (DESIGN §2): prices, 402, free calls, usage."""

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import httpx

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.accounts_support import (
    JOB_WRITE,
    READ,
    TOKEN,
    WORKFLOW_WRITE,
    admin_client,
    assert_no_rate_headers,
    balance_of,
    set_account,
    set_in_sql,
    today_start,
    tokens,
    written_behind,
)
from tests.conftest import ServerProcess, Service
from tests.jobs_support import LATER, PULL, error_of, new_key
from tests.store_support import read
from tests.workflow_support import (
    Json,
    ack,
    claim,
    claim_one,
    create_blueprint,
    events,
    execution,
    pull_step,
    queue_jobs,
    statuses,
    step_of,
    trigger,
    wait_status,
)

EXECUTIONS = "/infra/workflows/executions"
BLUEPRINTS = "/infra/workflows/blueprints"
UNKNOWN_JOB = "job_01JBZZZZZZZZZZZZZZZZZZZZZZ"
UNKNOWN_EXECUTION = "wfexec_01JBZZZZZZZZZZZZZZZZZZZZZZ"
UNKNOWN_BLUEPRINT = "wf_01JBZZZZZZZZZZZZZZZZZZZZZZ"


class Meter:
    """The balance a test expects, checked against ``GET /core/tokens/balance``."""

    def __init__(self, client: httpx.AsyncClient, nanos: int) -> None:
        self.client = client
        self.nanos = nanos

    async def paid(self, price: int) -> None:
        """The last call cost exactly ``price``."""
        self.nanos -= price
        assert await balance_of(self.client) == tokens(self.nanos)


async def ok(response: Any, status: int = 200) -> Json:
    result = await response if not isinstance(response, httpx.Response) else response
    assert result.status_code == status, result.text
    body: Json = result.json()
    return body


async def job_names(client: httpx.AsyncClient) -> list[str]:
    """Names of every job of the project (one page of up to 100; a paid read)."""
    body = await ok(client.get("/infra/jobs?limit=100"))
    return [job["name"] for job in body["jobs"]]


def chain(prefix: str) -> list[Json]:
    """Two pull steps: ``a`` then ``b``."""
    return [pull_step("a", f"{prefix}-a"), pull_step("b", f"{prefix}-b", depends_on=["a"])]


# ------------------------------------------------------------------ unlimited by default


async def test_a_project_is_unlimited_by_default(service: Service) -> None:
    client = service.client
    answer = await ok(client.get("/core/tokens/balance"))
    assert answer == {"project_id": service.project_id, "total_balance": None}
    for _ in range(3):
        created = await client.post("/infra/jobs", json={**PULL, "name": "free"})
        assert created.status_code == 202, created.text
        assert_no_rate_headers(created)
    listed = await client.get("/infra/jobs")
    assert listed.status_code == 200
    assert_no_rate_headers(listed)
    assert_no_rate_headers(await client.get("/core/tokens/balance"))
    assert await balance_of(client) is None


async def test_balances_are_set_as_a_json_number_or_a_decimal_string(service: Service) -> None:
    client = service.client
    async with await admin_client(service) as admin:
        project = f"/admin/projects/{service.project_id}"
        for value, shown in [
            (1, "1"),
            (2.5, "2.5"),
            (0.0000018, "0.0000018"),
            ("0.0000018", "0.0000018"),
            ("12.000000001", "12.000000001"),
            ("1000", "1000"),
            (0, "0"),
        ]:
            response = await admin.patch(project, json={"token_balance": value})
            assert response.status_code == 200, (value, response.text)
            assert response.json()["token_balance"] == shown
            assert await balance_of(client) == shown, value
        for bad in ["abc", -1, "0.0000000001", True, {"tokens": 1}]:
            response = await admin.patch(project, json={"token_balance": bad})
            error_of(response, 400, "bad_request")
            assert await balance_of(client) == "0", bad
        assert (await admin.patch(project, json={"token_balance": 0.0000018})).status_code == 200
        await ok(client.post("/infra/jobs", json={**PULL, "name": "paid"}), 202)
        assert await balance_of(client) == "0"
        assert (await admin.patch(project, json={"token_balance": None})).status_code == 200
    assert await balance_of(client) is None
    await ok(client.post("/infra/jobs", json={**PULL, "name": "unlimited again"}), 202)


async def test_a_balance_set_in_the_projects_table_is_read_back(service: Service) -> None:
    client = service.client
    await set_in_sql(service, balance=3 * TOKEN)
    assert await balance_of(client) == "3"
    await ok(client.post("/infra/jobs", json={**PULL, "name": "one"}), 202)
    assert await balance_of(client) == "2.9999982"
    # The charge is written behind as a difference; a later top-up in SQL is read back as is.
    await set_in_sql(service, balance=JOB_WRITE)
    assert await balance_of(client) == "0.0000018"
    await ok(client.post("/infra/jobs", json={**PULL, "name": "two"}), 202)
    error_of(await client.post("/infra/jobs", json=PULL), 402, "insufficient_tokens")
    await set_in_sql(service, balance=None)
    assert await balance_of(client) is None


# ------------------------------------------------------------------ prices


async def test_job_calls_cost_their_price(service: Service) -> None:
    client = service.client
    await set_account(service, balance=1 * TOKEN)
    assert await balance_of(client) == "1"
    meter = Meter(client, TOKEN)

    job = await ok(client.post("/infra/jobs", json={**PULL, "name": "one"}), 202)
    assert await balance_of(client) == "0.9999982"
    meter.nanos -= JOB_WRITE

    batch = {"jobs": [{**PULL, "name": f"b{i}"} for i in range(3)]}
    await ok(client.post("/infra/jobs/batch", json=batch), 202)
    assert await balance_of(client) == "0.9999928"
    meter.nanos -= 3 * JOB_WRITE

    await ok(client.get("/infra/jobs"))
    assert await balance_of(client) == "0.999992"
    meter.nanos -= READ

    await ok(client.get(f"/infra/jobs/{job['id']}"))
    await meter.paid(READ)
    await ok(client.get(f"/infra/jobs/{job['id']}/runs"))
    await meter.paid(READ)
    await ok(client.patch(f"/infra/jobs/{job['id']}", json={"payload": {"x": 1}}))
    await meter.paid(JOB_WRITE)
    await ok(client.delete(f"/infra/jobs/{job['id']}"))
    await meter.paid(JOB_WRITE)

    later = await ok(client.post("/infra/jobs", json={**LATER, "name": "later"}), 202)
    await meter.paid(JOB_WRITE)
    await ok(client.post(f"/infra/jobs/{later['id']}/trigger"), 202)
    await meter.paid(JOB_WRITE)

    once = {"trigger": {"type": "pull", "queue": "once"}, "max_attempts": 1, "name": "once"}
    failing = await ok(client.post("/infra/jobs", json=once), 202)
    await meter.paid(JOB_WRITE)
    claimed = await claim_one(client, "once")
    await ack(client, claimed, error="boom", retryable=False)
    await meter.paid(0)  # claim and ack are free
    retried = await ok(client.post(f"/infra/jobs/{failing['id']}/retry"))
    assert retried["status"] == "pending"
    await meter.paid(JOB_WRITE)

    await ok(client.get("/infra/queues"))
    await meter.paid(READ)
    await ok(client.put("/infra/queues/q", json={"concurrency": 2}))
    await meter.paid(JOB_WRITE)
    await ok(client.get("/infra/jobs/signing-secret"))
    await meter.paid(READ)
    await ok(client.post("/infra/jobs/signing-secret/rotate"))
    await meter.paid(JOB_WRITE)
    assert await balance_of(client) == "0.9999744"


async def test_workflow_calls_cost_their_price(service: Service) -> None:
    client = service.client
    await set_account(service, balance=1 * TOKEN)
    meter = Meter(client, TOKEN)

    steps = [
        pull_step("a", "wp-a"),
        pull_step("b", "wp-b"),
        pull_step("c", "wp-c", depends_on=["a", "b"]),
    ]
    blueprint = await create_blueprint(client, steps)
    assert await balance_of(client) == "0.9999947"
    meter.nanos -= WORKFLOW_WRITE

    await ok(client.get(BLUEPRINTS))
    await meter.paid(READ)
    await ok(client.get(f"{BLUEPRINTS}/{blueprint['id']}"))
    await meter.paid(READ)

    # A trigger pays the workflow write and one job create per root step it schedules.
    started = await trigger(client, blueprint["id"], idempotency_key="once")
    execution_id = started["execution_id"]
    await meter.paid(WORKFLOW_WRITE + 2 * JOB_WRITE)
    replay = await client.post(
        f"{BLUEPRINTS}/{blueprint['id']}/trigger",
        json={"input_data": {}, "idempotency_key": "once"},
    )
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    await meter.paid(WORKFLOW_WRITE)  # a replay schedules nothing

    await ok(client.get(EXECUTIONS))
    await meter.paid(READ)
    await ok(client.get(f"{EXECUTIONS}/{execution_id}"))
    await meter.paid(READ)
    await ok(client.get(f"{EXECUTIONS}/{execution_id}/events"))
    await meter.paid(READ)

    await ok(client.post(f"{EXECUTIONS}/{execution_id}/pause", json={}))
    await meter.paid(WORKFLOW_WRITE)
    # While paused the results are recorded and nothing is scheduled, so nothing is charged.
    await ack(client, await claim_one(client, "wp-a"), {"a": 1})
    await ack(client, await claim_one(client, "wp-b"), {"b": 2})
    await meter.paid(0)
    # The resume schedules c: the workflow write and one job create.
    resumed = await ok(client.post(f"{EXECUTIONS}/{execution_id}/resume", json={}))
    assert resumed["status"] == "running"
    await meter.paid(WORKFLOW_WRITE + JOB_WRITE)
    await ok(client.post(f"{EXECUTIONS}/{execution_id}/cancel", json={}))
    await meter.paid(WORKFLOW_WRITE)

    # A step failed for good, resumed by id: the write and its new job.
    failing = await create_blueprint(client, [pull_step("f", "wp-f", max_attempts=1)])
    await meter.paid(WORKFLOW_WRITE)
    failed_id = (await trigger(client, failing["id"]))["execution_id"]
    await meter.paid(WORKFLOW_WRITE + JOB_WRITE)
    await ack(client, await claim_one(client, "wp-f"), error="no", retryable=False)
    await meter.paid(0)
    await ok(client.post(f"{EXECUTIONS}/{failed_id}/resume", json={"step_id": "f"}))
    await meter.paid(WORKFLOW_WRITE + JOB_WRITE)


async def test_steps_the_engine_schedules_are_charged_as_job_creates(service: Service) -> None:
    client = service.client
    blueprint = await create_blueprint(client, chain("es"))
    await set_account(service, balance=TOKEN)
    meter = Meter(client, TOKEN)
    execution_id = (await trigger(client, blueprint["id"]))["execution_id"]
    await meter.paid(WORKFLOW_WRITE + JOB_WRITE)
    await ack(client, await claim_one(client, "es-a"), {"done": "a"})
    await meter.paid(JOB_WRITE)  # b was scheduled by the engine when a completed
    await ack(client, await claim_one(client, "es-b"), {"done": "b"})
    await meter.paid(0)
    assert (await wait_status(client, execution_id, "completed"))["status"] == "completed"


async def test_a_balance_that_equals_the_price_is_enough(service: Service) -> None:
    client = service.client
    await set_account(service, balance=JOB_WRITE)
    assert await balance_of(client) == "0.0000018"
    await ok(client.post("/infra/jobs", json={**PULL, "name": "exact"}), 202)
    assert await balance_of(client) == "0"
    refused = await client.post("/infra/jobs", json={**PULL, "name": "over"})
    error_of(refused, 402, "insufficient_tokens")
    assert await balance_of(client) == "0"


# ------------------------------------------------------------------ 402: refused whole


async def test_a_job_create_over_the_balance_is_refused_whole(service: Service) -> None:
    client = service.client
    await set_account(service, balance=1_000)
    refused = await client.post("/infra/jobs", json={**PULL, "name": "dear"})
    error_of(refused, 402, "insufficient_tokens")
    assert await balance_of(client) == "0.000001"
    assert await claim(client, "q", wait=0) == []  # free
    assert await job_names(client) == []  # a read (0.0000008) fits in what is left
    assert await balance_of(client) == "0.0000002"


async def test_a_batch_over_the_balance_creates_none_of_its_jobs(service: Service) -> None:
    client = service.client
    await set_account(service, balance=3 * JOB_WRITE - 1)
    batch = {"jobs": [{**PULL, "name": f"b{i}"} for i in range(3)]}
    error_of(await client.post("/infra/jobs/batch", json=batch), 402, "insufficient_tokens")
    assert await balance_of(client) == "0.000005399"
    assert await claim(client, "q", wait=0, count=10) == []  # a free look at the queue
    # Two of the three would fit; the batch is all or nothing, and a smaller one goes through.
    smaller = {"jobs": batch["jobs"][:2]}
    created = await ok(client.post("/infra/jobs/batch", json=smaller), 202)
    assert [job["name"] for job in created["jobs"]] == ["b0", "b1"]
    assert await balance_of(client) == tokens(JOB_WRITE - 1)
    await set_account(service, balance=TOKEN)
    assert sorted(await job_names(client)) == ["b0", "b1"]


async def test_a_trigger_over_the_balance_starts_no_execution(service: Service) -> None:
    client = service.client
    steps = [pull_step("a", "tr-a"), pull_step("b", "tr-b"), pull_step("c", "tr-c", None, ["a"])]
    blueprint = await create_blueprint(client, steps)
    price = WORKFLOW_WRITE + 2 * JOB_WRITE  # two root steps
    await set_account(service, balance=price - 1)
    body = {"input_data": {"n": 1}, "idempotency_key": "first"}
    refused = await client.post(f"{BLUEPRINTS}/{blueprint['id']}/trigger", json=body)
    error_of(refused, 402, "insufficient_tokens")
    assert await balance_of(client) == "0.000008899"
    assert await claim(client, "tr-a", wait=0) == []
    assert await claim(client, "tr-b", wait=0) == []
    await set_account(service, balance=TOKEN)
    assert (await ok(client.get(EXECUTIONS)))["executions"] == []
    assert await job_names(client) == []
    # Nothing of the refused trigger was kept: its key starts a new execution once paid for.
    again = await client.post(f"{BLUEPRINTS}/{blueprint['id']}/trigger", json=body)
    assert again.status_code == 200, again.text
    assert "idempotent-replayed" not in again.headers
    assert await balance_of(client) == tokens(TOKEN - 2 * READ - price)


async def test_a_blueprint_create_over_the_balance_stores_nothing(service: Service) -> None:
    client = service.client
    await set_account(service, balance=WORKFLOW_WRITE - 1)
    body = {"name": "dear", "steps": [pull_step("a", "bp-a")]}
    error_of(await client.post(BLUEPRINTS, json=body), 402, "insufficient_tokens")
    assert await balance_of(client) == "0.000005299"
    assert (await ok(client.get(BLUEPRINTS)))["blueprints"] == []
    assert await balance_of(client) == "0.000004499"


async def test_a_read_over_the_balance_is_refused(service: Service) -> None:
    client = service.client
    job = await ok(client.post("/infra/jobs", json={**PULL, "name": "seen"}), 202)
    await set_account(service, balance=READ - 1)
    for path in ("/infra/jobs", f"/infra/jobs/{job['id']}", "/infra/queues", BLUEPRINTS):
        error_of(await client.get(path), 402, "insufficient_tokens")
    assert await balance_of(client) == "0.000000799"


async def test_a_resume_over_the_balance_schedules_nothing(service: Service) -> None:
    client = service.client
    blueprint = await create_blueprint(client, chain("rz"))
    execution_id = (await trigger(client, blueprint["id"]))["execution_id"]
    await ok(client.post(f"{EXECUTIONS}/{execution_id}/pause", json={}))
    await ack(client, await claim_one(client, "rz-a"), {"a": 1})
    # The resume would schedule b: it costs the workflow write and one job create.
    await set_account(service, balance=WORKFLOW_WRITE + JOB_WRITE - 1)
    refused = await client.post(f"{EXECUTIONS}/{execution_id}/resume", json={})
    error_of(refused, 402, "insufficient_tokens")
    assert await balance_of(client) == "0.000007099"
    assert await claim(client, "rz-b", wait=0) == []
    await set_account(service, balance=TOKEN)
    state = await execution(client, execution_id)
    assert state["status"] == "paused"
    assert statuses(state) == {"a": "completed", "b": "pending"}
    assert step_of(state, "b")["job_id"] is None
    assert [e["type"] for e in await events(client, execution_id)][-1] != "resumed"


# ------------------------------------------------------------------ order of checks


async def test_404_400_409_come_before_402(service: Service) -> None:
    client = service.client
    # Objects in every state the checks need, made while the project is still unlimited.
    done = await ok(client.post("/infra/jobs", json={**PULL, "name": "done"}), 202)
    await ack(client, await claim_one(client, "q"), {"ok": True})
    waiting = await ok(client.post("/infra/jobs", json={**LATER, "name": "waiting"}), 202)
    one_step = await create_blueprint(client, [pull_step("s", "oc-s")])
    finished = (await trigger(client, one_step["id"]))["execution_id"]
    await ack(client, await claim_one(client, "oc-s"), {"ok": True})
    await wait_status(client, finished, "completed")
    with_input = await create_blueprint(
        client, [pull_step("s", "oc-i", {"x": "{{input.x}}"})], name="needs-input"
    )
    await trigger(client, with_input["id"], {"x": 1}, idempotency_key="k")
    running = (await trigger(client, with_input["id"], {"x": 2}))["execution_id"]
    read_only = await new_key(service, "test", ["jobs:read"])
    await set_account(service, balance=0)

    blueprint_trigger = f"{BLUEPRINTS}/{with_input['id']}/trigger"
    expected: list[tuple[str, str, Any, int]] = [
        # 404: the object does not exist in the project
        ("GET", f"/infra/jobs/{UNKNOWN_JOB}", None, 404),
        ("GET", f"/infra/jobs/{UNKNOWN_JOB}/runs", None, 404),
        ("PATCH", f"/infra/jobs/{UNKNOWN_JOB}", {"payload": 1}, 404),
        ("PATCH", f"/infra/jobs/{UNKNOWN_JOB}", {"payload": 1, "handler": "nope"}, 404),
        ("DELETE", f"/infra/jobs/{UNKNOWN_JOB}", None, 404),
        ("POST", f"/infra/jobs/{UNKNOWN_JOB}/trigger", None, 404),
        ("POST", f"/infra/jobs/{UNKNOWN_JOB}/retry", None, 404),
        ("GET", f"{BLUEPRINTS}/{UNKNOWN_BLUEPRINT}", None, 404),
        ("POST", f"{BLUEPRINTS}/{UNKNOWN_BLUEPRINT}/trigger", {"input_data": {}}, 404),
        ("GET", f"{EXECUTIONS}/{UNKNOWN_EXECUTION}", None, 404),
        ("GET", f"{EXECUTIONS}/{UNKNOWN_EXECUTION}/events", None, 404),
        ("POST", f"{EXECUTIONS}/{UNKNOWN_EXECUTION}/cancel", {}, 404),
        ("POST", f"{EXECUTIONS}/{UNKNOWN_EXECUTION}/resume", {"step_id": 7}, 404),
        # 400: the body or the query is not valid
        ("GET", "/infra/jobs?cursor=not-a-cursor", None, 400),
        ("GET", "/infra/jobs?limit=0", None, 400),
        ("POST", "/infra/jobs", {"name": "no trigger"}, 400),
        ("POST", "/infra/jobs", {"trigger": {"type": "immediate"}}, 400),
        ("POST", "/infra/jobs/batch", {"jobs": []}, 400),
        ("POST", "/infra/jobs/batch", {"jobs": [PULL, {"trigger": {}}]}, 400),
        ("PATCH", f"/infra/jobs/{waiting['id']}", {"handler": "not a url"}, 400),
        ("PATCH", f"/infra/jobs/{done['id']}", {"enabled": "yes"}, 400),
        ("POST", BLUEPRINTS, {"name": "empty", "steps": []}, 400),
        ("POST", blueprint_trigger, {"input_data": {}}, 400),
        ("POST", f"{EXECUTIONS}/{running}/resume", {"step_id": "nope"}, 400),
        ("POST", f"{EXECUTIONS}/{running}/resume", {"override_output": 1}, 400),
        ("PUT", "/infra/queues/q", {"concurrency": 0}, 400),
        ("GET", f"{EXECUTIONS}?status=bogus", None, 400),
        # 409: the object's state does not allow it
        ("PATCH", f"/infra/jobs/{done['id']}", {"payload": 1}, 409),
        ("DELETE", f"/infra/jobs/{done['id']}", None, 409),
        ("POST", f"/infra/jobs/{done['id']}/trigger", None, 409),
        ("POST", f"/infra/jobs/{waiting['id']}/retry", None, 409),
        ("POST", blueprint_trigger, {"input_data": {"x": 9}, "idempotency_key": "k"}, 409),
        ("POST", f"{EXECUTIONS}/{finished}/cancel", {}, 409),
        ("POST", f"{EXECUTIONS}/{finished}/pause", {}, 409),
        ("POST", f"{EXECUTIONS}/{finished}/resume", {}, 409),
        ("POST", f"{EXECUTIONS}/{running}/resume", {}, 409),
        ("POST", f"{EXECUTIONS}/{running}/resume", {"step_id": "s"}, 409),
    ]
    for method, path, body, status in expected:
        response = await client.request(method, path, json=body)
        assert response.status_code == status, (method, path, body, response.text)
    # The body's media type is checked before tokens too (415), and auth before all (401/403).
    raw = await client.post("/infra/jobs", content=b"{}", headers={"content-type": "text/plain"})
    error_of(raw, 415, "unsupported_media_type")
    async with service.client_for(read_only) as reader:
        error_of(await reader.post("/infra/jobs", json=PULL), 403, "forbidden")
    async with service.client_for(None) as anonymous:
        error_of(await anonymous.get("/infra/jobs"), 401, "unauthorized")

    # None of those was charged; a valid call of each kind is the one that meets the 402.
    assert await balance_of(client) == "0"
    for method, path, body in [
        ("GET", f"/infra/jobs/{done['id']}", None),
        ("POST", "/infra/jobs", PULL),
        ("PATCH", f"/infra/jobs/{waiting['id']}", {"payload": 1}),
        ("POST", f"{BLUEPRINTS}/{with_input['id']}/trigger", {"input_data": {"x": 3}}),
        ("POST", f"{EXECUTIONS}/{running}/pause", {}),
    ]:
        response = await client.request(method, path, json=body)
        error_of(response, 402, "insufficient_tokens")


# ------------------------------------------------------------------ free calls


async def test_the_protocols_tokens_and_health_are_free(service: Service) -> None:
    client = service.client
    await set_account(service, balance=2 * JOB_WRITE)
    await ok(client.post("/infra/jobs", json={**PULL, "name": "work"}), 202)
    await ok(client.post("/infra/jobs", json={**PULL, "name": "more"}), 202)
    assert await balance_of(client) == "0"

    first = await claim_one(client, "q")
    beat = await ok(
        client.post(
            f"/infra/jobs/{first['id']}/heartbeat",
            json={"claim_token": first["claim_token"], "visibility_timeout": 60},
        )
    )
    assert beat["status"] == "running"
    assert (await ack(client, first, {"ok": True}))["status"] == "completed"
    second = await claim_one(client, "q")
    assert (await ack(client, second, error="no", retryable=False))["status"] == "failed"
    assert await claim(client, "q", wait=0) == []
    await ok(client.get("/core/tokens/balance"))
    await ok(client.get("/core/tokens/usage"))
    async with service.client_for(None) as anonymous:
        for path in ("/livez", "/readyz", "/healthz"):
            assert (await anonymous.get(path)).status_code == 200
    assert await balance_of(client) == "0"
    # The balance really is empty: a paid call is refused.
    error_of(await client.get("/infra/jobs"), 402, "insufficient_tokens")


# ------------------------------------------------------------------ a step that cannot be paid


async def test_a_step_that_cannot_be_paid_for_pauses_the_execution(service: Service) -> None:
    client = service.client
    blueprint = await create_blueprint(client, chain("np"))
    await set_account(service, balance=WORKFLOW_WRITE + JOB_WRITE)  # the trigger and no more
    execution_id = (await trigger(client, blueprint["id"], {"order": 7}))["execution_id"]
    assert await balance_of(client) == "0"

    acked: list[Json] = []
    stop = anyio.Event()

    async def worker(queue: str) -> None:
        """A pull worker: long-poll claims (free), ack each job completed (free)."""
        while not stop.is_set():
            for job in await claim(client, queue, wait=0.2, count=10):
                await ack(client, job, {"step": job["workflow"]["step_id"]})
                acked.append(job)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, "np-a")
        tg.start_soon(worker, "np-b")
        # An ack is answered once the step's transition is committed; wait for a's.
        with anyio.fail_after(10):
            while not acked:
                await anyio.sleep(0.01)
        assert await balance_of(client) == "0"  # nothing could be charged for b

        await set_account(service, balance=TOKEN)
        meter = Meter(client, TOKEN)
        state = await execution(client, execution_id)
        await meter.paid(READ)
        assert state["status"] == "paused"
        assert state["pause_reason"] == "insufficient_tokens"
        assert statuses(state) == {"a": "completed", "b": "pending"}
        assert step_of(state, "a")["output"] == {"step": "a"}
        assert step_of(state, "b")["job_id"] is None
        log = await events(client, execution_id)
        await meter.paid(READ)
        paused = [event for event in log if event["type"] == "paused"]
        assert [event["data"]["reason"] for event in paused] == ["insufficient_tokens"]
        assert not [event for event in log if event["step_id"] == "b"]
        assert await queue_jobs(client, "np-b") == []
        await meter.paid(READ)

        resumed = await ok(client.post(f"{EXECUTIONS}/{execution_id}/resume", json={}))
        assert resumed["status"] == "running"
        await meter.paid(WORKFLOW_WRITE + JOB_WRITE)
        with anyio.fail_after(10):
            while len(acked) < 2:
                await anyio.sleep(0.01)
        done = await wait_status(client, execution_id, "completed")
        stop.set()
    assert done["result"] == {"a": {"step": "a"}, "b": {"step": "b"}}
    assert done["pause_reason"] is None
    kinds = [event["type"] for event in await events(client, execution_id)]
    assert kinds.index("paused") < kinds.index("resumed") < kinds.index("completed")


# ------------------------------------------------------------------ usage


def family_counts(usage: Json) -> dict[str, tuple[int, str]]:
    """Today's ``by_family`` as {family: (calls, tokens)}; checks the day's totals add up."""
    assert set(usage) == {"project_id", "granularity", "series"}
    assert usage["granularity"] == "day"
    [day] = usage["series"]
    assert set(day) == {"period_start", "calls", "total", "by_family"}
    assert day["period_start"] == today_start()
    assert all(set(entry) == {"calls", "tokens"} for entry in day["by_family"].values())
    counts = {name: (f["calls"], f["tokens"]) for name, f in day["by_family"].items()}
    assert day["calls"] == sum(calls for calls, _ in counts.values())
    total = sum(round(float(spent) * TOKEN) for _, spent in counts.values())
    assert day["total"] == tokens(total)
    return counts


async def test_usage_counts_calls_and_tokens_per_family_at_once(service: Service) -> None:
    client = service.client
    read_only = await new_key(service, "test", ["jobs:read"])
    await ok(client.post("/infra/jobs", json={**PULL, "name": "u1"}), 202)
    await ok(client.post("/infra/jobs", json={**PULL, "name": "u2"}), 202)
    batch = {"jobs": [{**PULL, "name": f"ub{i}"} for i in range(3)]}
    await ok(client.post("/infra/jobs/batch", json=batch), 202)
    await ok(client.get("/infra/jobs"))
    error_of(await client.get(f"/infra/jobs/{UNKNOWN_JOB}"), 404, "not_found")
    await claim_one(client, "q")
    async with service.client_for(read_only) as reader:
        error_of(await reader.post("/infra/jobs", json=PULL), 403, "forbidden")
    blueprint = await create_blueprint(client, [pull_step("a", "us-a")])
    await trigger(client, blueprint["id"])
    await ok(client.get("/infra/queues"))
    await ok(client.put("/infra/queues/q", json={"paused": False}))

    usage = await ok(client.get("/core/tokens/usage"))
    assert usage["project_id"] == service.project_id
    expected = {
        "infra/jobs": (7, tokens(5 * JOB_WRITE + READ)),
        "infra/workflows": (2, tokens(2 * WORKFLOW_WRITE + JOB_WRITE)),
        "infra/queues": (2, tokens(READ + JOB_WRITE)),
        "core/tokens": (1, "0"),  # this very call counts, and costs nothing
    }
    assert family_counts(usage) == expected
    assert usage["series"][0]["calls"] == 12
    assert usage["series"][0]["total"] == "0.0000248"

    # Once the write-behind ran, the stored rows and the in-memory part are not counted twice.
    await wait_usage_stored(service.db, service.project_id, 11)
    again = await ok(client.get("/core/tokens/usage"))
    assert family_counts(again) == {**expected, "core/tokens": (2, "0")}


async def test_usage_counts_refused_calls(service: Service) -> None:
    client = service.client
    await set_account(service, balance=0)
    error_of(await client.post("/infra/jobs", json=PULL), 402, "insufficient_tokens")
    error_of(await client.get(BLUEPRINTS), 402, "insufficient_tokens")
    usage = await ok(client.get("/core/tokens/usage"))
    assert family_counts(usage) == {
        "infra/jobs": (1, "0"),
        "infra/workflows": (1, "0"),
        "core/tokens": (1, "0"),
    }


def _stored_usage_calls(db: str, project_id: str) -> int:
    sql = "SELECT COALESCE(SUM(calls), 0) FROM usage WHERE project_id = ?"
    [(calls,)] = read(db, sql, project_id)
    return int(calls)


async def wait_usage_stored(db: str, project_id: str, calls: int, timeout: float = 5) -> None:
    """Wait until the write-behind put at least ``calls`` calls of the project in SQLite."""
    with anyio.fail_after(timeout):
        while await anyio.to_thread.run_sync(_stored_usage_calls, db, project_id) < calls:
            await anyio.sleep(0.05)


def _sql(db: str, statement: str, *args: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        rows = conn.execute(statement, args).fetchall()
        conn.commit()
    return rows


async def test_usage_and_balance_survive_restarts(tmp_path: Path, server_process: Any) -> None:
    db = str(tmp_path / "restart.db")
    created = create_key_sync(db, "survivor", list(ALL_SCOPES))
    project_id = created.record.project_id
    _sql(db, "UPDATE projects SET token_balance = ? WHERE id = ?", TOKEN, project_id)
    headers = {"Authorization": f"Bearer {created.key}"}

    async def calls(server: ServerProcess) -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
            await ok(client.post("/infra/jobs", json={**PULL, "name": "kept"}), 202)
            await ok(client.get("/infra/jobs"))
            await ok(client.post(BLUEPRINTS, json={"name": "b", "steps": [pull_step("a", "r")]}))
            error_of(await client.get(f"/infra/jobs/{UNKNOWN_JOB}"), 404, "not_found")

    async def observe(server: ServerProcess) -> tuple[str | None, Json]:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
            return await balance_of(client), await ok(client.get("/core/tokens/usage"))

    one_round = JOB_WRITE + READ + WORKFLOW_WRITE

    # 1. Calls, then a kill -9 once the write-behind (every second) has run.
    first = server_process(db)
    await calls(first)
    balance, usage = await observe(first)
    assert balance == tokens(TOKEN - one_round)
    assert family_counts(usage) == {
        "infra/jobs": (3, tokens(JOB_WRITE + READ)),
        "infra/workflows": (1, tokens(WORKFLOW_WRITE)),
        "core/tokens": (2, "0"),
    }
    with anyio.fail_after(5):
        while True:
            [(stored,)] = _sql(db, "SELECT token_balance FROM projects WHERE id = ?", project_id)
            if stored == TOKEN - one_round and _stored_usage_calls(db, project_id) == 6:
                break
            await anyio.sleep(0.05)
    first.kill9()

    # 2. What was written behind survived; more calls, then a graceful stop at once.
    second = server_process(db)
    balance, usage = await observe(second)
    assert balance == tokens(TOKEN - one_round)
    assert family_counts(usage) == {
        "infra/jobs": (3, tokens(JOB_WRITE + READ)),
        "infra/workflows": (1, tokens(WORKFLOW_WRITE)),
        "core/tokens": (4, "0"),
    }
    await calls(second)
    assert second.terminate() == 0

    # 3. A graceful stop writes what it had not written yet.
    third = server_process(db)
    balance, usage = await observe(third)
    assert balance == tokens(TOKEN - 2 * one_round)
    assert family_counts(usage) == {
        "infra/jobs": (6, tokens(2 * (JOB_WRITE + READ))),
        "infra/workflows": (2, tokens(2 * WORKFLOW_WRITE)),
        "core/tokens": (6, "0"),
    }


async def test_written_behind_balance_matches_memory(service: Service) -> None:
    client = service.client
    await set_account(service, balance=TOKEN)
    for index in range(5):
        await ok(client.post("/infra/jobs", json={**PULL, "name": f"w{index}"}), 202)
    await written_behind(service, service.project_id)
    stored = await anyio.to_thread.run_sync(
        read, service.db, "SELECT token_balance FROM projects WHERE id = ?", service.project_id
    )
    assert stored == [(TOKEN - 5 * JOB_WRITE,)]
    assert await balance_of(client) == tokens(TOKEN - 5 * JOB_WRITE)


async def test_usage_is_exact_across_write_behinds(service: Service) -> None:
    """Usage read while the write-behind commits counts every call once, never 0 or 2 times.

    One task makes calls while others read the usage: each answer must count at least the
    calls answered before it was asked, and at most those sent before it was answered.
    """
    client = service.client
    sent = answered = 0
    problems: list[str] = []
    stop = anyio.Event()

    async def caller() -> None:
        nonlocal sent, answered
        while not stop.is_set():
            sent += 1
            await ok(client.get("/infra/queues"))
            answered += 1

    async def reader() -> None:
        async with service.client_for(service.key) as own:
            while not stop.is_set():
                low = answered
                counts = family_counts(await ok(own.get("/core/tokens/usage")))
                calls = counts.get("infra/queues", (0, "0"))[0]
                if not low <= calls <= sent:
                    problems.append(f"{calls} calls counted, {low}..{sent} made")

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        for _ in range(4):
            tg.start_soon(reader)
        await anyio.sleep(3.5)  # spans at least three write-behinds
        stop.set()
    assert problems == []
    assert family_counts(await ok(client.get("/core/tokens/usage")))["infra/queues"] == (
        answered,
        tokens(answered * READ),
    )
