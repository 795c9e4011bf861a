"""Pull workers against the real server: limits, heartbeats, failures, graceful stop."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flowyard.client import AsyncClient, Client, Unauthorized
from flowyard.client.models import ClaimedJob, Job
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from flowyard.worker import PermanentError, Worker
from tests.conftest import ServerProcess, Service
from tests.sdk_support import FaultyTransport, api_error

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def client(service: Service) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(service.url, service.key) as api:
        yield api


def pull(queue: str, payload: Any = None, **fields: Any) -> dict[str, Any]:
    return {"trigger": {"type": "pull", "queue": queue}, "payload": payload, **fields}


async def create(client: AsyncClient, queue: str, count: int, **fields: Any) -> list[Job]:
    batch = [pull(queue, {"i": i}, **fields) for i in range(count)]
    return await client.jobs.create_batch(batch)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """The worker runs for the block; leaving it stops the worker and waits for the drain."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.arun)
        try:
            yield worker
        finally:
            worker.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def statuses(client: AsyncClient, queue: str) -> dict[str, str]:
    return {job.id: job.status async for job in client.jobs.iter(queue=queue)}


async def all_in(client: AsyncClient, queue: str, status: str, count: int) -> None:
    async def check() -> bool:
        found = await statuses(client, queue)
        return len(found) == count and set(found.values()) == {status}

    await eventually(check)


class Gauge:
    """Counts handler calls running at once (from any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.calls = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


async def test_concurrency_limit_is_honoured(client: AsyncClient) -> None:
    await create(client, "limited", 12)
    worker = Worker(client, concurrency=3, wait_seconds=0.2)
    gauge = Gauge()

    @worker.handler("limited")
    async def work(job: ClaimedJob) -> Any:
        with gauge:
            await anyio.sleep(0.1)
        return {"twice": job.payload["i"] * 2}

    async with running(worker):
        await all_in(client, "limited", "completed", 12)
    assert gauge.peak == 3 and gauge.calls == 12
    results = sorted([job.result["twice"] async for job in client.jobs.iter(queue="limited")])
    assert results == [i * 2 for i in range(12)]
    assert worker.held == 0


class Recording(httpx.AsyncHTTPTransport):
    """A real transport that keeps the path and JSON body of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.sent.append((request.url.path, body))
        return await super().handle_async_request(request)


async def test_a_busy_worker_sends_each_ack_with_its_next_claim(service: Service) -> None:
    transport = Recording()
    async with AsyncClient(service.url, service.key, transport=transport) as client:
        jobs = await create(client, "busy", 8)
        worker = Worker(client, concurrency=1, wait_seconds=0.2)

        @worker.handler("busy")
        async def work(job: ClaimedJob) -> Any:
            await anyio.sleep(0.01)
            return job.payload["i"]

        async with running(worker):
            await all_in(client, "busy", "completed", 8)
        assert sorted([job.result async for job in client.jobs.iter(queue="busy")]) == list(
            range(8)
        )
    worker_calls = [(path, body) for path, body in transport.sent if path.endswith(
        ("/claim", "/ack", "/heartbeat", "/exchange"))]  # fmt: skip
    assert {path for path, _ in worker_calls} == {"/infra/jobs/exchange"}
    acked = [ack["job_id"] for _, body in worker_calls for ack in body["acks"] if "claim" in body]
    assert sorted(acked) == sorted(job.id for job in jobs)  # every ack rode with a claim
    assert len(worker_calls) < 2 * len(jobs)


async def test_an_ack_never_waits_for_a_long_poll_in_flight(client: AsyncClient) -> None:
    [job] = await create(client, "prompt", 1)
    worker = Worker(client, concurrency=2, wait_seconds=4)  # a free slot: the loop long-polls
    worker.add_handler("prompt", lambda claimed: "done")
    began = time.monotonic()
    async with running(worker):
        await all_in(client, "prompt", "completed", 1)
        acked_after = time.monotonic() - began
    assert acked_after < 2.5, acked_after  # sent on its own, not with the claim after the poll
    assert (await client.jobs.get(job.id)).result == "done"


