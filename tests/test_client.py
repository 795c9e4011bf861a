"""The Python SDK against the real server: every method on both clients, pages, errors,
retries."""

import time
from email.utils import formatdate
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from flowyard.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    ConnectionFailed,
    FlowyardAPIError,
    Forbidden,
    NotFound,
    Page,
    RateLimited,
    RetryPolicy,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    WaitTimeout,
    job_spec,
)
from flowyard.client.core import retry_after
from flowyard.client.models import ClaimedJob, Execution, Job, ProjectJob, Run, Triggered
from flowyard.jobs.model import Delayed, PullQueue, Scheduled
from flowyard.jobs.spec import JobOptions, JobPatch
from flowyard.storage.projects import create_key_sync
from flowyard.workflows.blueprint import BlueprintSpec, Step
from tests.conftest import Handler, Service, free_port
from tests.sdk_support import Api, close, counting_api


def pull(queue: str = "q", payload: Any = None, **fields: Any) -> dict[str, Any]:
    return {"trigger": {"type": "pull", "queue": queue}, "payload": payload, **fields}


# ---------------------------------------------------------------------------- jobs


async def test_jobs_create_get_list_update_cancel(api: Api, handler: Handler) -> None:
    created = await api.jobs.create(pull("q", {"n": 1}, name="first"))
    assert isinstance(created, Job)
    assert (created.status, created.payload, created.name) == ("pending", {"n": 1}, "first")
    typed = await api.jobs.create(job_spec(PullQueue(queue="q"), [1, 2], priority=2))
    assert (typed.payload, typed.priority) == ([1, 2], 2)

    assert await api.jobs.get(created.id) == created
    page = await api.jobs.list(queue="q", status="pending")
    assert isinstance(page, Page)
    assert [job.id for job in page.items] == [typed.id, created.id]
    assert page.next_cursor is None

    delayed = await api.jobs.create(
        job_spec(Delayed(delay_seconds=3600), {"v": 1}, handler=handler.at("/d"))
    )
    updated = await api.jobs.update(delayed.id, JobPatch(payload=msgspec.Raw(b'{"v":2}')))
    assert updated.payload == {"v": 2}
    updated = await api.jobs.update(delayed.id, {"enabled": False})
    assert updated.enabled is False

    cancelled = await api.jobs.cancel(delayed.id)
    assert cancelled.status == "cancelled"


async def test_jobs_batch_trigger_retry_runs(api: Api, handler: Handler) -> None:
    batch = await api.jobs.create_batch([pull("b", {"i": i}) for i in range(3)])
    assert [job.payload for job in batch] == [{"i": 0}, {"i": 1}, {"i": 2}]

    cron = await api.jobs.create(
        {
            "trigger": {"type": "scheduled", "schedule": "0 0 1 1 *"},
            "handler": handler.at("/cron"),
        }
    )
    assert isinstance(cron.trigger, Scheduled)
    fired = await api.jobs.trigger(cron.id)
    assert fired.id == cron.id
    await handler.wait_for("/cron")

    one_shot = await api.jobs.create(pull("r", max_attempts=1))
    [claimed] = await api.jobs.claim("r", wait_seconds=1)
    failed = await api.jobs.ack(
        claimed.id, claimed.claim_token, status="failed", error="boom", retryable=False
    )
    assert (failed.status, failed.error) == ("failed", "boom")
    retried = await api.jobs.retry(one_shot.id)
    assert retried.status == "pending"

    runs = await api.jobs.runs(one_shot.id)
    assert [(run.status, run.error) for run in runs.items] == [("failed", "boom")]
    assert all(isinstance(run, Run) for run in await api.jobs.iter_runs(one_shot.id))


async def test_pull_protocol(api: Api) -> None:
    job = await api.jobs.create(pull("work", {"x": 1}))
    assert await api.jobs.claim("empty", wait_seconds=0) == []
    started = time.monotonic()
    [claimed] = await api.jobs.claim("work", count=5, visibility_timeout=10, wait_seconds=2)
    assert time.monotonic() - started < 2
    assert isinstance(claimed, ClaimedJob)
    assert (claimed.id, claimed.status, claimed.attempt) == (job.id, "running", 1)
    assert claimed.claim_token

    beat = await api.jobs.heartbeat(claimed.id, claimed.claim_token, visibility_timeout=60)
    assert beat.claimed_until is not None and claimed.claimed_until is not None
    assert beat.claimed_until > claimed.claimed_until

    done = await api.jobs.ack(claimed.id, claimed.claim_token, result={"ok": True})
    assert (done.status, done.result) == ("completed", {"ok": True})
    with pytest.raises(Conflict):
        await api.jobs.ack(claimed.id, claimed.claim_token, result=1)


