"""A node of a real 3-node cluster dies, stops, pauses or joins: its shards move to the others
in time, its work goes on, and a paused node that lost its lease writes nothing for them.
Skipped, with the reason, where PostgreSQL is not installed.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.cluster_nodes import Node, Nodes, cluster_of, create_key, postgres_server, query
from tests.conftest import Handler
from tests.workflow_support import (
    Json,
    ack,
    claim,
    create_blueprint,
    get_job,
    pull_step,
    trigger,
    wait_status,
)

LEASE_SECONDS = 5.0


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def diamond(queue: str) -> list[Json]:
    return [
        pull_step("a", queue),
        pull_step("b", queue, depends_on=["a"]),
        pull_step("c", queue, depends_on=["a"]),
        pull_step("d", queue, depends_on=["b", "c"]),
    ]


async def create(api: httpx.AsyncClient, **body: Any) -> Json:
    response = await api.post("/infra/jobs", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def start_diamonds(nodes: Nodes, node: Node, count: int, queue: str) -> list[str]:
    """``count`` executions of a diamond on queue ``queue``, made on ``node`` (in its shards)."""
    async with node.client(nodes.key) as api:
        blueprint = await create_blueprint(api, diamond(queue), name=queue)
        made = [(await trigger(api, blueprint["id"]))["execution_id"] for _ in range(count)]
    for execution_id in made:
        assert await nodes.owner_of(execution_id) is node
    return made


async def claim_all(api: httpx.AsyncClient, queue: str, count: int) -> list[Json]:
    """Claim until ``count`` jobs were taken (a claim may return fewer than it asks: those
    of its own node first)."""
    taken: list[Json] = []
    with anyio.fail_after(10):
        while len(taken) < count:
            taken += await claim(api, queue, wait=1, count=count - len(taken))
    return taken


async def finish(api: httpx.AsyncClient, queue: str, executions: list[str], acked: int = 0) -> None:
    """Work the step jobs of ``queue`` (``acked`` of them were already) until the executions
    completed; each step attempt has exactly one job, each with one run."""
    done = 0
    try:
        with anyio.fail_after(20):
            while done < 4 * len(executions) - acked:
                for job in await claim(api, queue, wait=1, count=10):
                    await ack(api, job, {"step": job["workflow"]["step_id"]})
                    done += 1
    except TimeoutError:
        states = [(await api.get(f"/infra/workflows/executions/{e}")).json() for e in executions]
        steps = [{s["step_id"]: (s["status"], s["job_id"]) for s in st["steps"]} for st in states]
        raise AssertionError(f"{done} step jobs done; the steps: {steps}") from None
    for execution_id in executions:
        state = await wait_status(api, execution_id, "completed")
        assert {s["status"] for s in state["steps"]} == {"completed"}
        assert [s["attempt"] for s in state["steps"]] == [1, 1, 1, 1]
    await one_job_per_step(api, executions)


async def one_job_per_step(api: httpx.AsyncClient, executions: list[str]) -> None:
    """Every step of the executions has one job, with one run: nothing ran twice."""
    for execution_id in executions:
        state = (await api.get(f"/infra/workflows/executions/{execution_id}")).json()
        job_ids = [step["job_id"] for step in state["steps"]]
        assert len(set(job_ids)) == 4 and None not in job_ids
        for job_id in job_ids:
            runs = (await api.get(f"/infra/jobs/{job_id}/runs")).json()["runs"]
            assert len(runs) == 1, runs


async def test_a_killed_node_s_shards_are_taken_over_and_its_work_goes_on(
    server: str, tmp_path: Path
) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        victim, one, two = nodes.all
        executions = await start_diamonds(nodes, victim, 3, "kq")
        async with victim.client(key) as api:
            jobs = [await create(api, trigger={"type": "pull", "queue": "kj"}) for _ in range(4)]
            held = await claim(api, "kj", wait=1, count=2)  # claimed on the node that dies
            firsts = await claim(api, "kq", wait=1, count=3)  # the executions' step a
        assert len(held) == 2 and len(firsts) == 3
        victim.kill9()
        killed = time.monotonic()
        await nodes.owned_by([one, two], timeout=LEASE_SECONDS)
        assert time.monotonic() - killed < LEASE_SECONDS
        shares = await nodes.settled([one, two])
        admin = await anyio.to_thread.run_sync(lambda: create_key(nodes.db, "ops", admin=True))
        async with two.client(admin) as api:
            state = (await api.get("/admin/cluster")).json()
        assert state["shards"] == {"total": 64, "unowned": 0}
        assert {node["url"]: node["shards"] for node in state["nodes"]} == shares
        async with one.client(key) as api:
            for job in held:  # acked on the new owner with the dead node's claim token
                assert (await ack(api, job, {"after": "takeover"}))["status"] == "completed"
            left = await claim_all(api, "kj", 2)
            assert {job["id"] for job in left} == {job["id"] for job in jobs} - {
                job["id"] for job in held
            }
            for job in firsts:
                await ack(api, job, {"step": "a"})
            await finish(api, "kq", executions, acked=len(firsts))
            for job in jobs:
                assert (await get_job(api, job["id"]))["status"] in {"completed", "running"}


async def test_sigterm_hands_the_shards_over_at_once(server: str, tmp_path: Path) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        leaving, one, two = nodes.all
        executions = await start_diamonds(nodes, leaving, 2, "tq")
        asked = time.monotonic()
        assert await anyio.to_thread.run_sync(leaving.terminate) == 0
        exited = time.monotonic()
        await nodes.owned_by([one, two], timeout=LEASE_SECONDS)
        assert time.monotonic() - exited < 1.5, "handed over (~1 renewal), not left to expire"
        assert time.monotonic() - asked < LEASE_SECONDS
        assert "handed" in leaving.log() and "shards over" in leaving.log()
        await nodes.settled([one, two])
        async with two.client(key) as api:
            await finish(api, "tq", executions)


async def test_a_paused_node_is_fenced_and_writes_nothing_for_the_shards_it_lost(
    server: str, tmp_path: Path, handler: Handler
) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        paused, one, two = nodes.all
        node_id = await nodes.node_id(paused)
        [before] = await query(
            nodes.db, "SELECT epoch FROM cluster_nodes WHERE url = $1", paused.url
        )
        async with paused.client(key) as api:
            trigger_late = {"type": "delayed", "delay_seconds": 2}
            late = await create(api, trigger=trigger_late, handler=handler.at("/late"))
        assert await nodes.owner_of(late["id"]) is paused
        paused.pause()
        stopped = time.monotonic()
        try:
            await nodes.owned_by([one, two], timeout=3 * LEASE_SECONDS)
            assert time.monotonic() - stopped >= LEASE_SECONDS - 1  # it had to expire
            rows = await query(
                nodes.db, "SELECT epoch FROM cluster_nodes WHERE node_id = $1", node_id
            )
            assert rows == [] or rows[0]["epoch"] > before["epoch"]  # fenced
            [delivery] = await handler.wait_for("/late", timeout=10)  # by the new owner
            assert delivery.headers["x-flowyard-attempt"] == "1"
            await anyio.sleep(max(0.0, stopped + LEASE_SECONDS + 1.5 - time.monotonic()))
        finally:
            paused.resume()  # its delayed job is overdue there too: its commit must fail
        shares = await nodes.settled(timeout=20)
        assert len(shares[paused.url]) in (21, 22)  # it rejoined
        assert "lost its lease" in paused.log()
        async with paused.client(key) as api:
            job = await get_job(api, late["id"])
            assert (job["status"], job["attempt"]) == ("completed", 1)
            runs = (await api.get(f"/infra/jobs/{late['id']}/runs")).json()["runs"]
            assert len(runs) == 1, runs
            again = await create(api, trigger={"type": "pull", "queue": "after"})
            assert (await get_job(api, again["id"]))["status"] == "pending"
        stored = await query(
            nodes.db, "SELECT count(*) AS n FROM runs WHERE job_id = $1", late["id"]
        )
        assert stored[0]["n"] == 1
        assert len(handler.to("/late")) == 1


async def test_a_joining_node_takes_a_share_and_leaving_ones_give_theirs_back(
    server: str, tmp_path: Path
) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        first = nodes.all[0]
        async with first.client(key) as api:
            jobs = [await create(api, trigger={"type": "pull", "queue": "rb"}) for _ in range(6)]
        [fourth] = await nodes.start(1)
        shares = await nodes.settled(timeout=20)
        assert sorted(len(owned) for owned in shares.values()) == [16, 16, 16, 16]
        async with fourth.client(key) as api:
            for job in jobs:
                assert (await get_job(api, job["id"]))["status"] == "pending"
        leaving = nodes.all[:2]
        for node in leaving:
            assert await anyio.to_thread.run_sync(node.terminate) == 0
        staying = [nodes.all[2], fourth]
        shares = await nodes.settled(staying, timeout=20)
        assert sorted(len(owned) for owned in shares.values()) == [32, 32]
        async with fourth.client(key) as api:  # a worker of one node takes every shard's jobs
            taken = await claim_all(api, "rb", len(jobs))
            assert sorted(job["id"] for job in taken) == sorted(job["id"] for job in jobs)


async def test_a_paused_node_s_late_push_result_is_not_written(
    server: str, tmp_path: Path, handler: Handler
) -> None:
    """A delivery in flight when its node pauses: the handler answers while the node is
    stopped, the new owner delivers again; the paused node's result, read at resume, is
    fenced out, so the job has the new owner's result and runs only."""
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        paused, one, two = nodes.all
        slow = handler.script("/slow", (200, {"by": "paused"}, 3.0), (200, {"by": "new"}, 0))
        async with paused.client(key) as api:
            job = await create(api, trigger={"type": "immediate"}, handler=slow, timeout=20)
        assert await nodes.owner_of(job["id"]) is paused
        [first] = await handler.wait_for("/slow")
        paused.pause()
        stopped = time.monotonic()
        try:
            await nodes.owned_by([one, two], timeout=3 * LEASE_SECONDS)
            _, second = await handler.wait_for("/slow", count=2, timeout=10)
            assert second.headers["x-flowyard-run-id"] != first.headers["x-flowyard-run-id"]
            async with one.client(key) as api:
                done = await get_job(api, job["id"])
                with anyio.fail_after(10):
                    while done["status"] != "completed":
                        await anyio.sleep(0.05)
                        done = await get_job(api, job["id"])
            await anyio.sleep(max(0.0, stopped + LEASE_SECONDS + 1.5 - time.monotonic()))
        finally:
            paused.resume()  # it reads the first answer now: its commit must fail
        await nodes.settled(timeout=20)
        assert "lost its lease" in paused.log()
        async with paused.client(key) as api:
            stored = await get_job(api, job["id"])
            assert (stored["status"], stored["result"]) == ("completed", {"by": "new"})
            runs = (await api.get(f"/infra/jobs/{job['id']}/runs")).json()["runs"]
        assert [run["status"] for run in runs] == ["completed", "failed"]  # newest first
        rows = await query(nodes.db, "SELECT count(*) AS n FROM runs WHERE job_id = $1", job["id"])
        assert rows[0]["n"] == 2 and len(handler.to("/slow")) == 2
