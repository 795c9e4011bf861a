"""SIGTERM or SIGINT amid real load: exit 0 soon, answer or close cleanly, lose no write.

The real server runs as a child process. Clients create jobs, trigger executions, claim and
ack pull jobs at full speed, while others long-poll an empty queue; then the server gets
SIGTERM. Every request must end in a proper answer or a clean close, every write that was
answered 2xx must be in the SQLite file, and a server restarted on the file must serve it.
"""

import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess
from tests.load_support import Answer, Tally, call
from tests.workflow_support import create_blueprint, pull_step

StartServer = Callable[..., ServerProcess]

CONCURRENCY = 8  # clients of each kind
LONG_POLL_SECONDS = 20
EXIT_WITHIN_SECONDS = 25  # the server's grace period is 5 s; a long-poll would hold 20 s


@dataclass
class Ledger:
    """Every write the server acknowledged with a 2xx, and the long-polls' fates."""

    jobs: set[str] = field(default_factory=set)
    executions: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    long_polls: list[tuple[float, Answer]] = field(default_factory=list)  # (started, answer)
    tally: Tally = field(default_factory=Tally)
    gone: anyio.Event = field(default_factory=anyio.Event)  # a client saw the port closed

    def stopped(self, answer: Answer) -> bool:
        """Whether the server has stopped answering (the client should stop)."""
        if answer.status == 0:
            self.gone.set()
        return self.gone.is_set()


def api(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=httpx.Timeout(60)
    )


async def creator(client: httpx.AsyncClient, ledger: Ledger, n: int) -> None:
    for i in range(100_000):
        body = {"trigger": {"type": "pull", "queue": "work"}, "payload": {"n": n, "i": i}}
        answer = await call(client, "POST", "/infra/jobs", ledger.tally, body)
        if answer.ok:
            ledger.jobs.add(answer.body["id"])
        if ledger.stopped(answer):
            return


async def triggerer(client: httpx.AsyncClient, ledger: Ledger, blueprint_id: str) -> None:
    path = f"/infra/workflows/blueprints/{blueprint_id}/trigger"
    while True:
        answer = await call(client, "POST", path, ledger.tally, {"input_data": {}})
        if answer.ok:
            ledger.executions.add(answer.body["execution_id"])
        if ledger.stopped(answer):
            return


async def worker(client: httpx.AsyncClient, ledger: Ledger, queue: str) -> None:
    while True:
        body = {"queue": queue, "count": 10, "wait_seconds": 1}
        answer = await call(client, "POST", "/infra/jobs/claim", ledger.tally, body)
        if ledger.stopped(answer):
            return
        for job in answer.body if answer.ok else []:
            ack = {"status": "completed", "result": {"n": 1}, "claim_token": job["claim_token"]}
            path = f"/infra/jobs/{job['id']}/ack"
            acked = await call(client, "POST", path, ledger.tally, ack)
            if acked.ok:
                ledger.acked.add(job["id"])
            if ledger.stopped(acked):
                return


async def long_poller(client: httpx.AsyncClient, ledger: Ledger) -> None:
    while True:
        started = time.monotonic()
        body = {"queue": "nothing-here", "wait_seconds": LONG_POLL_SECONDS}
        answer = await call(client, "POST", "/infra/jobs/claim", ledger.tally, body)
        ledger.long_polls.append((started, answer))
        if ledger.stopped(answer) or answer.refused:
            return