async def test_long_poll_outlasts_the_client_timeout(service: Service) -> None:
    """A claim's ``wait_seconds`` is added to the read timeout."""
    async with AsyncClient(service.url, service.key, timeout=0.5) as client:
        started = time.monotonic()
        assert await client.jobs.claim("idle", wait_seconds=1) == []
        assert time.monotonic() - started >= 0.9


async def test_signing_secret(api: Api) -> None:
    secret = await api.jobs.signing_secret()
    assert isinstance(secret, str) and secret
    rotated = await api.jobs.rotate_signing_secret()
    assert rotated != secret
    assert await api.jobs.signing_secret() == rotated


async def test_queues(api: Api) -> None:
    await api.jobs.create(pull("mail"))
    queue = await api.queues.put("mail", concurrency=3, paused=True)
    assert (queue.name, queue.concurrency, queue.paused, queue.depth) == ("mail", 3, True, 1)
    queue = await api.queues.put("mail", concurrency=None)  # null clears, the rest unchanged
    assert (queue.concurrency, queue.paused) == (None, True)
    page = await api.queues.list()
    assert [q.name for q in page.items] == ["mail"]
    for name in ("a", "b", "c"):
        await api.queues.put(name, rate_limit_per_second=5)
    names = [q.name for q in await api.queues.iter(limit=2)]
    assert names == ["a", "b", "c", "mail"]
    queue = await api.queues.put("mail", handler="http://127.0.0.1:9/mail")
    assert (queue.handler, queue.concurrency, queue.paused) == (
        "http://127.0.0.1:9/mail",
        None,
        True,
    )
    assert (await api.queues.put("mail", handler=None)).handler is None


async def test_whoami(api: Api, service: Service) -> None:
    me = await api.whoami()
    assert (me.project_id, me.project_name, me.name) == (service.project_id, "test", "test")
    assert me.key_id.startswith("key_") and me.scopes and not me.admin


async def test_tokens(api: Api) -> None:
    balance = await api.tokens.balance()
    assert balance.total_balance is None
    await api.jobs.create(pull())
    usage = await api.tokens.usage()
    assert usage.series and usage.series[-1].calls >= 1


# ----------------------------------------------------------------------- workflows


def steps() -> list[dict[str, Any]]:
    return [
        {"id": "a", "job_trigger": {"trigger": {"type": "pull", "queue": "wf-a"}}},
        {
            "id": "b",
            "depends_on": ["a"],
            "job_trigger": {"trigger": {"type": "pull", "queue": "wf-b"}},
            "payload_template": {"from_a": "{{steps.a.output}}"},
        },
    ]


