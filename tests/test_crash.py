"""kill -9 and restart: nothing acknowledged is lost and every timer comes back on time.

These tests run ``flowyard serve`` as a real child process, kill it with SIGKILL and start it
again on the same SQLite file.
"""

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flowyard.clock import now_ms
from flowyard.ids import new_id
from flowyard.jobs.model import Job, PullQueue
from flowyard.storage import jobs as store
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from flowyard.storage.sqlite_statements import execute
from tests.conftest import Handler, ServerProcess, free_port

StartServer = Callable[..., ServerProcess]


def ms(text: str) -> int:
    """Epoch milliseconds of an API timestamp (``2026-11-23T10:00:00.000Z``)."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


async def start(server_process: StartServer, db: str, *args: str) -> ServerProcess:
    """Start a server without blocking the event loop (the handler server shares it)."""
    return await anyio.to_thread.run_sync(lambda: server_process(db, *args))


def client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=httpx.Timeout(30)
    )


async def create(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/infra/jobs", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def get(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await api.get(f"/infra/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def claim(api: httpx.AsyncClient, queue: str, **options: Any) -> list[dict[str, Any]]:
    response = await api.post("/infra/jobs/claim", json={"queue": queue, **options})
    assert response.status_code == 200, response.text
    return list(response.json())


async def ack(
    api: httpx.AsyncClient, job: dict[str, Any], result: Any, token: str | None = None
) -> httpx.Response:
    return await api.post(
        f"/infra/jobs/{job['id']}/ack",
        json={
            "status": "completed",
            "result": result,
            "claim_token": token or job["claim_token"],
        },
    )


async def runs_of(api: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/infra/jobs/{job_id}/runs")
    assert response.status_code == 200, response.text
    return list(response.json()["runs"])


async def wait_status(
    api: httpx.AsyncClient, job_id: str, status: str, timeout: float = 10
) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            job = await get(api, job_id)
            if job["status"] == status:
                return job
            await anyio.sleep(0.02)


async def all_job_ids(api: httpx.AsyncClient) -> set[str]:
    found: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/infra/jobs", params=params)).json()
        found.update(job["id"] for job in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def test_kill9_loses_nothing_and_keeps_every_timer(
    tmp_path: Path, server_process: StartServer, handler: Handler
) -> None:
    db = str(tmp_path / "crash.db")
    key = create_key_sync(db, "crash", list(ALL_SCOPES)).key
    server = await start(server_process, db, "--retry-base-seconds", "0.2")

    async with client(server.url, key) as api:
        # Pending pull jobs, with different priorities.
        pending = [
            await create(api, trigger={"type": "pull", "queue": "waiting"}, payload={"n": n}, **p)
            for n, p in enumerate([{"priority": 7}, {"priority": 2}, {}])
        ]
        # Completed jobs with results.
        done = []
        for n in range(3):
            job = await create(api, trigger={"type": "pull", "queue": "done"}, payload=n)
            [claimed] = await claim(api, "done")
            assert claimed["id"] == job["id"]
            acked = await ack(api, claimed, {"result": n, "text": "é✓"})
            assert acked.status_code == 200, acked.text
            done.append(job)
        # Claimed jobs whose lease is still running at the crash.
        leased = [
            await create(api, trigger={"type": "pull", "queue": "leased"}, payload=n)
            for n in range(3)
        ]
        claims = await claim(api, "leased", count=10, visibility_timeout=4)
        assert {c["id"] for c in claims} == {j["id"] for j in leased}
        by_id = {c["id"]: c for c in claims}
        # Delayed push jobs.
        delayed = [
            await create(
                api,
                trigger={"type": "delayed", "delay_seconds": 4},
                handler=handler.at("/delayed"),
                payload={"d": n},
            )
            for n in range(2)
        ]
        # A cron job that will not fire during the test.
        cron = await create(
            api,
            trigger={"type": "scheduled", "schedule": "0 0 1 1 *", "timezone": "Europe/Paris"},
            handler=handler.at("/cron"),
        )
        assert cron["status"] == "scheduled" and cron["next_run_at"]
        # A push job delivered and finished before the crash: never delivered again.
        fast = await create(api, trigger={"type": "immediate"}, handler=handler.at("/fast"))
        await handler.wait_for("/fast")
        await wait_status(api, fast["id"], "completed")
        # A push job whose delivery is in flight at the crash.
        slow_url = handler.script("/slow", (200, {"run": "first"}, 4.0), (200, {"run": "again"}, 0))
        slow = await create(
            api, trigger={"type": "immediate"}, handler=slow_url, payload={"s": 1}, timeout=10
        )
        [first_delivery] = await handler.wait_for("/slow")
        before = {job["id"]: await get(api, job["id"]) for job in [*leased, *delayed, cron]}
        assert (await get(api, slow["id"]))["status"] == "running"

    server.kill9()
    assert server.proc.returncode == -9
    server = await start(server_process, db, "--retry-base-seconds", "0.2")

    async with client(server.url, key) as api:
        restarted_at = now_ms()
        # Nothing is lost: exactly the jobs created, each with its status.
        created = [*pending, *done, *leased, *delayed, cron, fast, slow]
        assert await all_job_ids(api) == {job["id"] for job in created}
        for job in pending:
            assert (await get(api, job["id"]))["status"] == "pending"
        for n, job in enumerate(done):
            stored = await get(api, job["id"])
            assert stored["status"] == "completed"
            assert stored["result"] == {"result": n, "text": "é✓"}
        assert (await get(api, fast["id"]))["status"] == "completed"

        # Leases still run to their original deadline, with their original tokens.
        deadline = ms(claims[0]["claimed_until"])
        assert all(ms(c["claimed_until"]) == deadline for c in claims)
        assert restarted_at < deadline - 300, "restart too slow for this test to mean anything"
        for job in leased:
            stored = await get(api, job["id"])
            assert stored["status"] == "running"
            assert stored["claimed_until"] == before[job["id"]]["claimed_until"]
        assert await claim(api, "leased") == []
        keeper = leased[0]
        kept = await ack(api, keeper, "kept", token=by_id[keeper["id"]]["claim_token"])
        assert kept.status_code == 200, kept.text
        assert kept.json()["status"] == "completed"

        # Delayed jobs have not been delivered and still wait for their run_at.
        run_at = {job["id"]: ms(before[job["id"]]["run_at"]) for job in delayed}
        assert handler.to("/delayed") == []
        assert now_ms() < min(run_at.values())
        for job in delayed:
            stored = await get(api, job["id"])
            assert stored["status"] == "pending"
            assert stored["run_at"] == before[job["id"]]["run_at"]

        # The cron job is still scheduled for the same fire.
        stored_cron = await get(api, cron["id"])
        assert stored_cron["status"] == "scheduled"
        assert stored_cron["next_run_at"] == cron["next_run_at"]

        # Pending jobs are claimable at once, highest priority first.
        got = await claim(api, "waiting", count=10)
        assert [j["id"] for j in got] == [pending[1]["id"], pending[2]["id"], pending[0]["id"]]

        # The in-flight delivery is made again: same job id, a new run.
        deliveries = await handler.wait_for("/slow", 2)
        assert len(deliveries) == 2
        second = deliveries[1]
        assert second.headers["x-flowyard-job-id"] == slow["id"]
        assert first_delivery.headers["x-flowyard-job-id"] == slow["id"]
        assert second.headers["x-flowyard-run-id"] != first_delivery.headers["x-flowyard-run-id"]
        assert second.json() == {"s": 1}
        finished = await wait_status(api, slow["id"], "completed")
        assert finished["result"] == {"run": "again"}
        slow_runs = await runs_of(api, slow["id"])
        assert len(slow_runs) == 2
        assert [r["status"] for r in slow_runs] == ["completed", "failed"]  # newest first

        # The expired leases come back after their deadline, not before.
        reclaimed: dict[str, dict[str, Any]] = {}
        with anyio.fail_after(10):
            while len(reclaimed) < 2:
                for job in await claim(api, "leased", count=10, wait_seconds=5):
                    assert now_ms() >= deadline
                    reclaimed[job["id"]] = job
        assert set(reclaimed) == {leased[1]["id"], leased[2]["id"]}
        for job_id, job in reclaimed.items():
            assert job["attempt"] == 2
            assert ms(job["last_run_at"]) >= deadline
            runs = await runs_of(api, job_id)
            assert [r["status"] for r in runs] == ["running", "failed"]
            assert ms(runs[1]["completed_at"]) >= deadline
            stale = await ack(api, job, "late", token=by_id[job_id]["claim_token"])
            assert stale.status_code == 409, stale.text

        # The delayed jobs are delivered once their run_at has come.
        await handler.wait_for("/delayed", 2, timeout=10)
        for job in delayed:
            finished = await wait_status(api, job["id"], "completed")
            [run] = await runs_of(api, job["id"])
            assert ms(run["started_at"]) >= run_at[job["id"]]
        assert sorted(d.json()["d"] for d in handler.to("/delayed")) == [0, 1]

        assert len(handler.to("/fast")) == 1
        assert handler.to("/cron") == []


async def test_acks_acknowledged_just_before_kill9_survive(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "acks.db")
    key = create_key_sync(db, "acks", list(ALL_SCOPES)).key
    server = await start(server_process, db)
    count = 30
    async with client(server.url, key) as api:
        batch = await api.post(
            "/infra/jobs/batch",
            json={
                "jobs": [
                    {"trigger": {"type": "pull", "queue": "work"}, "payload": n}
                    for n in range(count)
                ]
            },
        )
        assert batch.status_code == 202, batch.text
        claimed = await claim(api, "work", count=count)
        assert len(claimed) == count
        answers: dict[str, int] = {}

        async def ack_one(job: dict[str, Any]) -> None:
            response = await ack(api, job, {"done": job["payload"]})
            answers[job["id"]] = response.status_code

        async with anyio.create_task_group() as tg:
            for job in claimed:
                tg.start_soon(ack_one, job)
    server.kill9()  # right after the last 200
    assert sorted(answers.values()) == [200] * count

    server = await start(server_process, db)
    async with client(server.url, key) as api:
        for job in claimed:
            stored = await get(api, job["id"])
            assert stored["status"] == "completed", stored
            assert stored["result"] == {"done": job["payload"]}
            [run] = await runs_of(api, job["id"])
            assert run["status"] == "completed"
        assert await claim(api, "work", count=100) == []
    assert server.terminate() == 0


def _seed_pull_jobs(db: str, project: str, queue: str, count: int) -> str:
    """Write ``count`` pending pull jobs straight into the file; returns a key."""
    created = create_key_sync(db, project, list(ALL_SCOPES))
    now = now_ms()
    rows = [
        store.put_job(
            Job(
                id=new_id("job"),
                project_id=created.record.project_id,
                trigger=PullQueue(queue=queue),
                created_at=now,
                run_at=now,
            )
        )
        for _ in range(count)
    ]
    with closing(sqlite3.connect(db)) as conn:
        for row in rows:
            execute(conn, row)
        conn.commit()
    return created.key


def _popen_server(db: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "flowyard", "serve", "--db", db, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_readyz_is_503_or_unreachable_until_everything_is_restored(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "ready.db")
    seeded = 30_000
    key = _seed_pull_jobs(db, "ready", "seeded", seeded)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "ready.log"
    proc = _popen_server(db, port, log_path)  # not waiting for anything: we poll ourselves
    try:
        seen: list[int | str] = []
        async with client(url, key) as api:
            with anyio.fail_after(30):
                while True:
                    assert proc.poll() is None, log_path.read_text()
                    try:
                        response = await api.get("/readyz")
                    except httpx.TransportError:
                        seen.append("unreachable")
                        await anyio.sleep(0.005)
                        continue
                    seen.append(response.status_code)
                    if response.status_code == 200:
                        break
                    assert response.status_code == 503, response.text
                    assert response.json()["code"] == "unavailable"
                    assert (await api.get("/livez")).status_code == 200
                    await anyio.sleep(0.005)
            # Ready means restored: every seeded job is already queued and claimable.
            queues = (await api.get("/infra/queues")).json()["queues"]
            assert [(q["name"], q["depth"]) for q in queues] == [("seeded", seeded)]
            assert len(await claim(api, "seeded", count=100)) == 100
            for _ in range(3):
                assert (await api.get("/readyz")).status_code == 200
                assert (await api.get("/healthz")).status_code == 200
        assert seen[0] == "unreachable"  # polled from before the process listened
        assert seen[-1] == 200
        assert set(seen[:-1]) <= {"unreachable", 503}
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("sync", ["full", "normal"])
async def test_created_jobs_survive_kill9(
    tmp_path: Path, server_process: StartServer, sync: str
) -> None:
    db = str(tmp_path / f"create-{sync}.db")
    key = create_key_sync(db, "create", list(ALL_SCOPES)).key
    server = await start(server_process, db, "--sync", sync)
    async with client(server.url, key) as api:
        ids: list[str] = []

        async def create_one(n: int) -> None:
            job = await create(api, trigger={"type": "pull", "queue": "q"}, payload={"n": n})
            ids.append(job["id"])

        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(create_one, n)
    server.kill9()
    server = await start(server_process, db, "--sync", sync)
    async with client(server.url, key) as api:
        assert await all_job_ids(api) == set(ids)
        got = await claim(api, "q", count=100)
        assert {j["id"] for j in got} == set(ids)
        assert sorted(j["payload"]["n"] for j in got) == list(range(40))
