"""``GET /metrics`` against the real server process: every metric of DESIGN §9 is there, each
one moves by what known work should move it, no label holds an id, and the token guards it.

With ``--store postgresql`` the same tests run on a PostgreSQL database (the group-commit
writer is then the PostgreSQL one).
"""

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from flowyard.actors.mailbox import Mailbox
from flowyard.errors import MailboxFull
from flowyard.http.inflight import InflightLimit
from flowyard.metrics import SCRAPE_INTERVAL, Metrics
from flowyard.storage import commits
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from flowyard.storage.sqlite import Database
from tests.conftest import Handler, ServerProcess, Service, fresh_db
from tests.raw_http import exchange, read_answer, request_head
from tests.workflow_support import create_blueprint, pull_step, trigger

StartServer = Callable[..., ServerProcess]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

FAMILIES = {
    "flowyard_http_requests": "counter",
    "flowyard_http_request_duration_seconds": "histogram",
    "flowyard_jobs_created": "counter",
    "flowyard_jobs_finished": "counter",
    "flowyard_job_queue_depth": "gauge",
    "flowyard_job_wait_seconds": "histogram",
    "flowyard_job_run_seconds": "histogram",
    "flowyard_executions_started": "counter",
    "flowyard_executions_finished": "counter",
    "flowyard_executions_live": "gauge",
    "flowyard_step_handoff_seconds": "histogram",
    "flowyard_commit_batch_rows": "histogram",
    "flowyard_commit_duration_seconds": "histogram",
    "flowyard_webhook_deliveries": "counter",
    "flowyard_mailbox_full": "counter",
}
"""Every metric of DESIGN §9, as the parser names its family (a counter without ``_total``)."""
AN_ID = re.compile(r"(proj|key|job|run|wf|wfexec|whk|evt|whd|wfsch)_[0-9A-Za-z]{10,}")
QUEUE = "metered"
DIAMOND = [
    pull_step("a", QUEUE),
    pull_step("b", QUEUE, depends_on=["a"]),
    pull_step("c", QUEUE, depends_on=["a"]),
    pull_step("d", QUEUE, depends_on=["b", "c"]),
]