def stored(db: str) -> tuple[dict[str, str], set[str]]:
    """Job id -> status, and the execution ids, straight from the SQLite file."""
    with closing(sqlite3.connect(db)) as conn:
        jobs = dict(conn.execute("SELECT id, status FROM jobs").fetchall())
        executions = {row[0] for row in conn.execute("SELECT id FROM executions")}
    return jobs, executions


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
async def test_signal_under_load_loses_nothing(
    tmp_path: Path, server_process: StartServer, signum: signal.Signals
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "load", list(ALL_SCOPES)).key
    server = await anyio.to_thread.run_sync(lambda: server_process(db))
    ledger = Ledger()
    async with api(server.url, key) as setup:
        steps = [pull_step("a", "flow"), pull_step("b", "flow", depends_on=["a"])]
        blueprint = await create_blueprint(setup, steps)

    exited: dict[str, Any] = {}

    async def terminate_under_load() -> None:
        # Let the load build up: every kind of write has succeeded a few times.
        began = time.monotonic()
        with anyio.fail_after(60):
            while len(ledger.jobs) < 500 or len(ledger.executions) < 50 or len(ledger.acked) < 100:
                await anyio.sleep(0.05)
            await anyio.sleep_until(began + 1)  # the first long-polls are surely waiting
        exited["signalled"] = time.monotonic()
        server.proc.send_signal(signum)
        exited["status"] = await anyio.to_thread.run_sync(server.proc.wait, 60)
        exited["at"] = time.monotonic()
        ledger.gone.set()

    clients = [api(server.url, key) for _ in range(4)]
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(terminate_under_load)
            for n in range(CONCURRENCY):
                tg.start_soon(long_poller, clients[0], ledger)
                tg.start_soon(creator, clients[1], ledger, n)
                tg.start_soon(triggerer, clients[2], ledger, blueprint["id"])
                tg.start_soon(worker, clients[3], ledger, ("work", "flow")[n % 2])
    for client in clients:
        await client.aclose()

    log = server.log_path.read_text()
    assert exited["status"] == 0, log
    assert exited["at"] - exited["signalled"] < EXIT_WITHIN_SECONDS, log
    assert "Traceback" not in log and " ERROR " not in log, log
    assert ledger.tally.faults == [], ledger.tally.faults[:20]
    assert ledger.tally.kinds["500"] == 0

    # Long-polls waiting at the signal were answered at once (empty), not cut off later.
    waiting = [a for started, a in ledger.long_polls if started < exited["signalled"] - 1]
    assert waiting
    assert all(answer.status == 200 and answer.body == [] for answer in waiting), waiting

    jobs, executions = stored(db)
    assert ledger.jobs <= jobs.keys()
    assert ledger.executions <= executions
    assert {jobs[job_id] for job_id in ledger.acked} == {"completed"}

    # The same file serves again: what was acknowledged reads back, new writes work.
    again = await anyio.to_thread.run_sync(lambda: server_process(db))
    async with api(again.url, key) as client:
        for job_id in sorted(ledger.jobs)[:20] + sorted(ledger.acked)[:20]:
            response = await client.get(f"/infra/jobs/{job_id}")
            assert response.status_code == 200, response.text
        for execution_id in sorted(ledger.executions)[:20]:
            response = await client.get(f"/infra/workflows/executions/{execution_id}")
            assert response.status_code == 200, response.text
        response = await client.post(
            "/infra/jobs", json={"trigger": {"type": "pull", "queue": "work"}}
        )
        assert response.status_code == 202, response.text
    assert await anyio.to_thread.run_sync(again.terminate) == 0


async def test_a_request_that_outlasts_the_grace_period_is_answered_503(
    tmp_path: Path, server_process: StartServer
) -> None:
    """A client still sending its body when the grace period ends gets a JSON 503."""
    server, key, half_body = await _server_and_half_a_body(tmp_path, server_process)
    port = int(server.url.rsplit(":", 1)[1])
    async with await anyio.connect_tcp("127.0.0.1", port) as slow, api(server.url, key) as other:
        await slow.send(half_body)  # and nothing more
        # Answered after the slow request's head arrived: the server is working on it.
        assert (await other.get("/livez")).status_code == 200
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        answer = b""
        with anyio.fail_after(60):
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                answer += await slow.receive()
        status = await anyio.to_thread.run_sync(server.proc.wait, 60)
        took = time.monotonic() - signalled
    head_text, _, body = answer.partition(b"\r\n\r\n")
    assert head_text.startswith(b"HTTP/1.1 503"), answer
    assert b"retry-after: 1" in head_text.lower(), answer
    assert msgspec.json.decode(body) == {"code": "unavailable", "message": "shutting down"}
    assert status == 0
    assert took < EXIT_WITHIN_SECONDS
    log = server.log_path.read_text()
    assert "Traceback" not in log, log


async def test_a_client_that_leaves_mid_body_costs_no_error(
    tmp_path: Path, server_process: StartServer
) -> None:
    """A client closing its connection halfway through a body is no server error."""
    server, key, half_body = await _server_and_half_a_body(tmp_path, server_process)
    port = int(server.url.rsplit(":", 1)[1])
    async with api(server.url, key) as other:
        for _ in range(3):
            async with await anyio.connect_tcp("127.0.0.1", port) as leaving:
                await leaving.send(half_body)
                assert (await other.get("/livez")).status_code == 200  # the head has arrived
        created = await other.post("/infra/jobs", json={"trigger": {"type": "pull", "queue": "q"}})
        assert created.status_code == 202, created.text
        listed = await other.get("/infra/jobs")
        assert [job["id"] for job in listed.json()["jobs"]] == [created.json()["id"]]
    assert await anyio.to_thread.run_sync(server.terminate) == 0
    log = server.log_path.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


async def _server_and_half_a_body(
    tmp_path: Path, server_process: StartServer
) -> tuple[ServerProcess, str, bytes]:
    """A running server, a key, and the first part of a job creation announcing 100 bytes."""
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "slow", list(ALL_SCOPES)).key
    server = await anyio.to_thread.run_sync(lambda: server_process(db))
    head = (
        "POST /infra/jobs HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {key}\r\ncontent-length: 100\r\n\r\n"
    )
    return server, key, head.encode() + b'{"trigger": '
