"""``flowyard serve --db postgresql://...``: the real server process on a throwaway cluster.

Keys are made with the CLI, jobs and a workflow run through the HTTP API, and a ``kill -9``
loses no acknowledged write. Skipped, with the reason, where PostgreSQL is not installed.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from bench import postgres

from tests.conftest import ServerProcess
from tests.test_crash import StartServer, ack, claim, client, create, get, start
from tests.workflow_support import pull_step

pytest.importorskip("asyncpg")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One throwaway cluster for the module (each test takes a database of its own)."""
    try:
        with postgres.postgres_cluster() as url:
            yield url
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def database(cluster: str) -> str:
    return str(postgres.create_database(cluster))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flowyard", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def key_for(database: str, project: str = "pg") -> str:
    made = cli("keys", "create", "--db", database, "--project", project)
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[-1]


DIAMOND = {
    "name": "diamond",
    "steps": [
        pull_step("a", "pg"),
        pull_step("b", "pg", depends_on=["a"]),
        pull_step("c", "pg", depends_on=["a"]),
        pull_step("d", "pg", depends_on=["b", "c"]),
    ],
}


async def run_steps(api: httpx.AsyncClient, count: int) -> None:
    """Claim and complete ``count`` step jobs of queue ``pg`` as they become ready."""
    done = 0
    with anyio.fail_after(30):
        while done < count:
            for job in await claim(api, "pg", count=10, wait_seconds=1):
                response = await ack(api, job, {"step": job["workflow"]["step_id"]})
                assert response.status_code == 200, response.text
                done += 1


async def test_jobs_and_a_workflow_run_on_postgres(
    server_process: StartServer, database: str
) -> None:
    key = await anyio.to_thread.run_sync(key_for, database)
    server = await start(server_process, database)
    async with client(server.url, key) as api:
        job = await create(api, trigger={"type": "pull", "queue": "solo"}, payload={"n": 1})
        [claimed] = await claim(api, "solo")
        assert claimed["id"] == job["id"] and claimed["payload"] == {"n": 1}
        assert (await ack(api, claimed, {"ok": True})).status_code == 200
        stored = await get(api, job["id"])
        assert stored["status"] == "completed" and stored["result"] == {"ok": True}
        created = await api.post("/infra/workflows/blueprints", json=DIAMOND)
        assert created.status_code == 200, created.text
        blueprint = created.json()
        started = await api.post(
            f"/infra/workflows/blueprints/{blueprint['id']}/trigger", json={"input_data": {}}
        )
        execution_id = started.json()["execution_id"]
        await run_steps(api, 4)
        with anyio.fail_after(10):
            while True:
                execution = (await api.get(f"/infra/workflows/executions/{execution_id}")).json()
                if execution["status"] != "running":
                    break
                await anyio.sleep(0.02)
        assert execution["status"] == "completed"
        listed = (await api.get("/infra/jobs", params={"status": "completed"})).json()
        assert len(listed["jobs"]) == 5
    assert server.terminate() == 0


async def test_kill9_loses_no_acknowledged_write_on_postgres(
    server_process: StartServer, database: str
) -> None:
    key = await anyio.to_thread.run_sync(key_for, database)
    server: ServerProcess = await start(server_process, database)
    async with client(server.url, key) as api:
        jobs = [await create(api, trigger={"type": "pull", "queue": "k"}) for _ in range(20)]
        claimed = await claim(api, "k", count=10)
        for job in claimed[:5]:
            assert (await ack(api, job, {"acked": job["id"]})).status_code == 200
    server.kill9()
    again = await start(server_process, database)
    async with client(again.url, key) as api:
        statuses: dict[str, Any] = {}
        for job in jobs:
            statuses[job["id"]] = (await get(api, job["id"]))["status"]
        acked = {job["id"] for job in claimed[:5]}
        assert {statuses[job_id] for job_id in acked} == {"completed"}
        assert sum(status == "pending" for status in statuses.values()) == 10
        left = await claim(api, "k", count=100)
        assert len(left) == 10  # the never-claimed ones; the 5 claimed leases are still out
    assert again.terminate() == 0


def test_keys_list_and_revoke_on_postgres(database: str) -> None:
    key_for(database, "one")
    listed = cli("keys", "list", "--db", database, "--json")
    assert listed.returncode == 0, listed.stderr
    [record] = json.loads(listed.stdout)
    revoked = cli("keys", "revoke", record["id"], "--db", database, "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked_at" in revoked.stdout and record["project"] == "one"


def test_a_password_is_never_printed(database: str) -> None:
    with_password = database.replace("postgres@", "postgres:s3cret@")
    made = cli("keys", "create", "--db", with_password, "--project", "p")
    assert made.returncode == 0, made.stderr  # trust auth: the password is not checked
    assert "s3cret" not in made.stderr + made.stdout


async def test_a_second_server_on_one_database_exits_1(
    server_process: StartServer, database: str
) -> None:
    first = await start(server_process, database)
    command = [sys.executable, "-m", "flowyard", "serve", "--db", database, "--port", "0"]
    with anyio.fail_after(60):
        second = await anyio.run_process(command, check=False)
    stderr = second.stderr.decode()
    assert second.returncode == 1, stderr
    assert "is in use by another flowyard process" in stderr and "Traceback" not in stderr
    assert (await anyio.to_thread.run_sync(httpx.get, f"{first.url}/readyz")).status_code == 200
    assert first.terminate() == 0


async def test_texts_with_nul_are_kept_and_matched_on_postgres(
    server_process: StartServer, database: str
) -> None:
    """PostgreSQL's text holds no NUL: such an id or name is stored escaped, still matched."""
    key = await anyio.to_thread.run_sync(key_for, database)
    server = await start(server_process, database)
    async with client(server.url, key) as api:
        odd = "a\x00b\uffff0"
        job = await create(api, trigger={"type": "pull", "queue": odd}, name=odd)
        assert (await get(api, job["id"]))["name"] == odd
        [claimed] = await claim(api, odd)
        assert claimed["id"] == job["id"] and claimed["trigger"]["queue"] == odd
        assert await claim(api, "a") == [] and await claim(api, "a\x00b") == []
        missing = await api.get("/infra/jobs/job_%00")
        assert missing.status_code == 404, missing.text
        queues = (await api.get("/infra/queues")).json()["queues"]
        assert odd in {queue["name"] for queue in queues}
    assert server.terminate() == 0


async def test_the_demo_runs_on_postgres(database: str) -> None:
    command = [sys.executable, "-m", "flowyard", "demo", "--executions", "5", "--exit"]
    with anyio.fail_after(240):
        done = await anyio.run_process([*command, "--port", "0", "--db", database], check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "all 5 orders ended as planned" in done.stdout.decode()
