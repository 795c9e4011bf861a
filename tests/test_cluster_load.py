"""``kill -9`` of a node of a real 3-node cluster while workers on the other nodes run a
stream of workflows: every execution completes and no step attempt gets two jobs. Skipped,
with the reason, where PostgreSQL is not installed.
"""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.cluster_nodes import cluster_of, postgres_server
from tests.workflow_support import Json, create_blueprint, pull_step, queue_jobs

QUEUE = "load"
DIAMOND = [
    pull_step("a", QUEUE),
    pull_step("b", QUEUE, depends_on=["a"]),
    pull_step("c", QUEUE, depends_on=["a"]),
    pull_step("d", QUEUE, depends_on=["b", "c"]),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


async def retried(api: httpx.AsyncClient, path: str, body: Any) -> Json:
    """POST until answered 200: a node that died, or shards moving, answer 503 for a while."""
    with anyio.fail_after(20):
        while True:
            try:
                response = await api.post(path, json=body)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return dict(response.json())
            assert response is None or response.status_code == 503, response.text
            await anyio.sleep(0.05)


class Worker:
    """A pull worker on one node: acks and claims in one exchange, acks kept until answered."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api
        self.done = 0

    async def run(self) -> None:
        acks: list[Json] = []
        while True:
            claim = {"queue": QUEUE, "count": 4, "wait_seconds": 0.5, "visibility_timeout": 3}
            answer = await retried(self.api, "/infra/jobs/exchange", {"acks": acks, "claim": claim})
            kept = []
            for sent, result in zip(acks, answer["acks"], strict=True):
                if result["ok"]:
                    self.done += 1
                elif result["error"]["code"] == "unavailable":
                    kept.append(sent)  # its owner is being taken over: again
                # else a lease that ran out meanwhile: the job was claimed again
            acks = kept + [
                {"job_id": job["id"], "status": "completed", "claim_token": job["claim_token"],
                 "result": job["workflow"]["step_id"]}
                for job in answer["jobs"]
            ]  # fmt: skip


async def test_kill9_under_load_completes_every_execution_with_one_job_per_step(
    server: str, tmp_path: Path
) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        victim, one, two = nodes.all
        clients = [node.client(key) for node in nodes.all]
        async with clients[0], clients[1], clients[2]:
            blueprint = await create_blueprint(clients[1], DIAMOND, name="load")
            path = f"/infra/workflows/blueprints/{blueprint['id']}/trigger"
            executions: list[str] = []
            workers = [Worker(clients[1]), Worker(clients[2])]
            async with anyio.create_task_group() as tg:
                for worker in workers:
                    tg.start_soon(worker.run)
                for n in range(12):  # a third of them in the victim's shards
                    made = await retried(clients[n % 3], path, {"input_data": {"n": n}})
                    executions.append(made["execution_id"])
                with anyio.fail_after(20):
                    while sum(w.done for w in workers) < 12:
                        await anyio.sleep(0.02)
                victim.kill9()
                for n in range(12, 18):
                    made = await retried(clients[1 + n % 2], path, {"input_data": {"n": n}})
                    executions.append(made["execution_id"])
                await _all_completed(clients[1], executions)
                tg.cancel_scope.cancel()
            await nodes.settled([one, two])
            jobs = await queue_jobs(clients[2], QUEUE)
        steps = Counter((j["workflow"]["execution_id"], j["workflow"]["step_id"]) for j in jobs)
        assert len(steps) == 4 * len(executions)
        assert set(steps.values()) == {1}, [step for step, count in steps.items() if count > 1]
        assert {job["status"] for job in jobs} == {"completed"}


async def _all_completed(api: httpx.AsyncClient, executions: list[str]) -> None:
    waiting = set(executions)
    with anyio.fail_after(45):
        while waiting:
            for execution_id in sorted(waiting):
                try:
                    response = await api.get(f"/infra/workflows/executions/{execution_id}")
                except httpx.TransportError:
                    continue
                if response.status_code == 200:
                    status = response.json()["status"]
                    assert status in {"running", "completed"}, response.text
                    if status == "completed":
                        waiting.discard(execution_id)
            await anyio.sleep(0.1)