async def test_queue_limit_within_the_global_one_with_sync_handlers(client: AsyncClient) -> None:
    await create(client, "one-at-a-time", 4)
    await create(client, "wide", 8)
    worker = Worker(client, concurrency=4, wait_seconds=0.2)
    narrow, wide, both = Gauge(), Gauge(), Gauge()
    threads: set[str] = set()

    @worker.handler("one-at-a-time", concurrency=1)
    def serial(job: ClaimedJob) -> Any:
        threads.add(threading.current_thread().name)
        with narrow, both:
            time.sleep(0.1)
        return job.payload

    @worker.handler("wide")
    def parallel(job: ClaimedJob) -> Any:
        with wide, both:
            time.sleep(0.1)
        return job.payload

    async with running(worker):
        await all_in(client, "one-at-a-time", "completed", 4)
        await all_in(client, "wide", "completed", 8)
    assert narrow.peak == 1 and narrow.calls == 4
    assert both.peak <= 4 and wide.calls == 8
    assert threading.main_thread().name not in threads


async def test_heartbeats_keep_a_long_job(client: AsyncClient) -> None:
    [job] = await create(client, "long", 1)
    worker = Worker(client, visibility_timeout=2, wait_seconds=0.2)

    @worker.handler("long")
    def slow(claimed: ClaimedJob) -> Any:
        time.sleep(5)  # more than two leases
        return "finally"

    async with running(worker):
        await all_in(client, "long", "completed", 1)
    done = await client.jobs.get(job.id)
    assert (done.status, done.attempt, done.result) == ("completed", 1, "finally")
    assert len((await client.jobs.runs(job.id)).items) == 1


async def test_an_exception_is_a_failed_attempt_that_is_retried(client: AsyncClient) -> None:
    [job] = await create(client, "flaky", 1, max_attempts=3)
    worker = Worker(client, wait_seconds=0.2)

    @worker.handler("flaky")
    async def flaky(claimed: ClaimedJob) -> Any:
        if claimed.attempt == 1:
            raise ValueError("boom")
        return {"attempt": claimed.attempt}

    async with running(worker):
        await all_in(client, "flaky", "completed", 1)
    done = await client.jobs.get(job.id)
    assert (done.attempt, done.result) == (2, {"attempt": 2})
    runs = (await client.jobs.runs(job.id)).items
    assert [(run.attempt, run.status, run.error) for run in runs] == [
        (2, "completed", None),
        (1, "failed", "boom"),
    ]


async def test_permanent_error_fails_the_job_at_once(client: AsyncClient) -> None:
    [job] = await create(client, "doomed", 1, max_attempts=5)
    [odd] = await create(client, "odd", 1, max_attempts=1)
    worker = Worker(client, wait_seconds=0.2)

    @worker.handler("doomed")
    def doomed(claimed: ClaimedJob) -> Any:
        raise PermanentError("card declined")

    @worker.handler("odd")
    async def not_json(claimed: ClaimedJob) -> Any:
        return object()  # not JSON: a failed attempt like any exception

    async with running(worker):
        await all_in(client, "doomed", "failed", 1)
        await all_in(client, "odd", "failed", 1)
    failed = await client.jobs.get(job.id)
    assert (failed.attempt, failed.error) == (1, "card declined")
    assert len((await client.jobs.runs(job.id)).items) == 1
    assert "Encoding objects of type object is unsupported" in (
        (await client.jobs.get(odd.id)).error or ""
    )


async def test_a_refused_key_stops_the_worker(service: Service) -> None:
    worker = Worker(service.url, "sk_live_" + "0" * 32, wait_seconds=0.2)
    worker.add_handler("q", lambda job: None)
    with anyio.fail_after(10), pytest.raises(Unauthorized):
        await worker.arun()


async def test_a_stop_waits_for_the_claim_in_flight(client: AsyncClient, service: Service) -> None:
    """Jobs a long poll receives after the stop are still run and acked, not left leased."""
    worker = Worker(client, wait_seconds=3)
    worker.add_handler("late", lambda job: "handled")
    engine_queue = service.supervisor.jobs.queue(service.project_id, "late")
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.arun)
        with anyio.fail_after(5):
            while not engine_queue._waiters:  # the claim is parked on the server
                await anyio.sleep(0.005)
        worker.stop()
        [job] = await create(client, "late", 1)
    done = await client.jobs.get(job.id)
    assert (done.status, done.result, done.attempt) == ("completed", "handled", 1)


