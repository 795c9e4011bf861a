"""Push delivery end to end: real handlers over HTTP, signatures, retries, callbacks, queues."""

import itertools
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flowyard.jobs.events import Callback, Due
from flowyard.signing import verify
from tests.conftest import Handler, Service, serve_app
from tests.fake_clock import FakeClock
from tests.job_helpers import create_job, get_job, list_runs, ms, wait_job
from tests.raw_http import exchange, request_head


async def signing_secret(service: Service) -> str:
    response = await service.client.get("/infra/jobs/signing-secret")
    assert response.status_code == 200, response.text
    secret: str = response.json()["signing_secret"]
    assert secret
    return secret


async def wait_timer(service: Service, key: tuple[object, ...]) -> int:
    """Poll until the engine has armed the timer ``key``; its due time."""
    timers = service.supervisor.jobs.timers
    with anyio.fail_after(5):
        while (due := timers.due(key)) is None:
            await anyio.sleep(0.005)
    return due


def push(url: str, **fields: Any) -> dict[str, Any]:
    return {"trigger": {"type": "immediate"}, "handler": url, **fields}


@dataclass
class Tracker:
    """A handler that answers after ``delay`` and records overlap and arrival times."""

    delay: float
    url: str = ""
    in_flight: int = 0
    max_in_flight: int = 0
    arrivals: list[float] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)

    async def endpoint(self, request: Request) -> JSONResponse:
        self.arrivals.append(time.monotonic())
        self.bodies.append(await request.json())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return JSONResponse({"seen": len(self.arrivals)})


@pytest.fixture
async def tracker() -> AsyncIterator[Tracker]:
    recorder = Tracker(delay=0.2)
    app = Starlette(routes=[Route("/{path:path}", recorder.endpoint, methods=["POST"])])
    async with serve_app(app) as url:
        recorder.url = url
        yield recorder


# ------------------------------------------------------------------------ delivery


