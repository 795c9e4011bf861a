"""A cluster of three real ``flowyard serve --node-url`` processes on one PostgreSQL database:
the shards are shared out, any node serves any route, and a claim on any node reaches a job
owned by another. Skipped, with the reason, where PostgreSQL is not installed.

Takeover, hand-over, fencing and rebalancing are in ``test_cluster_failover.py``.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.cluster_nodes import cluster_of, create_key, postgres_server
from tests.receiver_support import running_receiver
from tests.signal_support import wait_step as signal_step
from tests.webhook_support import create_webhook
from tests.workflow_support import (
    Json,
    ack,
    claim,
    claim_one,
    create_blueprint,
    execution,
    get_job,
    pull_step,
    trigger,
    wait_status,
    wait_step,
)

DIAMOND = [
    pull_step("a", "dq"),
    pull_step("b", "dq", depends_on=["a"]),
    pull_step("c", "dq", depends_on=["a"]),
    pull_step("d", "dq", depends_on=["b", "c"]),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


async def create_pull(api: httpx.AsyncClient, queue: str, **body: Any) -> Json:
    response = await api.post(
        "/infra/jobs", json={"trigger": {"type": "pull", "queue": queue}, **body}
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


async def test_three_nodes_share_the_64_shards_evenly(server: str, tmp_path: Path) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, _):
        shares = await nodes.settled()
        assert sorted(len(owned) for owned in shares.values()) == [21, 21, 22]
        assert sorted(s for owned in shares.values() for s in owned) == list(range(64))
        assert set(shares) == {node.url for node in nodes.all}
        admin = await anyio.to_thread.run_sync(lambda: create_key(nodes.db, "ops", admin=True))
        for node in nodes.all:  # every node shows the same cluster
            async with node.client(admin) as api:
                response = await api.get("/admin/cluster")
            assert response.status_code == 200, response.text
            state = response.json()
            assert state["shards"] == {"total": 64, "unowned": 0}
            assert {n["url"]: n["shards"] for n in state["nodes"]} == shares


async def test_any_node_serves_any_execution_route(server: str, tmp_path: Path) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        one, two, three = (node.client(key) for node in nodes.all)
        async with one, two, three:
            steps = [pull_step("a", "rq"), signal_step("w", "go", depends_on=["a"])]
            steps.append(pull_step("b", "rq", depends_on=["w"]))
            blueprint = await create_blueprint(one, steps, name="routes")
            started = await trigger(two, blueprint["id"])
            execution_id = started["execution_id"]
            for api in (one, two, three):
                assert (await execution(api, execution_id))["id"] == execution_id
            owner = await nodes.owner_of(execution_id)
            async with (await nodes.not_owner_of(execution_id)).client(key) as other:
                paused = await other.post(f"/infra/workflows/executions/{execution_id}/pause")
                assert paused.status_code == 200, paused.text
                async with owner.client(key) as direct:
                    assert (await execution(direct, execution_id))["status"] == "paused"
                resumed = await other.post(
                    f"/infra/workflows/executions/{execution_id}/resume", json={}
                )
                assert resumed.status_code == 200, resumed.text
                job = await claim_one(three, "rq")
                await ack(two, job, {"a": 1})
                await wait_step(other, execution_id, "w", "waiting")
                sent = await other.post(
                    f"/infra/workflows/executions/{execution_id}/signals",
                    json={"name": "go", "data": {"ok": True}},
                )
                assert sent.status_code == 200, sent.text
                await ack(one, await claim_one(two, "rq"), {"b": 1})
                await wait_status(three, execution_id, "completed")
                second = (await trigger(three, blueprint["id"]))["execution_id"]
            async with (await nodes.not_owner_of(second)).client(key) as other:
                cancelled = await other.post(f"/infra/workflows/executions/{second}/cancel")
                assert cancelled.status_code == 200, cancelled.text
                assert cancelled.json()["status"] == "cancelled"
            for api in (one, two, three):
                listed = (await api.get("/infra/workflows/executions")).json()
                assert {e["id"] for e in listed["executions"]} == {execution_id, second}


async def test_any_node_serves_any_job_route(server: str, tmp_path: Path) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        one = nodes.all[0].client(key)
        async with one:
            jobs = [await create_pull(one, "jq", payload={"n": n}) for n in range(3)]
        for job in jobs:
            async with (await nodes.not_owner_of(job["id"])).client(key) as other:
                assert (await get_job(other, job["id"]))["payload"] == job["payload"]
        first, second, third = jobs
        async with (await nodes.not_owner_of(first["id"])).client(key) as other:
            patched = await other.patch(f"/infra/jobs/{first['id']}", json={"payload": {"n": 9}})
            assert patched.status_code == 200, patched.text
            assert patched.json()["payload"] == {"n": 9}
        async with (await nodes.not_owner_of(second["id"])).client(key) as other:
            cancelled = await other.delete(f"/infra/jobs/{second['id']}")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
        async with (await nodes.owner_of(third["id"])).client(key) as owner:
            claimed = {job["id"]: job for job in await claim(owner, "jq", wait=1, count=5)}
        assert set(claimed) == {first["id"], third["id"]}
        for job in claimed.values():
            async with (await nodes.not_owner_of(job["id"])).client(key) as other:
                beat = await other.post(
                    f"/infra/jobs/{job['id']}/heartbeat",
                    json={"visibility_timeout": 60, "claim_token": job["claim_token"]},
                )
                assert beat.status_code == 200, beat.text
                assert (await ack(other, job, {"done": job["id"]}))["status"] == "completed"
                runs = await other.get(f"/infra/jobs/{job['id']}/runs")
                assert runs.status_code == 200, runs.text
                assert [run["status"] for run in runs.json()["runs"]] == ["completed"]
        for node in nodes.all:
            async with node.client(key) as api:
                listed = (await api.get("/infra/jobs", params={"queue": "jq"})).json()
                assert {job["id"]: job["status"] for job in listed["jobs"]} == {
                    first["id"]: "completed",
                    second["id"]: "cancelled",
                    third["id"]: "completed",
                }


async def test_a_claim_on_one_node_takes_a_job_owned_by_another(
    server: str, tmp_path: Path
) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        one, two, three = nodes.all
        async with one.client(key) as maker, two.client(key) as worker:
            for n in range(3):  # a plain claim, 100 ms after the job became ready elsewhere
                made = await create_pull(maker, f"cq{n}")
                await anyio.sleep(0.1)
                [taken] = await claim(worker, f"cq{n}", wait=0)
                assert taken["id"] == made["id"]
        async with one.client(key) as maker, three.client(key) as waiter:
            latencies = [await _long_poll_latency(maker, waiter, f"lp{n}") for n in range(5)]
        assert sorted(latencies)[2] < 0.1, latencies  # the median wake-up


async def _long_poll_latency(
    maker: httpx.AsyncClient, waiter: httpx.AsyncClient, queue: str
) -> float:
    """Seconds from a job's creation on one node to a long-poll on another returning it."""
    found: list[Json] = []
    returned = 0.0

    async def wait() -> None:
        nonlocal returned
        found.extend(await claim(waiter, queue, wait=10))
        returned = time.monotonic()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.3)  # the claim is waiting
        made = await create_pull(maker, queue)
        created = time.monotonic()
    assert [job["id"] for job in found] == [made["id"]]
    return returned - created


