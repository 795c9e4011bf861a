"""Crashes inside the process stay contained (DESIGN §5).

An execution whose actor raises fails with ``internal_error`` while every other execution and
job goes on; a core service that crashes turns ``/readyz`` to 503 and makes ``flowyard serve``
exit non-zero (so that its own supervisor restarts it from SQLite), never leaving a server up
that answers 500. The faults come from outside, the way they would in life: a stored row that
the code cannot handle, written into the SQLite file while the server was stopped.
"""

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import msgspec

from flowyard.clock import now_ms
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess, Service
from tests.http_support import api
from tests.workflow_support import (
    ack,
    claim_one,
    create_blueprint,
    events,
    pull_step,
    trigger,
    wait_status,
    wait_step,
)

StartServer = Callable[..., ServerProcess]


async def start_server(server_process: StartServer, db: str) -> ServerProcess:
    return await anyio.to_thread.run_sync(lambda: server_process(db))


def rewrite_doc(db: str, table: str, row_id: str, change: Callable[[Any], None]) -> None:
    """Edit the stored JSON document of one row (the server must be stopped)."""
    with closing(sqlite3.connect(db)) as conn, conn:
        (doc,) = conn.execute(f"SELECT doc FROM {table} WHERE id = ?", (row_id,)).fetchone()
        value = msgspec.json.decode(doc)
        change(value)
        conn.execute(
            f"UPDATE {table} SET doc = ? WHERE id = ?", (msgspec.json.encode(value), row_id)
        )


async def test_an_actor_that_raises_fails_its_execution_only(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "test", list(ALL_SCOPES)).key
    server = await start_server(server_process, db)
    steps = [pull_step("a", "ct-a"), pull_step("b", "ct-b", depends_on=["a"])]
    async with api(server.url, key) as client:
        blueprint = await create_blueprint(client, steps)
        broken = (await trigger(client, blueprint["id"]))["execution_id"]
        healthy = (await trigger(client, blueprint["id"]))["execution_id"]
    assert await anyio.to_thread.run_sync(server.terminate) == 0

    # The broken execution's state loses a step its blueprint has: handling the next result
    # reaches code that cannot cope with it.
    rewrite_doc(db, "executions", broken, lambda doc: doc["steps"].pop("b"))
    server = await start_server(server_process, db)
    async with api(server.url, key) as client:
        first, second = await claim_one(client, "ct-a"), await claim_one(client, "ct-a")
        by_execution = {job["workflow"]["execution_id"]: job for job in (first, second)}
        # The ack of the broken execution's job is recorded like any other.
        acked = await ack(client, by_execution[broken], {"n": 1})
        assert acked["status"] == "completed"
        failed = await wait_status(client, broken, "failed")
        assert failed["error"]["code"] == "internal_error"
        assert "KeyError" in failed["error"]["message"]
        assert [e["type"] for e in await events(client, broken)][-1] == "failed"
        stored = await client.get(f"/infra/jobs/{by_execution[broken]['id']}")
        assert stored.json()["status"] == "completed"

        # Everything else goes on: the other execution runs to completion, the server is ready.
        await ack(client, by_execution[healthy], {"n": 2})
        await wait_step(client, healthy, "b", "queued")
        await ack(client, await claim_one(client, "ct-b"), {"done": True})
        done = await wait_status(client, healthy, "completed")
        assert done["result"] == {"a": {"n": 2}, "b": {"done": True}}
        assert (await client.get("/readyz")).status_code == 200
        fresh = (await trigger(client, blueprint["id"]))["execution_id"]
        assert (await client.get(f"/infra/workflows/executions/{fresh}")).status_code == 200
    assert server.proc.poll() is None
    assert "failed while handling" in server.log_path.read_text()


async def test_an_execution_that_cannot_be_restored_fails_alone(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "test", list(ALL_SCOPES)).key
    server = await start_server(server_process, db)
    async with api(server.url, key) as client:
        unreadable = await create_blueprint(client, [pull_step("a", "cr-broken")])
        readable = await create_blueprint(client, [pull_step("a", "cr-ok")])
        broken = (await trigger(client, unreadable["id"]))["execution_id"]
        healthy = (await trigger(client, readable["id"]))["execution_id"]
    assert await anyio.to_thread.run_sync(server.terminate) == 0

    rewrite_doc(db, "blueprints", unreadable["id"], lambda doc: doc.update(steps="not a list"))
    server = await start_server(server_process, db)  # ready: the others were restored
    async with api(server.url, key) as client:
        failed = await wait_status(client, broken, "failed")
        assert failed["error"]["code"] == "internal_error"
        # Its job is still a job: a worker can finish it, and the result is kept.
        acked = await ack(client, await claim_one(client, "cr-broken"), {"kept": True})
        assert acked["status"] == "completed"
        await ack(client, await claim_one(client, "cr-ok"), {"n": 1})
        assert (await wait_status(client, healthy, "completed"))["result"] == {"a": {"n": 1}}
    assert server.proc.poll() is None


async def test_a_crashed_core_service_stops_the_server_with_a_failure_status(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "test", list(ALL_SCOPES)).key
    server = await start_server(server_process, db)
    async with api(server.url, key) as client:
        body = {
            "trigger": {"type": "scheduled", "schedule": "0 0 1 1 *"},
            "handler": "http://127.0.0.1:9/hook",
        }
        response = await client.post("/infra/jobs", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
    assert await anyio.to_thread.run_sync(server.terminate) == 0

    def corrupt(doc: Any) -> None:  # a schedule the timer service cannot compute, due soon
        doc["trigger"]["schedule"] = "99 * * * *"
        doc["next_run_at"] = now_ms() + 3000

    rewrite_doc(db, "jobs", job_id, corrupt)
    server = await start_server(server_process, db)
    status = await anyio.to_thread.run_sync(lambda: server.proc.wait(60))
    assert status == 1
    log = server.log_path.read_text()
    assert "the engines crashed" in log
    assert "stopping so that the process can be restarted" in log


async def test_a_crashed_core_service_turns_readiness_and_the_api_to_503(
    service: Service,
) -> None:
    """In process (where nothing stops the server): 503 everywhere, never 500."""
    client = service.client
    created = await client.post("/infra/jobs", json={"trigger": {"type": "pull", "queue": "q"}})
    assert created.status_code == 202
    service.supervisor.jobs.timers.arm(0, ("due",))  # a key its owner cannot read: a crash
    with anyio.fail_after(10):
        while service.supervisor.failure is None:
            await anyio.sleep(0.01)
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert "crashed" in ready.json()["message"]
    for response in (
        await client.get(f"/infra/jobs/{created.json()['id']}"),
        await client.post("/infra/jobs", json={"trigger": {"type": "pull", "queue": "q"}}),
    ):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "unavailable"
    assert (await client.get("/livez")).status_code == 200
