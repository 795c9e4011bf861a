"""kill -9 in the middle of workflows: every execution carries on after a restart.

``flowyard serve`` runs as a real child process on a temp SQLite file; it is killed with
SIGKILL while executions are at different steps and started again on the same file.
"""

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess
from tests.http_support import api
from tests.workflow_support import (
    ack,
    claim_one,
    create_blueprint,
    execution,
    pull_step,
    queue_jobs,
    step_of,
    trigger,
    wait_status,
    wait_step,
    workers,
)

StartServer = Callable[..., ServerProcess]
QUEUES = {"s1": "cr-1", "s2": "cr-2", "s3": "cr-3"}
ARGS = ("--retry-base-seconds", "0.05")


async def start_server(server_process: StartServer, db: str) -> ServerProcess:
    return await anyio.to_thread.run_sync(lambda: server_process(db, *ARGS))


async def test_executions_survive_kill9(tmp_path: Path, server_process: StartServer) -> None:
    db = str(tmp_path / "crash.db")
    key = create_key_sync(db, "crash", list(ALL_SCOPES)).key
    server = await start_server(server_process, db)
    steps = [
        pull_step("s1", QUEUES["s1"], {"n": "{{input.n}}"}),
        pull_step("s2", QUEUES["s2"], {"prev": "{{steps.s1.output}}"}, depends_on=["s1"]),
        pull_step("s3", QUEUES["s3"], {"prev": "{{steps.s2.output}}"}, depends_on=["s2"]),
    ]
    async with api(server.url, key) as client:
        blueprint = await create_blueprint(client, steps, name="chain")
        ids = [(await trigger(client, blueprint["id"], {"n": n}))["execution_id"] for n in range(4)]
        # The first step of three executions is done (acknowledged before the crash).
        acked: dict[str, Any] = {}
        for _ in range(3):
            job = await claim_one(client, QUEUES["s1"])
            owner = job["workflow"]["execution_id"]
            acked[owner] = {"s1": job["payload"]["n"], "token": f"before-{owner}"}
            await ack(client, job, acked[owner])
        assert set(acked) == set(ids[:3])  # oldest first
        # The second step of one of them is claimed (with a short lease) and never acked.
        held = await claim_one(client, QUEUES["s2"], visibility_timeout=2)
        held_execution = held["workflow"]["execution_id"]
        assert held_execution == ids[0]
        assert held["payload"] == {"prev": acked[ids[0]]}
        await wait_step(client, held_execution, "s2", "running")
        before = {e: await execution(client, e) for e in ids}

    server.kill9()
    server = await start_server(server_process, db)

    async with api(server.url, key) as client:
        for execution_id in ids:
            state = await execution(client, execution_id)
            assert state["status"] == "running"
            assert [s["job_id"] for s in state["steps"]] == [
                s["job_id"] for s in before[execution_id]["steps"]
            ]
            if execution_id in acked:
                assert step_of(state, "s1")["status"] == "completed"
                assert step_of(state, "s1")["output"] == acked[execution_id]
            else:
                assert step_of(state, "s1")["status"] == "queued"
        assert step_of(await execution(client, held_execution), "s2")["status"] == "running"

        def work(step: str) -> Callable[[dict[str, Any]], Any]:
            previous = {"s2": "s1", "s3": "s2"}.get(step)
            return lambda job: {
                step: job["payload"]["prev"][previous] if previous else job["payload"]["n"]
            }

        async with workers(client, {queue: work(step) for step, queue in QUEUES.items()}):
            finals = [await wait_status(client, e, "completed", timeout=30) for e in ids]

        for n, state in enumerate(finals):
            s1_output = acked.get(state["id"], {"s1": n})
            assert state["result"] == {"s1": s1_output, "s2": {"s2": n}, "s3": {"s3": n}}
            assert all(s["attempt"] == 1 for s in state["steps"]), state["steps"]

        # Exactly one job per step attempt: nothing was queued twice by the restart.
        for step, queue in QUEUES.items():
            jobs = await queue_jobs(client, queue)
            per_step = Counter(
                (j["workflow"]["execution_id"], j["workflow"]["step_id"]) for j in jobs
            )
            assert per_step == Counter({(e, step): 1 for e in ids}), per_step
            assert all(j["status"] == "completed" for j in jobs)
            for state in finals:
                assert step_of(state, step)["job_id"] in {j["id"] for j in jobs}
        # The claim held across the crash ran out and the same job was claimed again.
        again = next(j for j in await queue_jobs(client, QUEUES["s2"]) if j["id"] == held["id"])
        assert again["attempt"] == 2
        assert again["result"] == {"s2": 0}
    assert server.terminate() == 0