async def test_workflows(api: Api) -> None:
    typed = BlueprintSpec(
        name="typed",
        steps=[Step(id="only", job_trigger=JobOptions(trigger=PullQueue(queue="wf-typed")))],
    )
    first = await api.workflows.create_blueprint(typed)
    assert [step.id for step in first.steps] == ["only"]
    blueprint = await api.workflows.create_blueprint({"name": "two", "steps": steps()})
    assert await api.workflows.get_blueprint(blueprint.id) == blueprint
    listed = await api.workflows.list_blueprints()
    assert [b.id for b in listed.items] == [blueprint.id, first.id]

    started = await api.workflows.trigger(blueprint.id, {"x": 1}, idempotency_key="k1")
    assert isinstance(started, Triggered)
    assert (started.status, started.replayed) == ("running", False)
    again = await api.workflows.trigger(blueprint.id, {"x": 1}, idempotency_key="k1")
    assert (again.execution_id, again.replayed) == (started.execution_id, True)
    with pytest.raises(Conflict):
        await api.workflows.trigger(blueprint.id, {"x": 2}, idempotency_key="k1")

    execution = await api.workflows.get_execution(started.execution_id)
    assert isinstance(execution, Execution)
    assert {s.step_id: s.status for s in execution.steps} == {"a": "queued", "b": "pending"}

    paused = await api.workflows.pause(started.execution_id)
    assert paused.status == "paused" and paused.paused_at
    resumed = await api.workflows.resume(
        started.execution_id, step_id="a", override_output={"ok": 1}, reason="by hand"
    )
    assert resumed.status == "running"
    execution = await api.workflows.get_execution(started.execution_id)
    assert execution.result == {"a": {"ok": 1}}
    [b_job] = await api.jobs.claim("wf-b", wait_seconds=2)
    assert b_job.payload == {"from_a": {"ok": 1}}

    events = await api.workflows.events(started.execution_id, limit=2)
    assert [e.type for e in events.items] == ["triggered", "step_queued"]
    assert events.next_cursor is not None
    every = await api.workflows.iter_events(started.execution_id, limit=2)
    assert [e.seq for e in every] == sorted(e.seq for e in every)
    assert "output_overridden" in {e.type for e in every}

    cancelled = await api.workflows.cancel(started.execution_id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at
    with pytest.raises(Conflict):
        await api.workflows.pause(started.execution_id)
    page = await api.workflows.list_executions(blueprint_id=blueprint.id, status="cancelled")
    assert [e.id for e in page.items] == [started.execution_id]


async def test_wait_for_execution_returns_it_once_it_has_ended(api: Api) -> None:
    only = [{"id": "only", "job_trigger": {"trigger": {"type": "pull", "queue": "wf-wait"}}}]
    blueprint = await api.workflows.create_blueprint({"name": "wait", "steps": only})
    started = await api.workflows.trigger(blueprint.id)
    with pytest.raises(WaitTimeout) as raised:
        await api.workflows.wait_for_execution(started.execution_id, timeout=0.2, interval=0.05)
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.last.status == "running" and raised.value.last.id == started.execution_id
    ended: list[Execution] = []

    async def wait() -> None:
        ended.append(await api.workflows.wait_for_execution(started.execution_id, timeout=20))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            [job] = await api.jobs.claim("wf-wait", wait_seconds=10)
            await api.jobs.ack(job.id, job.claim_token, result={"done": True})
    assert [(e.status, e.result) for e in ended] == [("completed", {"only": {"done": True}})]
    # A paused execution may go on: it is waited for; a cancelled one has ended.
    other = await api.workflows.trigger(blueprint.id)
    await api.workflows.pause(other.execution_id)
    with pytest.raises(WaitTimeout):
        await api.workflows.wait_for_execution(other.execution_id, timeout=0.2, interval=0.05)
    await api.workflows.cancel(other.execution_id)
    cancelled = await api.workflows.wait_for_execution(other.execution_id, timeout=5)
    assert cancelled.status == "cancelled"
    with pytest.raises(NotFound):
        await api.workflows.wait_for_execution("wfexec_01JZZZZZZZZZZZZZZZZZZZZZZZ", timeout=5)


async def test_resume_without_step_and_with_null_override(api: Api) -> None:
    blueprint = await api.workflows.create_blueprint({"name": "two", "steps": steps()})
    started = await api.workflows.trigger(blueprint.id)
    await api.workflows.pause(started.execution_id)
    assert (await api.workflows.resume(started.execution_id)).status == "running"
    await api.workflows.resume(started.execution_id, "a", None)  # null is an output too
    execution = await api.workflows.get_execution(started.execution_id)
    assert execution.result == {"a": None}
    with pytest.raises(BadRequest):
        await api.workflows.resume(started.execution_id, override_output=1)


async def test_signal_completes_a_waiting_step_and_replays_by_key(api: Api) -> None:
    waits = {"id": "w", "wait_for_signal": {"name": "approval"}}
    blueprint = await api.workflows.create_blueprint({"name": "wait", "steps": [waits]})
    started = await api.workflows.trigger(blueprint.id)
    early = await api.workflows.signal(started.execution_id, "other", [1], idempotency_key="k")
    assert early.consumed_by is None and not early.replayed
    again = await api.workflows.signal(started.execution_id, "other", [1], idempotency_key="k")
    assert again.replayed and again.signal_id == early.signal_id
    sent = await api.workflows.signal(started.execution_id, "approval", {"ok": True})
    assert (sent.execution_id, sent.name, sent.consumed_by) == (
        started.execution_id,
        "approval",
        "w",
    )
    done = await api.workflows.wait_for_execution(started.execution_id, timeout=5)
    assert done.status == "completed" and done.result == {"w": {"ok": True}}
    assert done.steps[0].signal_id == sent.signal_id
    with pytest.raises(Conflict):
        await api.workflows.signal(started.execution_id, "approval")
    with pytest.raises(BadRequest):
        await api.workflows.signal(started.execution_id, "")


# ---------------------------------------------------------------------- pagination


async def test_iterators_follow_cursors(api: Api) -> None:
    jobs = [await api.jobs.create(pull("many", {"i": i})) for i in range(7)]
    first = await api.jobs.list(queue="many", limit=3)
    assert len(first.items) == 3 and first.next_cursor
    second = await api.jobs.list(queue="many", limit=3, cursor=first.next_cursor)
    assert [j.id for j in second.items] == [j.id for j in reversed(jobs)][3:6]
    every = await api.jobs.iter(queue="many", limit=3)
    assert [j.id for j in every] == [j.id for j in reversed(jobs)]
    assert len(await api.jobs.iter(queue="many")) == 7  # pages of 100

    blueprints = [
        await api.workflows.create_blueprint({"name": f"bp{i}", "steps": steps()}) for i in range(3)
    ]
    found = await api.workflows.iter_blueprints(limit=2)
    assert [b.id for b in found] == [b.id for b in reversed(blueprints)]
    for blueprint in blueprints:
        await api.workflows.trigger(blueprint.id)
    executions = await api.workflows.iter_executions(limit=2)
    assert len(executions) == 3 and len({e.id for e in executions}) == 3

    retried = await api.jobs.create(pull("runs", max_attempts=3))
    for _ in range(3):
        [claimed] = await api.jobs.claim("runs", wait_seconds=5)
        await api.jobs.ack(claimed.id, claimed.claim_token, status="failed", error="no")
    runs = await api.jobs.iter_runs(retried.id, limit=2)
    assert [r.attempt for r in runs] == [3, 2, 1]


# -------------------------------------------------------------------------- errors


async def test_typed_errors(api: Api, service: Service) -> None:
    with pytest.raises(NotFound) as not_found:
        await api.jobs.get("job_nope")
    error = not_found.value
    assert (error.status, error.code, error.details) == (404, "not_found", [])
    assert "job_nope" in error.message and isinstance(error, FlowyardAPIError)

    bad = {"name": "bad", "steps": [{**steps()[1], "depends_on": ["ghost"]}]}
    with pytest.raises(BadRequest) as bad_request:
        await api.workflows.create_blueprint(bad)
    assert bad_request.value.status == 400
    assert {d["path"] for d in bad_request.value.details} >= {"$.steps[0].depends_on[0]"}

    job = await api.jobs.create(pull())
    await api.jobs.cancel(job.id)
    with pytest.raises(Conflict) as conflict:
        await api.jobs.cancel(job.id)
    assert (conflict.value.status, conflict.value.code) == (409, "conflict")

    for key, expected in (("sk_live_" + "x" * 32, Unauthorized), (None, Unauthorized)):
        outsider = AsyncClient(service.url, key) if not api.sync else Client(service.url, key)
        try:
            with pytest.raises(expected) as refused:
                await Api(outsider, api.sync).jobs.get(job.id)
            assert refused.value.status == 401
        finally:
            await close(outsider)

    reader = service.new_key("test", scopes=["jobs:read"])
    limited = Client(service.url, reader) if api.sync else AsyncClient(service.url, reader)
    try:
        with pytest.raises(Forbidden, match="jobs:write"):
            await Api(limited, api.sync).jobs.create(pull())
        assert (await Api(limited, api.sync).jobs.get(job.id)).id == job.id
    finally:
        await close(limited)


def test_error_for_an_answer_that_is_not_flowyard_json() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/infra/jobs/garbled":
            return httpx.Response(200, content=b'{"id": 1}')
        return httpx.Response(502, content=b"<html>bad gateway</html>")

    with Client("http://flowyard.test", "k", transport=httpx.MockTransport(proxy)) as client:
        with pytest.raises(FlowyardAPIError) as gateway:
            client.jobs.get("job_1")
        assert (gateway.value.status, gateway.value.code) == (502, "http_502")
        assert "bad gateway" in gateway.value.message
        with pytest.raises(UnexpectedResponse, match="/infra/jobs/garbled"):
            client.jobs.get("garbled")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"project_id": "proj_1", "total_balance": "1.5"})

    monkeypatch.setenv("FLOWYARD_URL", "http://env.test:9000/base/")
    monkeypatch.setenv("FLOWYARD_API_KEY", "sk_live_env")
    with Client(transport=httpx.MockTransport(record)) as client:
        assert client.tokens.balance().total_balance == "1.5"
    assert str(seen[0].url) == "http://env.test:9000/base/core/tokens/balance"
    assert seen[0].headers["authorization"] == "Bearer sk_live_env"


