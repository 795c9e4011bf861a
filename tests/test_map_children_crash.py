"""kill -9 while parents run for_each sub_workflow steps: after the restarts every item
attempt has exactly one child, and every parent completes with its items' outputs in order.

``flowyard serve`` runs as a real process; parents are triggered and child jobs acked over
HTTP while the server is killed with SIGKILL again and again on the same database.
"""

import itertools
from collections import Counter
from pathlib import Path

import anyio
import httpx

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import fresh_db
from tests.test_sub_workflows_crash import (
    QUEUE,
    StartServer,
    api,
    every_execution,
    keep_working,
    start_server,
)
from tests.workflow_support import create_blueprint, execution, pull_step, wait_status

ROUNDS = 3
ITEMS = 4


async def keep_triggering(client: httpx.AsyncClient, blueprint_id: str) -> None:
    """Trigger parents of ITEMS items each until the server dies (the task is then
    cancelled)."""
    for n in itertools.count():
        xs = [10 * n + i for i in range(ITEMS)]
        try:
            await client.post(
                f"/infra/workflows/blueprints/{blueprint_id}/trigger",
                json={"input_data": {"xs": xs}},
            )
        except httpx.HTTPError:
            await anyio.sleep(0.02)


async def test_a_crash_never_starts_two_children_for_one_item_attempt(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = fresh_db(tmp_path)
    key = create_key_sync(db, "crash", list(ALL_SCOPES)).key
    server = await start_server(server_process, db)
    async with api(server.url, key) as client:
        child = await create_blueprint(
            client, [pull_step("work", QUEUE, {"n": "{{input.n}}"})], name="child"
        )
        each = {
            "id": "each",
            "sub_workflow": {"blueprint_id": child["id"], "input": {"n": "{{item}}"}},
            "for_each": "{{input.xs}}",
            "max_concurrency": 2,
        }
        parent = await create_blueprint(client, [each], name="parent")
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
        assert len(children) == ITEMS * len(parents)
        by_id = {c["id"]: c for c in children}
        for state in finals:
            xs = state["input_data"]["xs"]
            step = state["steps"][0]
            assert step["output"] == [{"work": {"n": x}} for x in xs]
            response = await client.get(
                f"/infra/workflows/executions/{state['id']}/steps/each/items"
            )
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            assert [i["status"] for i in items] == ["completed"] * ITEMS
            for item in items:
                assert item["attempt"] == 1, item
                kid = by_id[item["child_execution_id"]]
                assert kid["parent"] == {
                    "execution_id": state["id"],
                    "step_id": "each",
                    "item_index": item["index"],
                }
                expected_key = f"sub_workflow:{state['id']}:each[{item['index']}]:1"
                assert kid["idempotency_key"] == expected_key
                assert kid["status"] == "completed"
                assert (await execution(client, kid["id"]))["result"] == item["output"]
    assert server.terminate() == 0