async def test_exchange_acks_jobs_owned_by_other_nodes(server: str, tmp_path: Path) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        one, two, three = (node.client(key) for node in nodes.all)
        async with one, two, three:
            made = [await create_pull(api, "xq") for api in (one, two, one, two)]
            claimed = await claim(three, "xq", wait=2, count=4)
            while len(claimed) < 4:
                claimed += await claim(three, "xq", wait=2, count=4 - len(claimed))
            assert {job["id"] for job in claimed} == {job["id"] for job in made}
            acks = [
                {
                    "job_id": job["id"],
                    "status": "completed",
                    "result": n,
                    "claim_token": job["claim_token"],
                }
                for n, job in enumerate(claimed)
            ]
            answer = await three.post("/infra/jobs/exchange", json={"acks": acks})
            assert answer.status_code == 200, answer.text
            assert [a["ok"] for a in answer.json()["acks"]] == [True] * 4, answer.text
            for n, job in enumerate(claimed):
                stored = await get_job(one, job["id"])
                assert (stored["status"], stored["result"]) == ("completed", n)


async def test_a_diamond_runs_with_workers_on_every_node(server: str, tmp_path: Path) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        clients = [node.client(key) for node in nodes.all]
        one, two, three = clients
        async with one, two, three:
            blueprint = await create_blueprint(one, DIAMOND, name="diamond")
            executions = [(await trigger(api, blueprint["id"]))["execution_id"] for api in clients]
            done: list[str] = []
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for api in clients:
                        tg.start_soon(_exchange_worker, api, done, 12, tg.cancel_scope)
            for execution_id in executions:
                state = await wait_status(two, execution_id, "completed")
                assert {s["status"] for s in state["steps"]} == {"completed"}
        assert len(done) == len(set(done)) == 12