def test_ids_are_one_path_segment() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"code": "not_found", "message": "no"})

    transport = httpx.MockTransport(record)
    with Client("http://x.test", "k", transport=transport) as client, pytest.raises(NotFound):
        client.jobs.get("../admin/stats")
    assert seen == ["/infra/jobs/..%2Fadmin%2Fstats"]


# ------------------------------------------------------------------------- retries


async def set_rate(service: Service, project_id: str, rps: float | None) -> None:
    """Through the admin API, which applies the limit at once."""
    admin = await anyio.to_thread.run_sync(
        lambda: create_key_sync(service.db, "ops", ["*"], admin=True)
    )
    async with AsyncClient(service.url, admin.key) as client:
        await client.admin.update_project(project_id, rate_limit_rps=rps)


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
async def test_rate_limited_calls_are_retried_after_retry_after(
    service: Service, sync: bool
) -> None:
    await set_rate(service, service.project_id, 2)
    api, statuses, client = counting_api(sync, service.url, service.key)
    try:
        started = time.monotonic()
        for _ in range(4):  # a burst of 2, then one token every 0.5 s
            await api.jobs.create(pull())
        elapsed = time.monotonic() - started
    finally:
        await close(client)
    assert statuses.count(429) >= 1 and statuses.count(202) == 4
    assert elapsed >= 0.9  # Retry-After: 1 was waited for


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
async def test_rate_limited_is_raised_when_retries_run_out(service: Service, sync: bool) -> None:
    await set_rate(service, service.project_id, 1)
    api, statuses, client = counting_api(
        sync, service.url, service.key, retry=RetryPolicy(max_retries=1, max_wait=0.5)
    )
    try:
        await api.tokens.balance()
        with pytest.raises(RateLimited) as refused:
            await api.jobs.list()
    finally:
        await close(client)
    assert statuses == [200, 429]  # Retry-After (1 s) is past max_wait: no retry
    assert refused.value.headers["retry-after"] == "1"
    assert refused.value.headers["x-ratelimit-limit"] == "1"


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
async def test_unavailable_is_retried_until_the_server_is_back(
    service: Service, sync: bool
) -> None:
    jobs = service.supervisor.jobs
    api, statuses, client = counting_api(sync, service.url, service.key)
    try:
        jobs.begin_shutdown()  # every call answers 503 with Retry-After: 1
        async with anyio.create_task_group() as tg:

            async def back_soon() -> None:
                await anyio.sleep(0.3)
                jobs.stopping = False

            tg.start_soon(back_soon)
            job = await api.jobs.create(pull())
        assert job.status == "pending"
        assert statuses == [503, 202]

        jobs.begin_shutdown()
        statuses.clear()
        never = counting_api(sync, service.url, service.key, retry=RetryPolicy.never())
        with pytest.raises(Unavailable) as unavailable:
            await never[0].jobs.get(job.id)
        await close(never[2])
        assert unavailable.value.headers["retry-after"] == "1"
    finally:
        jobs.stopping = False
        await close(client)


