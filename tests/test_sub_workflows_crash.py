"""kill -9 while parents start children and children end: after the restarts every step
attempt has exactly one child, and every parent finishes.

``flowyard serve`` runs as a real process; parents are triggered and child jobs acked over
HTTP while the server is killed with SIGKILL again and again on the same database.
"""

import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess, fresh_db
from tests.http_support import api
from tests.test_sub_workflows_e2e import sub_step
from tests.workflow_support import create_blueprint, execution, pull_step, wait_status

StartServer = Callable[..., ServerProcess]
QUEUE = "sc-child"
ROUNDS = 3


async def start_server(server_process: StartServer, db: str) -> ServerProcess:
    return await anyio.to_thread.run_sync(
        lambda: server_process(db, "--retry-base-seconds", "0.05")
    )


async def keep_triggering(client: httpx.AsyncClient, blueprint_id: str) -> None:
    """Trigger parents one after another until the server dies (the task is then cancelled)."""
    for n in itertools.count():
        try:
            await client.post(
                f"/infra/workflows/blueprints/{blueprint_id}/trigger", json={"input_data": {"n": n}}
            )
        except httpx.HTTPError:
            await anyio.sleep(0.02)


async def keep_working(client: httpx.AsyncClient) -> None:
    """A pull worker on the children's queue that shrugs off a server that went away."""
    while True:
        try:
            response = await client.post(
                "/infra/jobs/claim", json={"queue": QUEUE, "count": 10, "wait_seconds": 0.2}
            )
            for job in response.json() if response.status_code == 200 else []:
                await client.post(
                    f"/infra/jobs/{job['id']}/ack",
                    json={
                        "claim_token": job["claim_token"],
                        "status": "completed",
                        "result": {"n": job["payload"]["n"]},
                    },
                )
        except (httpx.HTTPError, ValueError):
            await anyio.sleep(0.02)


async def every_execution(client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = f"{query}&limit=100" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/infra/workflows/executions?{page}")
        assert response.status_code == 200, response.text
        found += response.json()["executions"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


async def test_a_crash_never_starts_two_children_for_one_step_attempt(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = fresh_db(tmp_path)
    key = create_key_sync(db, "crash", list(ALL_SCOPES)).key
    server = await start_server(server_process, db)
    async with api(server.url, key) as client:
        child = await create_blueprint(
            client, [pull_step("work", QUEUE, {"n": "{{input.n}}"})], name="child"
        )
        parent = await create_blueprint(
            client,
            [
                sub_step("x", child["id"], {"n": "{{input.n}}"}),
                sub_step("y", child["id"], {"n": "{{input.n}}"}),
                sub_step("z", child["id"], {"n": "{{steps.x.output.work.n}}"}, depends_on=["x"]),
            ],
            name="parent",
        )
    for round_ in range(ROUNDS):
        async with api(server.url, key) as client, anyio.create_task_group() as tg:
            tg.start_soon(keep_triggering, client, parent["id"])
            tg.start_soon(keep_working, client)
            await anyio.sleep(0.5 + 0.3 * round_)
            server.kill9()
            tg.cancel_scope.cancel()
        server = await start_server(server_process, db)

    async with api(server.url, key) as client:
        parents = await every_execution(client, f"blueprint_id={parent['id']}")
        assert parents  # every round triggers some before its kill
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_working, client)
            finals = [await wait_status(client, p["id"], "completed", 60) for p in parents]
            tg.cancel_scope.cancel()
        children = await every_execution(client, f"blueprint_id={child['id']}")
        per_attempt = Counter(c["idempotency_key"] for c in children)
        assert all(count == 1 for count in per_attempt.values()), per_attempt
        assert len(children) == 3 * len(parents)
        by_id = {c["id"]: c for c in children}
        for state in finals:
            n = state["input_data"]["n"]
            listed = await every_execution(client, f"parent_execution_id={state['id']}")
            assert sorted(c["parent"]["step_id"] for c in listed) == ["x", "y", "z"]
            for step in state["steps"]:
                assert step["attempt"] == 1, step
                kid = by_id[step["child_execution_id"]]
                assert kid["parent"] == {"execution_id": state["id"], "step_id": step["step_id"]}
                assert kid["idempotency_key"] == f"sub_workflow:{state['id']}:{step['step_id']}:1"
                assert kid["status"] == "completed"
                assert (await execution(client, kid["id"]))["result"] == step["output"]
            assert state["result"]["z"] == {"work": {"n": n}}
    assert server.terminate() == 0