@pytest.fixture
def served(server_process: StartServer, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``await served(*args)``: a fresh database, a key for it, and ``flowyard serve`` on it."""

    async def start(*args: str) -> tuple[ServerProcess, str, str]:
        db = fresh_db(tmp_path)
        key = create_key_sync(db, "metered", list(ALL_SCOPES)).key
        server = await anyio.to_thread.run_sync(lambda: server_process(db, *args))
        return server, key, db

    yield start


def api(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


async def scrape(url: str, token: str | None = None) -> Samples:
    """Every sample of ``GET /metrics`` (sent without an API key)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as plain:
        response = await plain.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Moves:
    """What moved between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


async def run_pull_jobs(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """Claim and ack ``count`` jobs of :data:`QUEUE` as they become ready; the jobs claimed."""
    done: list[dict[str, Any]] = []
    with anyio.fail_after(30):
        while len(done) < count:
            claimed = await client.post(
                "/infra/jobs/claim", json={"queue": QUEUE, "count": 20, "wait_seconds": 1}
            )
            assert claimed.status_code == 200, claimed.text
            for job in claimed.json():
                body = {
                    "status": "completed",
                    "result": {"ok": 1},
                    "claim_token": job["claim_token"],
                }
                acked = await client.post(f"/infra/jobs/{job['id']}/ack", json=body)
                assert acked.status_code == 200, acked.text
                done.append(job)
    return done


async def test_every_metric_is_exposed_and_no_label_holds_an_id(
    served: Callable[..., Any], handler: Handler
) -> None:
    server, key, _ = await served()
    async with api(server.url, key) as client:
        created = await client.post(
            "/infra/jobs", json={"trigger": {"type": "pull", "queue": QUEUE}}
        )
        job_id = created.json()["id"]
        assert (await client.get(f"/infra/jobs/{job_id}")).status_code == 200
        assert (await client.get(f"/infra/jobs/{job_id}/runs")).status_code == 200
        assert (await client.get(f"/nowhere/{job_id}")).status_code == 404
        await run_pull_jobs(client, 1)
        blueprint = await create_blueprint(client, DIAMOND)
        await trigger(client, blueprint["id"])
        await run_pull_jobs(client, 4)
        hook = {"name": "all", "url": handler.at("/hook"), "topics": ["*"]}
        assert (await client.post("/infra/webhooks", json=hook)).status_code == 201
        await client.post("/infra/jobs", json={"trigger": {"type": "pull", "queue": QUEUE}})
        await run_pull_jobs(client, 1)
        await handler.wait_for("/hook")

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as plain:
        text = (await plain.get("/metrics")).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert name in families, f"{name} is missing"
        assert families[name].type == kind
        assert families[name].documentation, f"{name} has no HELP"
        exposed = f"{name}_total" if kind == "counter" else name
        assert f"# HELP {exposed} " in text and f"# TYPE {exposed} {kind}" in text
    labels = {
        (name, label, text)
        for family in families.values()
        for sample in family.samples
        for label, text in sample.labels.items()
    }
    assert labels, "no labelled sample at all"
    assert not [found for found in labels if AN_ID.search(found[2])]
    routes = {text for name, label, text in labels if label == "route"}
    assert {"/infra/jobs/{job_id}", "/infra/jobs/{job_id}/runs", "unmatched"} <= routes
    assert all(route == "unmatched" or route.startswith("/") for route in routes)
    assert not [route for route in routes if "nowhere" in route]


async def test_known_work_moves_each_metric_by_its_size(
    served: Callable[..., Any], handler: Handler
) -> None:
    server, key, _ = await served("--webhook-retry-base-seconds", "600")
    jobs, executions = 5, 3
    before = await scrape(server.url)
    async with api(server.url, key) as client:
        for _ in range(jobs):
            created = await client.post(
                "/infra/jobs", json={"trigger": {"type": "pull", "queue": QUEUE}}
            )
            assert created.status_code == 202, created.text
        doomed = {"trigger": {"type": "pull", "queue": "doomed"}, "max_attempts": 1}
        assert (await client.post("/infra/jobs", json=doomed)).status_code == 202
        assert (await client.get("/nowhere/at/all")).status_code == 404

        # The queue depth is read from memory: the pending jobs, as GET /infra/queues says.
        samples = await scrape(server.url)
        queues = {q["name"]: q for q in (await client.get("/infra/queues")).json()["queues"]}
        assert value(samples, "flowyard_job_queue_depth", queue=QUEUE) == jobs
        assert queues[QUEUE]["depth"] == jobs
        assert value(samples, "flowyard_job_queue_depth", queue="doomed") == 1

        await run_pull_jobs(client, jobs)
        [claimed] = (await client.post("/infra/jobs/claim", json={"queue": "doomed"})).json()
        failed = {"status": "failed", "error": "no", "claim_token": claimed["claim_token"]}
        acked = await client.post(f"/infra/jobs/{claimed['id']}/ack", json=failed)
        assert acked.json()["status"] == "failed"

        blueprint = await create_blueprint(client, DIAMOND)
        started = [
            (await trigger(client, blueprint["id"]))["execution_id"] for _ in range(executions)
        ]
        samples = await scrape(server.url)
        running = await client.get("/infra/workflows/executions", params={"status": "running"})
        assert len(running.json()["executions"]) == executions
        assert value(samples, "flowyard_executions_live") == executions
        await run_pull_jobs(client, 4 * executions)
        for execution_id in started:
            state = await client.get(f"/infra/workflows/executions/{execution_id}")
            assert state.json()["status"] == "completed"

        hooks = [
            {"name": "ok", "url": handler.at("/ok"), "topics": ["custom.metered"]},
            {"name": "bad", "url": handler.script("/bad", (500, {}, 0.0)), "topics": ["custom.*"]},
        ]
        for hook in hooks:
            assert (await client.post("/infra/webhooks", json=hook)).status_code == 201
        event = {"topic": "custom.metered", "data": {"n": 1}}
        assert (await client.post("/infra/webhooks/publish", json=event)).status_code == 202
        await handler.wait_for("/ok")
        await handler.wait_for("/bad")

    with anyio.fail_after(10):  # an attempt is counted once its answer is in
        while True:
            after = await scrape(server.url)
            moved = Moves(before, after)
            if moved("flowyard_webhook_deliveries_total", status="retrying") >= 1:
                break
            await anyio.sleep(0.02)
    requests = "flowyard_http_requests_total"
    assert moved(requests, route="/infra/jobs", method="POST", status="202") == jobs + 1
    assert moved(requests, route="unmatched", method="GET", status="404") == 1
    assert moved("flowyard_http_request_duration_seconds_count", route="/infra/jobs") == jobs + 1
    assert moved("flowyard_jobs_created_total", trigger="pull") == jobs + 1
    assert moved("flowyard_jobs_created_total", trigger="workflow") == 4 * executions
    assert moved("flowyard_jobs_finished_total", status="completed") == jobs + 4 * executions
    assert moved("flowyard_jobs_finished_total", status="failed") == 1
    ran = jobs + 1 + 4 * executions
    assert moved("flowyard_job_wait_seconds_count") == ran
    assert moved("flowyard_job_run_seconds_count") == ran
    assert moved("flowyard_executions_started_total") == executions
    assert moved("flowyard_executions_finished_total", status="completed") == executions
    # A diamond hands off twice: a's result queues b and c; the later of b and c queues d.
    assert moved("flowyard_step_handoff_seconds_count") == 2 * executions
    assert moved("flowyard_commit_batch_rows_count") > 0
    assert moved("flowyard_commit_batch_rows_sum") >= moved("flowyard_commit_batch_rows_count")
    assert moved("flowyard_commit_duration_seconds_count") > 0
    assert moved("flowyard_webhook_deliveries_total", status="succeeded") == 1
    assert moved("flowyard_webhook_deliveries_total", status="retrying") == 1
    assert moved("flowyard_webhook_deliveries_total", status="failed") == 0
    assert value(after, "flowyard_job_queue_depth", queue=QUEUE) == 0
    assert value(after, "flowyard_executions_live") == 0
    assert value(after, "flowyard_mailbox_full_total") == 0


async def test_the_metrics_token_guards_metrics_and_nothing_else_limits_them(
    served: Callable[..., Any],
) -> None:
    server, key, db = await served("--metrics-token", "s3cret-scrape")
    admin_key = create_key_sync(db, "admins", list(ALL_SCOPES), admin=True).key
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as plain:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": key}):
            refused = await plain.get("/metrics", headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.json()["code"] == "unauthorized"
            assert refused.json()["message"]
        await scrape(server.url, "s3cret-scrape")

    async with api(server.url, key) as client, api(server.url, admin_key) as admin:
        project_id = (await client.get("/core/whoami")).json()["project_id"]
        changed = await admin.patch(f"/admin/projects/{project_id}", json={"token_balance": "1"})
        assert changed.status_code == 200, changed.text
        balance = (await client.get("/core/tokens/balance")).json()["total_balance"]
        for _ in range(5):
            await scrape(server.url, "s3cret-scrape")
        assert (await client.get("/core/tokens/balance")).json()["total_balance"] == balance

        # A project limited to a request now and then: its requests are refused, not scrapes.
        body = {"rate_limit_rps": 0.001}
        assert (await admin.patch(f"/admin/projects/{project_id}", json=body)).status_code == 200
        statuses = [(await client.get("/infra/jobs")).status_code for _ in range(3)]
        assert 429 in statuses
        for _ in range(20):
            await scrape(server.url, "s3cret-scrape")


async def test_a_full_mailbox_is_counted() -> None:
    metrics = Metrics()
    mailbox: Mailbox[str] = Mailbox(1, metrics.mailbox_full)
    mailbox.tell("fits")
    for _ in range(3):
        with pytest.raises(MailboxFull):
            mailbox.tell("does not fit")
    assert metrics.registry.get_sample_value("flowyard_mailbox_full_total") == 3
    mailbox.close()
    mailbox.receive.close()


async def test_a_full_writer_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics()
    db = Database(str(tmp_path / "full.db"), metrics=metrics)
    monkeypatch.setattr(commits, "MAX_WAITING", 0)
    with pytest.raises(MailboxFull):
        db.submit([])
    assert metrics.registry.get_sample_value("flowyard_mailbox_full_total") == 1


async def test_requests_refused_by_the_inflight_cap_are_counted_unmatched() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("never")(scope, receive, send)

    metrics = Metrics()
    limited = InflightLimit(app, 0, metrics=metrics)
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/infra/jobs")).status_code == 503
        assert (await client.get("/livez")).status_code == 200  # exempt: never refused
    labels = {"route": "unmatched", "method": "POST", "status": "503"}
    assert metrics.registry.get_sample_value("flowyard_http_requests_total", labels) == 1


async def test_a_flood_of_scrapes_on_raw_sockets_costs_one_build_per_interval(
    service: Service,
) -> None:
    """20 connections, each pipelining 10 scrapes: every one is answered 200, the server builds
    the exposition at most once per interval (plus the first), and /livez answers meanwhile."""
    exposition = service.supervisor.metrics.exposition
    host, _, port = service.url.removeprefix("http://").rpartition(":")
    statuses: list[int] = []
    started = anyio.current_time()
    builds_before = exposition.builds

    async def flood() -> None:
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(request_head("GET", "/metrics") * 10)
            for _ in range(10):
                statuses.append((await read_answer(stream)).status)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(flood)
        live = await exchange(service.url, request_head("GET", "/livez"))
    elapsed = anyio.current_time() - started
    assert live.status == 200
    assert statuses == [200] * 200
    builds = exposition.builds - builds_before
    assert 1 <= builds <= 2 + elapsed / SCRAPE_INTERVAL, (builds, elapsed)