async def _exchange_worker(
    api: httpx.AsyncClient, done: list[str], total: int, scope: anyio.CancelScope
) -> None:
    """Claim and ack step jobs through ``/infra/jobs/exchange`` until ``total`` are done."""
    acks: list[Json] = []
    while True:
        body = {"acks": acks, "claim": {"queue": "dq", "count": 2, "wait_seconds": 1}}
        response = await api.post("/infra/jobs/exchange", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert all(a["ok"] for a in answer["acks"]), answer
        done.extend(a["job_id"] for a in answer["acks"])
        if len(done) >= total:
            scope.cancel()
            return
        acks = [
            {"job_id": j["id"], "status": "completed", "result": j["workflow"]["step_id"],
             "claim_token": j["claim_token"]}
            for j in answer["jobs"]
        ]  # fmt: skip


async def test_one_idempotency_key_used_on_every_node_makes_one_object(
    server: str, tmp_path: Path
) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        one, two, three = (node.client(key) for node in nodes.all)
        async with one, two, three:
            blueprint = await create_blueprint(one, [pull_step("a", "kq")], name="keyed")
            body = {"input_data": {"n": 1}, "idempotency_key": "order-1"}
            path = f"/infra/workflows/blueprints/{blueprint['id']}/trigger"
            answers = [await api.post(path, json=body) for api in (one, two, three)]
            assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
            assert len({a.json()["execution_id"] for a in answers}) == 1
            assert [a.headers.get("idempotent-replayed") for a in answers[1:]] == ["true"] * 2
            other = await two.post(path, json={**body, "input_data": {"n": 2}})
            assert other.status_code == 409, other.text

            async def keyed_job(api: httpx.AsyncClient) -> str:
                return (await create_pull(api, "kq-jobs", idempotency_key="job-1"))["id"]

            made = [await keyed_job(api) for api in (three, two, one)]
            assert len(set(made)) == 1
            listed = (await one.get("/infra/jobs", params={"queue": "kq-jobs"})).json()
            assert [job["id"] for job in listed["jobs"]] == made[:1]


async def test_queue_settings_and_counts_are_the_whole_cluster_s(
    server: str, tmp_path: Path
) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        one, two, three = (node.client(key) for node in nodes.all)
        async with one, two, three:
            for api in (one, two, three):  # each node makes jobs in its own shards
                for _ in range(2):
                    await create_pull(api, "shared")
            paused = await one.put("/infra/queues/shared", json={"paused": True})
            assert paused.status_code == 200, paused.text
            await anyio.sleep(0.3)  # the other nodes hear of it (NOTIFY)
            for api in (two, three):
                claimed = await api.post("/infra/jobs/claim", json={"queue": "shared", "count": 10})
                assert claimed.json() == []
            for api in (one, two, three):
                [queue] = [
                    q
                    for q in (await api.get("/infra/queues")).json()["queues"]
                    if q["name"] == "shared"
                ]
                assert (queue["depth"], queue["paused"]) == (6, True)
            await three.put("/infra/queues/shared", json={"paused": False})
            await anyio.sleep(0.3)
            taken: set[str] = set()
            for _ in range(6):  # its own first, then the others' (unpaused, they say so again)
                answer = await two.post("/infra/jobs/claim", json={"queue": "shared", "count": 10})
                taken |= {job["id"] for job in answer.json()}
            assert len(taken) == 6


async def test_a_webhook_made_on_one_node_hears_every_node_s_events(
    server: str, tmp_path: Path
) -> None:
    async with cluster_of(server, tmp_path, 3) as (nodes, key):
        one, two, three = (node.client(key) for node in nodes.all)
        with running_receiver() as receiver:
            async with one, two, three:
                hook = await create_webhook(
                    one, receiver.script("/events"), topics=["jobs.completed"]
                )
                await anyio.sleep(0.3)  # the other nodes hear of it (NOTIFY)

                async def complete(api: httpx.AsyncClient) -> str:
                    made = await create_pull(api, "hooked")  # in this node's shards
                    job = await claim_one(api, "hooked")
                    await ack(api, job, {"ok": True})
                    return str(made["id"])

                done = {await complete(api) for api in (one, two, three)}
                got = await anyio.to_thread.run_sync(lambda: receiver.wait_for("/events", 3))
                assert {r.json()["data"]["job_id"] for r in got} == done
                disabled = await three.patch(
                    f"/infra/webhooks/{hook['id']}", json={"enabled": False}
                )
                assert disabled.status_code == 200, disabled.text
                await anyio.sleep(0.3)
                for api in (one, two, three):
                    await complete(api)
                await anyio.sleep(1)
                assert len(receiver.to("/events")) == 3