def test_retry_policy_bounds() -> None:
    policy = RetryPolicy(max_retries=3, max_wait=5, backoff=0.5, max_delay=2)
    refused = httpx.Response(503, headers={"retry-after": "2"})
    assert 2 <= (policy.delay(0, 0, refused) or 0) <= 2.25
    assert policy.delay(0, 3.5, refused) is None  # would pass max_wait
    assert policy.delay(3, 0, refused) is None  # max_retries
    assert policy.delay(0, 0, httpx.Response(500)) is None  # not a refusal
    assert 0.25 <= (policy.delay(0, 0, httpx.Response(429)) or 0) <= 0.5
    assert 1 <= (policy.delay(2, 0, None) or 0) <= 2  # connection errors back off, capped
    assert RetryPolicy.never().delay(0, 0, refused) is None
    in_3s = httpx.Response(429, headers={"retry-after": formatdate(time.time() + 3, usegmt=True)})
    assert 1.5 <= (retry_after(in_3s) or 0) <= 3.5
    assert retry_after(httpx.Response(429, headers={"retry-after": "soon"})) is None


def test_connection_errors_are_retried() -> None:
    attempts: list[float] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"signing_secret": "s"})

    retry = RetryPolicy(backoff=0.01)
    with Client("http://x.test", "k", transport=httpx.MockTransport(flaky), retry=retry) as client:
        assert client.jobs.signing_secret() == "s"
    assert len(attempts) == 3