async def test_handler_receives_payload_headers_and_signature(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/sig", (200, {"ok": True}, 0))
    payload = {"a": 1, "b": [True, None, "x"], "c": {"d": 1.5}}
    job = await create_job(service, **push(url, payload=payload))
    [delivery] = await handler.wait_for("/sig")
    assert delivery.json() == payload
    headers = delivery.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-flowyard-job-id"] == job["id"]
    assert headers["x-flowyard-attempt"] == "1"
    done = await wait_job(service, job["id"], "completed")
    [run] = await list_runs(service, job["id"])
    assert headers["x-flowyard-run-id"] == run["id"]
    assert headers["x-flowyard-callback-url"].startswith(
        f"{service.url}/infra/jobs/{job['id']}/runs/{run['id']}/callback?sig="
    )
    header = headers["x-flowyard-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header), header
    assert abs(int(header.split(",")[0][2:]) - time.time()) < 60
    secret = await signing_secret(service)
    assert verify(secret, delivery.body, header)
    assert not verify(secret + "x", delivery.body, header)
    assert not verify(secret, delivery.body + b" ", header)
    assert done["attempt"] == 1


async def test_rotated_secret_signs_later_deliveries(service: Service, handler: Handler) -> None:
    old = await signing_secret(service)
    rotated = await service.client.post("/infra/jobs/signing-secret/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["signing_secret"]
    assert new != old
    assert await signing_secret(service) == new
    url = handler.script("/rot", (200, {}, 0))
    await create_job(service, **push(url, payload=1))
    [delivery] = await handler.wait_for("/rot")
    header = delivery.headers["x-flowyard-signature"]
    assert verify(new, delivery.body, header)
    assert not verify(old, delivery.body, header)


async def test_2xx_json_body_becomes_result(service: Service, handler: Handler) -> None:
    result = {"answer": [1, 2, {"three": 3}], "ok": True}
    url = handler.script("/res", (201, result, 0))
    job = await create_job(service, **push(url))
    done = await wait_job(service, job["id"], "completed")
    assert done["result"] == result
    assert done["error"] is None
    assert done["completed_at"] is not None
    [run] = await list_runs(service, job["id"])
    assert run["status"] == "completed"
    assert run["handler_status"] == 201


async def test_handler_500_is_retried_with_backoff_then_failed(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/boom", (500, {"error": "nope"}, 0))
    job = await create_job(service, **push(url, max_attempts=3, payload={"n": 1}))
    deliveries = await handler.wait_for("/boom", 3)
    failed = await wait_job(service, job["id"], "failed")
    assert failed["attempt"] == 3
    assert "500" in failed["error"]
    assert failed["result"] is None
    assert [d.headers["x-flowyard-attempt"] for d in deliveries] == ["1", "2", "3"]
    assert {d.headers["x-flowyard-job-id"] for d in deliveries} == {job["id"]}
    assert all(d.json() == {"n": 1} for d in deliveries)
    runs = await list_runs(service, job["id"])
    assert [r["attempt"] for r in runs] == [3, 2, 1]
    assert all(r["status"] == "failed" for r in runs)
    assert all(r["handler_status"] == 500 for r in runs)
    assert all("500" in r["error"] for r in runs)
    assert len({r["id"] for r in runs}) == 3
    assert [d.headers["x-flowyard-run-id"] for d in deliveries] == [r["id"] for r in runs[::-1]]
    # Exponential backoff with base 0.05 s: after attempt n the wait is drawn from
    # [0.025 * 2^(n-1), 0.05 * 2^(n-1)] seconds.
    oldest_first = runs[::-1]
    for n, (before, after) in enumerate(itertools.pairwise(oldest_first), 1):
        wait = ms(after["scheduled_at"]) - ms(before["completed_at"])
        assert 25 * 2 ** (n - 1) - 1 <= wait <= 50 * 2 ** (n - 1), (n, wait)
        assert ms(after["started_at"]) >= ms(after["scheduled_at"])
    assert len(handler.to("/boom")) == 3  # no fourth attempt


async def test_handler_recovering_completes_on_retry(service: Service, handler: Handler) -> None:
    url = handler.script("/flaky", (503, {}, 0), (200, {"second": True}, 0))
    job = await create_job(service, **push(url, max_attempts=3))
    done = await wait_job(service, job["id"], "completed")
    assert done["result"] == {"second": True}
    assert done["attempt"] == 2
    runs = await list_runs(service, job["id"])
    assert [(r["status"], r["handler_status"]) for r in runs] == [
        ("completed", 200),
        ("failed", 503),
    ]


async def test_handler_timeout_is_a_failed_attempt(service: Service, handler: Handler) -> None:
    url = handler.script("/slow", (200, {"late": True}, 3), (200, {"quick": True}, 0))
    job = await create_job(service, **push(url, timeout=1, max_attempts=2))
    done = await wait_job(service, job["id"], "completed")
    assert done["result"] == {"quick": True}
    assert done["attempt"] == 2
    second, first = await list_runs(service, job["id"])
    assert first["status"] == "failed"
    assert "timeout" in first["error"]
    assert first["handler_status"] is None
    assert 900 <= first["duration_ms"] < 2900
    assert second["status"] == "completed"


async def test_handler_timeout_on_last_attempt_fails_job(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/slower", (200, {}, 3))
    job = await create_job(service, **push(url, timeout=1, max_attempts=1))
    failed = await wait_job(service, job["id"], "failed")
    assert "timeout" in failed["error"]
    assert failed["result"] is None


async def test_connection_error_is_a_failed_attempt(service: Service) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/nobody"
    job = await create_job(service, **push(url, max_attempts=2))
    failed = await wait_job(service, job["id"], "failed")
    assert failed["attempt"] == 2
    runs = await list_runs(service, job["id"])
    assert len(runs) == 2
    assert all(r["status"] == "failed" and r["handler_status"] is None for r in runs)


# ------------------------------------------------------------------------ 202 + callback


async def test_202_then_callback_completes_the_job(service: Service, handler: Handler) -> None:
    url = handler.script("/later", (202, {"accepted": True}, 0))
    job = await create_job(service, **push(url))
    [delivery] = await handler.wait_for("/later")
    callback = delivery.headers["x-flowyard-callback-url"]
    base, sig = callback.split("?sig=")
    async with httpx.AsyncClient(timeout=10) as anonymous:  # no API key at all
        tampered_sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        tampered = await anonymous.post(
            f"{base}?sig={tampered_sig}", json={"status": "completed", "result": "forged"}
        )
        assert tampered.status_code == 404, tampered.text
        unsigned = await anonymous.post(base, json={"status": "completed", "result": "forged"})
        assert unsigned.status_code == 404, unsigned.text
        assert (await get_job(service, job["id"]))["status"] == "running"
        answer = await anonymous.post(
            callback, json={"status": "completed", "result": {"computed": 7}}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "completed"
        again = await anonymous.post(callback, json={"status": "completed", "result": 1})
        assert again.status_code == 409, again.text
    done = await get_job(service, job["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"computed": 7}
    [run] = await list_runs(service, job["id"])
    assert run["status"] == "completed"
    assert run["id"] == delivery.headers["x-flowyard-run-id"]


async def test_a_callback_without_its_signature_is_refused_before_its_body(
    service: Service, handler: Handler
) -> None:
    """The head alone is answered: a caller without the signature never gets a body read."""
    url = handler.script("/later-unsigned", (202, {}, 0))
    job = await create_job(service, **push(url))
    [delivery] = await handler.wait_for("/later-unsigned")
    base, sig = delivery.headers["x-flowyard-callback-url"].split("?sig=")
    target = base.removeprefix(service.url)
    bad_sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    for query in (f"?sig={bad_sig}", "?sig=", ""):
        head = request_head(
            "POST",
            target + query,
            "Content-Type: application/json",
            f"Content-Length: {1024 * 1024}",
        )
        with anyio.fail_after(5):  # the body is never sent: only an early answer comes back
            answer = await exchange(service.url, head)
        assert answer.status == 404, answer
        assert answer.json()["code"] == "not_found"
    assert (await get_job(service, job["id"]))["status"] == "running"


async def test_202_then_failed_callback_fails_the_attempt(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/later-fail", (202, {}, 0))
    job = await create_job(service, **push(url, max_attempts=1))
    [delivery] = await handler.wait_for("/later-fail")
    async with httpx.AsyncClient(timeout=10) as anonymous:
        answer = await anonymous.post(
            delivery.headers["x-flowyard-callback-url"],
            json={"status": "failed", "error": "could not do it"},
        )
    assert answer.status_code == 200, answer.text
    failed = await get_job(service, job["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == "could not do it"


async def test_202_without_callback_in_window_fails_the_attempt(
    service_with: Any, handler: Handler
) -> None:
    clock = FakeClock()
    async with service_with(callback_window_seconds=60, clock=clock) as service:
        url = handler.script("/silent", (202, {}, 0))
        job = await create_job(service, **push(url, max_attempts=2))
        for attempt in (1, 2):
            await handler.wait_for("/silent", attempt)
            waiting = await wait_job(service, job["id"], lambda j: j["status"] == "running")
            run_id = handler.to("/silent")[-1].headers["x-flowyard-run-id"]
            await wait_timer(service, Callback(job["id"], run_id))
            clock.advance(seconds=60)  # the window passes with no callback
            if attempt == 1:
                retrying = await wait_job(service, job["id"], "pending")
                clock.advance(ms=ms(retrying["run_at"]) - clock.now_ms())
        assert waiting["attempt"] == 2
        failed = await wait_job(service, job["id"], "failed")
        assert failed["attempt"] == 2
        assert "callback_timeout" in failed["error"]
        runs = await list_runs(service, job["id"])
        assert [r["status"] for r in runs] == ["failed", "failed"]
        assert all(r["handler_status"] == 202 for r in runs)
        assert all("callback_timeout" in r["error"] for r in runs)
        assert all(r["duration_ms"] >= 60_000 for r in runs)
        async with httpx.AsyncClient(timeout=10) as anonymous:
            late = await anonymous.post(
                handler.to("/silent")[0].headers["x-flowyard-callback-url"],
                json={"status": "completed", "result": 1},
            )
        assert late.status_code == 409, late.text
        assert (await get_job(service, job["id"]))["status"] == "failed"


# ------------------------------------------------------------------------ callback_url


async def test_callback_url_is_told_when_job_completes(service: Service, handler: Handler) -> None:
    url = handler.script("/work", (200, {"value": 9}, 0))
    notice_url = handler.script("/notice", (200, {}, 0))
    job = await create_job(service, **push(url, callback_url=notice_url))
    [notice] = await handler.wait_for("/notice")
    [run] = await list_runs(service, job["id"])
    assert notice.json() == {
        "job_id": job["id"],
        "run_id": run["id"],
        "status": "completed",
        "result": {"value": 9},
        "error": None,
        "attempt": 1,
    }
    secret = await signing_secret(service)
    assert verify(secret, notice.body, notice.headers["x-flowyard-signature"])
    assert len(handler.to("/work")) == 1


async def test_callback_url_is_told_when_job_fails(service: Service, handler: Handler) -> None:
    url = handler.script("/bad", (500, {}, 0))
    notice_url = handler.script("/bad-notice", (200, {}, 0))
    job = await create_job(service, **push(url, callback_url=notice_url, max_attempts=2))
    [notice] = await handler.wait_for("/bad-notice")
    body = notice.json()
    runs = await list_runs(service, job["id"])
    assert body["job_id"] == job["id"]
    assert body["run_id"] == runs[0]["id"]
    assert body["status"] == "failed"
    assert body["result"] is None
    assert "500" in body["error"]
    assert body["attempt"] == 2
    assert len(handler.to("/bad")) == 2  # told once, at the end, not per attempt
    secret = await signing_secret(service)
    assert verify(secret, notice.body, notice.headers["x-flowyard-signature"])


# ------------------------------------------------------------------------ delayed


async def test_delayed_job_is_not_delivered_before_run_at(
    service_with: Any, handler: Handler
) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        url = handler.script("/delayed", (200, {}, 0))
        job = await create_job(
            service, **{**push(url), "trigger": {"type": "delayed", "delay_seconds": 90}}
        )
        run_at = ms(job["run_at"])
        assert run_at - ms(job["created_at"]) == 90_000
        assert job["status"] == "pending"
        await wait_timer(service, Due(job["id"]))
        clock.advance(ms=run_at - clock.now_ms() - 1)
        await anyio.wait_all_tasks_blocked()
        assert handler.to("/delayed") == []
        assert (await get_job(service, job["id"]))["status"] == "pending"
        clock.advance(ms=1)
        await handler.wait_for("/delayed", timeout=5)
        await wait_job(service, job["id"], "completed")
        [run] = await list_runs(service, job["id"])
        assert ms(run["scheduled_at"]) == run_at
        assert ms(run["started_at"]) == run_at


# ------------------------------------------------------------------------ push queues


def queued(url: str, queue: str, **fields: Any) -> dict[str, Any]:
    return {"trigger": {"type": "queue", "queue": queue}, "handler": url, **fields}


async def test_queue_concurrency_one_never_overlaps(service: Service, tracker: Tracker) -> None:
    put = await service.client.put("/infra/queues/serial", json={"concurrency": 1})
    assert put.status_code == 200, put.text
    assert put.json()["concurrency"] == 1
    jobs = [
        await create_job(service, **queued(f"{tracker.url}/s", "serial", payload=i))
        for i in range(4)
    ]
    for job in jobs:
        await wait_job(service, job["id"], "completed")
    assert tracker.max_in_flight == 1
    assert len(tracker.arrivals) == 4
    gaps = [b - a for a, b in zip(tracker.arrivals, tracker.arrivals[1:], strict=False)]
    assert all(gap >= tracker.delay - 0.01 for gap in gaps), gaps


async def test_queue_concurrency_two_allows_two(service: Service, tracker: Tracker) -> None:
    assert (
        await service.client.put("/infra/queues/pair", json={"concurrency": 2})
    ).status_code == 200
    jobs = [
        await create_job(service, **queued(f"{tracker.url}/p", "pair", payload=i)) for i in range(6)
    ]
    for job in jobs:
        await wait_job(service, job["id"], "completed")
    assert tracker.max_in_flight == 2


async def test_queue_rate_limit_spaces_deliveries(service: Service, tracker: Tracker) -> None:
    tracker.delay = 0
    put = await service.client.put("/infra/queues/rated", json={"rate_limit_per_second": 4})
    assert put.status_code == 200, put.text
    assert put.json()["rate_limit_per_second"] == 4
    jobs = [
        await create_job(service, **queued(f"{tracker.url}/r", "rated", payload=i))
        for i in range(8)
    ]
    for job in jobs:
        await wait_job(service, job["id"], "completed")
    arrivals = tracker.arrivals
    assert len(arrivals) == 8
    # A bucket of 4 tokens refilled at 4/s: k deliveries need at least (k - 4) / 4 s.
    for i in range(8):
        for j in range(i + 1, 8):
            needed = (j - i + 1 - 4) / 4
            # 80 ms of slack for scheduling jitter between the server and the handler.
            assert arrivals[j] - arrivals[i] >= needed - 0.08, (i, j, arrivals[j] - arrivals[i])
    assert arrivals[-1] - arrivals[0] >= 1.0 - 0.05


async def test_paused_push_queue_delivers_nothing_until_unpaused(
    service: Service, handler: Handler
) -> None:
    assert (
        await service.client.put("/infra/queues/held", json={"paused": True})
    ).status_code == 200
    url = handler.script("/held", (200, {"done": 1}, 0))
    jobs = [await create_job(service, **queued(url, "held", payload=i)) for i in range(2)]
    # A job on another queue goes through, so the dispatcher is alive while "held" waits.
    control = handler.script("/control", (200, {}, 0))
    await create_job(service, **queued(control, "open"))
    await handler.wait_for("/control")
    await anyio.sleep(0.3)  # a window in which nothing may arrive
    assert handler.to("/held") == []
    queues = {q["name"]: q for q in (await service.client.get("/infra/queues")).json()["queues"]}
    assert (queues["held"]["depth"], queues["held"]["running"]) == (2, 0)
    assert queues["held"]["paused"] is True
    for job in jobs:
        assert (await get_job(service, job["id"]))["status"] == "pending"
    resumed = await service.client.put("/infra/queues/held", json={"paused": False})
    assert resumed.status_code == 200
    await handler.wait_for("/held", 2)
    for job in jobs:
        assert (await wait_job(service, job["id"], "completed"))["result"] == {"done": 1}


# ------------------------------------------------------------------------ handler network


async def test_public_handler_network_blocks_loopback(service_with: Any, handler: Handler) -> None:
    async with service_with(handler_network="public") as service:
        url = handler.script("/private", (200, {}, 0))
        job = await create_job(service, **push(url, max_attempts=1))
        failed = await wait_job(service, job["id"], "failed")
        assert "handler_blocked" in failed["error"]
        [run] = await list_runs(service, job["id"])
        assert run["status"] == "failed"
        assert "handler_blocked" in run["error"]
        assert handler.received == []


async def test_callback_arriving_before_the_202_answer_is_accepted(service: Service) -> None:
    """A handler whose work finishes at once may call back before its 202 reaches Flowyard."""
    answers: list[int] = []

    async def eager(request: Request) -> JSONResponse:
        callback = request.headers["x-flowyard-callback-url"]
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(callback, json={"status": "completed", "result": "fast"})
        answers.append(answer.status_code)
        return JSONResponse({}, status_code=202)

    app = Starlette(routes=[Route("/eager", eager, methods=["POST"])])
    async with serve_app(app) as url:
        job = await create_job(service, **push(f"{url}/eager", max_attempts=1))
        with anyio.fail_after(10):
            while not answers:
                await anyio.sleep(0.01)
        done = await get_job(service, job["id"])
    assert answers == [200]
    assert done["status"] == "completed"
    assert done["result"] == "fast"
    [run] = await list_runs(service, job["id"])
    assert run["status"] == "completed"
