"""kill -9 in the middle of a map of a few hundred items: after a restart the map carries on,
no item runs twice for one attempt, and the output is complete and in item order.

``flowyard serve`` runs as a real child process; pull workers claim and ack over HTTP.
"""

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess, fresh_db
from tests.http_support import api
from tests.workflow_support import (
    claim,
    create_blueprint,
    execution,
    pull_step,
    queue_jobs,
    step_of,
    trigger,
    wait_execution,
    wait_status,
    workers,
)

StartServer = Callable[..., ServerProcess]
QUEUE = "map-crash"
ITEMS = 300


async def start_server(server_process: StartServer, db: str) -> ServerProcess:
    return await anyio.to_thread.run_sync(
        lambda: server_process(db, "--retry-base-seconds", "0.05")
    )


def work(job: dict[str, Any]) -> Any:
    return {"sq": job["payload"]["x"] ** 2, "i": job["payload"]["i"]}


async def test_a_map_never_runs_an_item_twice_across_kill9(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = fresh_db(tmp_path, "maps.db")
    key = create_key_sync(db, "crash", list(ALL_SCOPES)).key
    server = await start_server(server_process, db)
    step = {
        **pull_step("m", QUEUE, {"x": "{{item}}", "i": "{{item_index}}"}),
        "for_each": "{{input.xs}}",
        "max_concurrency": 25,
    }
    async with api(server.url, key) as client:
        blueprint = await create_blueprint(client, [step], name="map-crash")
        execution_id = (await trigger(client, blueprint["id"], {"xs": list(range(ITEMS))}))[
            "execution_id"
        ]
        async with workers(client, {QUEUE: work}):
            state = await wait_execution(
                client,
                execution_id,
                lambda s: step_of(s, "m")["items"]["completed"] >= ITEMS // 3,
                timeout=60,
            )
        # Some items are claimed (with a short lease) and never acked before the crash.
        held = await claim(client, QUEUE, wait=5, count=10, visibility_timeout=2)
        assert held
        before = step_of(await execution(client, execution_id), "m")["items"]
        assert before["total"] == ITEMS and before["completed"] < ITEMS

    server.kill9()
    server = await start_server(server_process, db)

    async with api(server.url, key) as client:
        state = await execution(client, execution_id)
        assert state["status"] == "running"
        assert step_of(state, "m")["items"]["completed"] >= before["completed"]
        async with workers(client, {QUEUE: work}):
            state = await wait_status(client, execution_id, "completed", timeout=120)
        assert step_of(state, "m")["output"] == [{"sq": n * n, "i": n} for n in range(ITEMS)]

        # Exactly one job per item attempt; every item ran once (attempt 1).
        jobs = await queue_jobs(client, QUEUE)
        per_item = Counter(j["workflow"]["item_index"] for j in jobs)
        assert per_item == Counter({n: 1 for n in range(ITEMS)}), per_item - Counter(range(ITEMS))
        assert all(j["status"] == "completed" for j in jobs)
        listed: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = await client.get(
                f"/infra/workflows/executions/{execution_id}/steps/m/items", params=params
            )
            listed += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert [i["index"] for i in listed] == list(range(ITEMS))
        assert all(i["attempt"] == 1 and i["status"] == "completed" for i in listed)
        assert {i["job_id"] for i in listed} == {j["id"] for j in jobs}
        # A job held across the crash ran out its lease and was claimed again: same job.
        again = {j["id"]: j for j in jobs}
        assert all(again[h["id"]]["attempt"] == 2 for h in held)
        assert all(again[h["id"]]["result"] == work(h) for h in held)
    assert server.terminate() == 0