@pytest.mark.parametrize("sync", [True, False])
async def test_an_unreachable_server_raises_connection_failed(sync: bool) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    dead, _, client = counting_api(sync, url, "k", retry=RetryPolicy(max_retries=2, backoff=0.01))
    try:
        with pytest.raises(ConnectionFailed) as raised:
            await dead.jobs.signing_secret()
    finally:
        await close(client)
    failed = raised.value
    assert isinstance(failed, FlowyardAPIError)
    assert failed.url == f"{url}/infra/jobs/signing-secret"
    assert isinstance(failed.cause, httpx.ConnectError)
    assert failed.message.startswith(f"cannot reach {failed.url}: ")
    assert failed.message.endswith(" s)") and "after 2 retries" in failed.message


# --------------------------------------------------------------------------- admin


async def test_admin(api: Api, service: Service) -> None:
    admin_key = await anyio.to_thread.run_sync(
        lambda: create_key_sync(service.db, "ops", ["*"], admin=True)
    )
    raw: Any = Client(service.url, admin_key.key) if api.sync else None
    raw = raw or AsyncClient(service.url, admin_key.key)
    admin = Api(raw, api.sync).admin
    try:
        project = await admin.create_project("acme")
        assert (project.name, project.rate_limit_rps, project.token_balance) == ("acme", None, None)
        assert (await admin.get_project(project.id)).id == project.id
        listed = await admin.list_projects(limit=1)
        assert len(listed.items) == 1 and listed.next_cursor
        assert project.id in {p.id for p in await admin.iter_projects(limit=1)}
        updated = await admin.update_project(project.id, rate_limit_rps=50, token_balance="2.5")
        assert (updated.rate_limit_rps, updated.token_balance) == (50, "2.5")
        updated = await admin.update_project(project.id, token_balance=None)
        assert (updated.rate_limit_rps, updated.token_balance) == (50, None)

        created = await admin.create_key(project.id, name="ci", scopes=["jobs:read", "jobs:write"])
        assert created.key.startswith("sk_live_") and created.scopes == ["jobs:read", "jobs:write"]
        tenant = AsyncClient(service.url, created.key)
        try:
            job = await tenant.jobs.create(pull("tenant-q"))
            keys = await admin.list_keys(project_id=project.id)
            assert [k.id for k in keys.items] == [created.id]
            assert created.id in {k.id for k in await admin.iter_keys(limit=1)}
            revoked = await admin.revoke_key(created.id)
            assert revoked.revoked_at is not None
            with pytest.raises(Unauthorized):
                await tenant.jobs.get(job.id)
        finally:
            await tenant.aclose()

        jobs = await admin.list_jobs(project_id=project.id)
        assert [(j.id, j.project_id) for j in jobs.items] == [(job.id, project.id)]
        assert all(isinstance(j, ProjectJob) for j in await admin.iter_jobs(status="pending"))
        blueprint = await api.workflows.create_blueprint({"name": "x", "steps": steps()})
        started = await api.workflows.trigger(blueprint.id)
        executions = await admin.list_executions(project_id=service.project_id)
        assert [e.id for e in executions.items] == [started.execution_id]
        assert len(await admin.iter_executions(status="running")) == 1
        stats = await admin.stats(project_id=project.id)
        [counts] = stats.projects
        assert (counts.project_id, counts.jobs["pending"]) == (project.id, 1)

        with pytest.raises(Forbidden):
            await api.admin.list_projects()
    finally:
        await close(raw)
