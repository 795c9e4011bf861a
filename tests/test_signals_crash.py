"""kill -9 right after signals are acknowledged: none is lost and none is taken twice.

``flowyard serve`` runs as a real child process (on a temp SQLite file, or with ``--store
postgresql`` on a throwaway database) and is killed with SIGKILL while signals are being
sent; it is started again on the same store.
"""

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess, fresh_db
from tests.http_support import api
from tests.signal_support import post_signal, wait_step
from tests.workflow_support import (
    ack,
    claim_one,
    create_blueprint,
    events,
    execution,
    pull_step,
    trigger,
    wait_execution,
)

StartServer = Callable[..., ServerProcess]
FIRST = 10  # acknowledged before the crash
RACING = 3  # in flight when the server is killed: each may or may not have been accepted
ROOTS = 3  # steps that wait from the start; the others wait once the gate job is done


async def start_server(server_process: StartServer, db: str) -> ServerProcess:
    return await anyio.to_thread.run_sync(lambda: server_process(db))


async def test_acknowledged_signals_survive_kill9_and_are_taken_once(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = fresh_db(tmp_path)
    key = create_key_sync(db, "crash", list(ALL_SCOPES)).key
    server = await start_server(server_process, db)
    waiters = FIRST + RACING  # every signal that may have been accepted finds a step
    steps = [wait_step(f"w{i}", "go") for i in range(ROOTS)]
    steps.append(pull_step("gate", "sig-gate", {}))
    steps += [wait_step(f"a{i}", "go", depends_on=["gate"]) for i in range(waiters - ROOTS)]
    acked: dict[str, dict[str, Any]] = {}  # idempotency key -> the 200 answer
    async with api(server.url, key) as client:
        blueprint = await create_blueprint(client, steps, name="signals-crash")
        execution_id = (await trigger(client, blueprint["id"]))["execution_id"]

        async def send(n: int) -> None:
            try:
                response = await post_signal(client, execution_id, "go", n, idempotency_key=f"k{n}")
            except httpx.HTTPError:
                return  # the server died first: unknown whether it was accepted
            if response.status_code == 200:
                acked[f"k{n}"] = response.json()

        async with anyio.create_task_group() as tg:
            for n in range(FIRST):
                tg.start_soon(send, n)
        assert len(acked) == FIRST
        async with anyio.create_task_group() as tg:
            for n in range(FIRST, FIRST + RACING):
                tg.start_soon(send, n)
            with anyio.fail_after(30):
                while len(acked) == FIRST:  # kill as soon as one more is acknowledged
                    await anyio.sleep(0.001)
            server.kill9()

    server = await start_server(server_process, db)
    async with api(server.url, key) as client:
        # Idempotent replays after the restart give the first answers.
        for idem, first in acked.items():
            n = int(idem[1:])
            again = await post_signal(client, execution_id, "go", n, idempotency_key=idem)
            assert again.status_code == 200, again.text
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json() == first
        taken_at_once = [a for a in acked.values() if a["consumed_by"] is not None]
        assert len(taken_at_once) <= ROOTS
        state = await execution(client, execution_id)
        for answer in taken_at_once:
            step = next(s for s in state["steps"] if s["step_id"] == answer["consumed_by"])
            assert step["status"] == "completed" and step["signal_id"] == answer["signal_id"]

        # The kept ones are still kept: the gate lets the other steps wait, and they take them.
        await ack(client, await claim_one(client, "sig-gate"), result="open")
        log = await events(client, execution_id)
        received = [e["data"]["signal_id"] for e in log if e["type"] == "signal_received"]
        assert len(received) == len(set(received))  # each accepted once
        assert {a["signal_id"] for a in acked.values()} <= set(received)
        state = await wait_execution(
            client,
            execution_id,
            lambda s: sum(x["status"] == "completed" for x in s["steps"]) == len(received) + 1,
        )
        taken = [s["signal_id"] for s in state["steps"] if s["signal_id"] is not None]
        assert Counter(taken) == Counter(received)  # every accepted signal taken exactly once
        by_id = {a["signal_id"]: int(k[1:]) for k, a in acked.items()}
        for s in state["steps"]:
            if s["signal_id"] in by_id:
                assert s["output"] == by_id[s["signal_id"]]
    assert server.terminate() == 0