async def test_shutdown_timeout_cancels_what_is_still_running(client: AsyncClient) -> None:
    [job] = await create(client, "stuck", 1)
    worker = Worker(client, wait_seconds=0.2, shutdown_timeout=0.3)
    started = anyio.Event()

    @worker.handler("stuck")
    async def forever(claimed: ClaimedJob) -> Any:
        started.set()
        await anyio.sleep(60)

    with anyio.fail_after(10):
        async with running(worker):
            await started.wait()
    assert worker.forced
    assert (await client.jobs.get(job.id)).status == "running"  # its lease will run out


async def test_a_stop_before_the_run_returns_at_once(client: AsyncClient) -> None:
    worker = Worker(client)
    worker.add_handler("q", lambda job: None)
    worker.stop()
    with anyio.fail_after(5):
        await worker.arun()
    assert not worker.stopping  # ready to run again


def test_run_raises_what_stopped_it() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": "unauthorized", "message": "invalid key"})

    client = AsyncClient("http://flowyard.test", "k", transport=httpx.MockTransport(refuse))
    worker = Worker(client)
    worker.add_handler("q", lambda job: None)
    with pytest.raises(Unauthorized, match="invalid key"):
        worker.run(handle_signals=False)


async def test_transient_failures_are_retried(service: Service) -> None:
    faults: dict[str, list[httpx.Response | Exception]] = {
        "/exchange": [api_error(500, "internal_error"), httpx.ReadError("connection reset")],
        "/heartbeat": [api_error(500, "internal_error")],
    }
    transport = FaultyTransport(faults)
    async with AsyncClient(service.url, service.key, transport=transport) as client:
        [job] = await create(client, "rough", 1)
        worker = Worker(client, visibility_timeout=3, wait_seconds=0.2)

        @worker.handler("rough")
        async def slow(claimed: ClaimedJob) -> Any:
            await anyio.sleep(1.5)  # one heartbeat (at 1 s) fails, the lease holds
            return "made it"

        async with running(worker):
            await all_in(client, "rough", "completed", 1)
        done = await client.jobs.get(job.id)
    assert (done.attempt, done.result) == (1, "made it")
    assert sorted(transport.injected) == ["/exchange", "/exchange", "/heartbeat"]


async def test_a_lost_lease_is_reported_and_the_job_runs_again(service: Service) -> None:
    transport = FaultyTransport({"/heartbeat": [api_error(409, "conflict", "lease lost")]})
    async with AsyncClient(service.url, service.key, transport=transport) as client:
        [job] = await create(client, "lossy", 1, max_attempts=3)
        worker = Worker(client, visibility_timeout=1, wait_seconds=0.2)
        first_done = anyio.Event()

        @worker.handler("lossy")
        async def work(claimed: ClaimedJob) -> Any:
            if claimed.attempt == 1:
                await anyio.sleep(1.6)  # no more heartbeats: the lease runs out meanwhile
                first_done.set()
            return claimed.attempt

        async with running(worker):
            await all_in(client, "lossy", "completed", 1)
            with anyio.fail_after(5):
                await first_done.wait()  # its ack is refused (409) and dropped
        done = await client.jobs.get(job.id)
        runs = (await client.jobs.runs(job.id)).items
    assert (done.attempt, done.result) == (2, 2)
    assert [run.status for run in runs] == ["completed", "failed"]


async def test_a_result_too_large_fails_the_attempt(client: AsyncClient) -> None:
    [job] = await create(client, "huge", 1, max_attempts=1)
    worker = Worker(client, wait_seconds=0.2)
    worker.add_handler("huge", lambda claimed: "x" * (300 * 1024))
    async with running(worker):
        await all_in(client, "huge", "failed", 1)
    assert ((await client.jobs.get(job.id)).error or "").startswith("result too large")


def test_run_handles_sigterm_then_a_second_signal(
    server_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """In this process: the first signal drains (exit status 0), a second one cancels (1)."""
    db = str(tmp_path / "signals.db")
    key = create_key_sync(db, "signals", list(ALL_SCOPES)).key
    server = server_process(db)
    with Client(server.url, key) as client:
        drained = client.jobs.create(pull("sig-drain"))
        stuck = client.jobs.create(pull("sig-stuck"))

        def send_when(started: threading.Event, *signums: signal.Signals) -> threading.Thread:
            def send() -> None:
                assert started.wait(20)
                for signum in signums:
                    os.kill(os.getpid(), signum)
                    time.sleep(0.3)

            thread = threading.Thread(target=send)
            thread.start()
            return thread

        started = threading.Event()
        worker = Worker(server.url, key, wait_seconds=0.2)

        @worker.handler("sig-drain")
        def drain(job: ClaimedJob) -> Any:
            started.set()
            time.sleep(0.5)
            return "drained"

        sender = send_when(started, signal.SIGTERM)
        assert worker.run() == 0
        sender.join()
        assert client.jobs.get(drained.id).result == "drained"

        started = threading.Event()
        forced = Worker(server.url, key, wait_seconds=0.2)

        @forced.handler("sig-stuck")
        async def stuck_forever(job: ClaimedJob) -> Any:
            started.set()
            await anyio.sleep(60)

        sender = send_when(started, signal.SIGINT, signal.SIGINT)
        began = time.monotonic()
        assert forced.run() == 1
        sender.join()
        assert time.monotonic() - began < 10
        assert client.jobs.get(stuck.id).status == "running"  # left to its lease


def test_registration_rules() -> None:
    worker = Worker("http://127.0.0.1:9", "k")
    worker.add_handler("q", lambda job: None)
    with pytest.raises(ValueError, match="already"):
        worker.add_handler("q", lambda job: None)
    with pytest.raises(ValueError, match="concurrency"):
        Worker(concurrency=0)
    with pytest.raises(RuntimeError, match="no handlers"):
        anyio.run(Worker("http://127.0.0.1:9").arun)


async def test_sync_client_settings_and_stop_from_a_handler_thread(service: Service) -> None:
    with Client(service.url, service.key) as sync_client:
        worker = Worker(sync_client, wait_seconds=0.2)

    @worker.handler("stopper")
    def stop_from_thread(job: ClaimedJob) -> Any:
        worker.stop()  # from a worker thread: handed to the event loop
        return "stopped"

    async with AsyncClient(service.url, service.key) as client:
        [job] = await create(client, "stopper", 1)
        with anyio.fail_after(10):
            await worker.arun()  # returns once its own handler stopped it, job acked
        assert (await client.jobs.get(job.id)).result == "stopped"


async def test_sigterm_drains_held_jobs_and_exits_0(
    client: AsyncClient, service: Service, tmp_path: Path
) -> None:
    jobs = await create(client, "drain", 12)
    log_path = tmp_path / "worker.log"
    env = {**os.environ, "FLOWYARD_URL": service.url, "FLOWYARD_API_KEY": service.key}
    with log_path.open("wb") as log_file:
        process = await anyio.open_process(
            [sys.executable, "-m", "tests.worker_app"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        held: set[str] = set()

        async def holding() -> bool:
            nonlocal held
            found = await statuses(client, "drain")
            held = {job_id for job_id, status in found.items() if status == "running"}
            return len(held) == 4

        await eventually(holding)
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0, log_path.read_text()

    after = await statuses(client, "drain")
    assert "running" not in after.values()
    for job_id in held:  # every held job was finished and acked once
        job = await client.jobs.get(job_id)
        assert (job.status, job.attempt, job.result) == ("completed", 1, {"done": job.payload})
        assert len((await client.jobs.runs(job_id)).items) == 1
    assert "pending" in after.values()  # it stopped claiming

    rest = Worker(client, wait_seconds=0.2)
    rest.add_handler("drain", lambda job: {"done": job.payload})
    async with running(rest):
        await all_in(client, "drain", "completed", len(jobs))
    for job in jobs:  # nothing lost, nothing run twice
        assert len((await client.jobs.runs(job.id)).items) == 1
