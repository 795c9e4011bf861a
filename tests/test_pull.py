"""The pull protocol end to end: claim, long-poll, ack, leases, heartbeats, queues."""

import json
import time
from collections.abc import Callable
from typing import Any

import anyio

from flowyard.jobs.events import Lease
from tests.conftest import Service
from tests.fake_clock import FakeClock
from tests.job_helpers import ack, claim, create_job, get_job, list_runs, ms, wait_job


def pull(queue: str = "q", **fields: Any) -> dict[str, Any]:
    return {"trigger": {"type": "pull", "queue": queue}, **fields}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def wait_for_waiter(service: Service, queue: str) -> None:
    """Block until a long-poll claim is parked on ``queue`` (in-process peek, no sleep guess)."""
    engine_queue = service.supervisor.jobs.queue(service.project_id, queue)
    with anyio.fail_after(5):
        while not engine_queue._waiters:
            await anyio.sleep(0.005)


async def claim_while(
    service: Service, queue: str, then: Callable[[], None], wait_seconds: float = 5
) -> list[dict[str, Any]]:
    """Long-poll a claim on ``queue``; once it waits, call ``then`` (e.g. move the clock)."""
    claimed: list[dict[str, Any]] = []

    async def claiming() -> None:
        claimed.extend(await claim(service, queue, wait_seconds=wait_seconds))

    async with anyio.create_task_group() as tg:
        tg.start_soon(claiming)
        await wait_for_waiter(service, queue)
        then()
    return claimed


# ------------------------------------------------------------------------ claim


async def test_claim_on_empty_queue_returns_empty_list(service: Service) -> None:
    assert await claim(service, "empty") == []
    started = time.monotonic()
    assert await claim(service, "empty", wait_seconds=0.3) == []
    elapsed = time.monotonic() - started
    assert 0.28 <= elapsed < 5


async def test_claim_count_limits_how_many_are_claimed(service: Service) -> None:
    ids = [(await create_job(service, **pull("cnt", payload=i)))["id"] for i in range(3)]
    first = await claim(service, "cnt", count=2)
    assert len(first) == 2
    rest = await claim(service, "cnt", count=5)
    assert len(rest) == 1
    assert sorted(j["id"] for j in first + rest) == sorted(ids)
    assert all(j["status"] == "running" for j in first + rest)
    assert await claim(service, "cnt", count=5) == []


async def test_claim_order_is_priority_then_oldest(service: Service) -> None:
    order = [("a", 5), ("b", 1), ("c", 5), ("d", 10), ("e", 1)]
    ids = {}
    for name, priority in order:
        ids[name] = (await create_job(service, **pull("prio", name=name, priority=priority)))["id"]
    claimed = await claim(service, "prio", count=5)
    assert [j["id"] for j in claimed] == [ids[n] for n in ("b", "e", "a", "c", "d")]
    assert [j["priority"] for j in claimed] == [1, 1, 5, 5, 10]


async def test_claim_only_sees_its_own_queue(service: Service) -> None:
    await create_job(service, **pull("left"))
    assert await claim(service, "right") == []
    assert len(await claim(service, "left")) == 1


async def test_long_poll_receives_job_created_while_waiting(service: Service) -> None:
    got: list[list[dict[str, Any]]] = []
    elapsed: list[float] = []

    async def worker() -> None:
        started = time.monotonic()
        got.append(await claim(service, "lp", wait_seconds=10))
        elapsed.append(time.monotonic() - started)

    with anyio.fail_after(8):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            await wait_for_waiter(service, "lp")
            assert got == []  # it is really waiting
            created_at = time.monotonic()
            job = await create_job(service, **pull("lp", payload={"hello": "worker"}))
    [[claimed]] = got
    assert claimed["id"] == job["id"]
    assert claimed["payload"] == {"hello": "worker"}
    assert claimed["status"] == "running"
    # It answered as soon as the job existed, far short of its 10 s wait.
    assert time.monotonic() - created_at < 2
    assert elapsed[0] < 5


async def test_claim_returns_lease_and_token(service: Service) -> None:
    job = await create_job(service, **pull("lease", payload=[1, 2]))
    before = now_ms()
    [claimed] = await claim(service, "lease", visibility_timeout=60)
    after = now_ms()
    assert claimed["id"] == job["id"]
    assert claimed["status"] == "running"
    assert claimed["attempt"] == 1
    assert isinstance(claimed["claim_token"], str) and len(claimed["claim_token"]) >= 16
    until = ms(claimed["claimed_until"])
    assert before + 60_000 - 5 <= until <= after + 60_000 + 5
    assert before - 5 <= ms(claimed["last_run_at"]) <= after + 5
    stored = await get_job(service, job["id"])
    assert stored["status"] == "running"
    assert stored["claimed_until"] == claimed["claimed_until"]
    [run] = await list_runs(service, job["id"])
    assert run["status"] == "running" and run["attempt"] == 1


async def test_two_claims_get_different_tokens(service: Service) -> None:
    await create_job(service, **pull("tok"))
    await create_job(service, **pull("tok"))
    [one] = await claim(service, "tok")
    [two] = await claim(service, "tok")
    assert one["id"] != two["id"]
    assert one["claim_token"] != two["claim_token"]


# ------------------------------------------------------------------------ ack


async def test_ack_completed_stores_result(service: Service) -> None:
    job = await create_job(service, **pull("done"))
    [claimed] = await claim(service, "done")
    result = {"answer": 42, "items": [1, "two", None], "nested": {"ok": True}}
    response = await ack(service, claimed, status="completed", result=result)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["result"] == result
    assert body["error"] is None
    assert body["claimed_until"] is None
    assert body["completed_at"] is not None
    stored = await get_job(service, job["id"])
    assert stored["status"] == "completed"
    assert stored["result"] == result
    [run] = await list_runs(service, job["id"])
    assert run["status"] == "completed"
    assert run["error"] is None
    assert run["duration_ms"] == ms(run["completed_at"]) - ms(run["started_at"])
    assert await claim(service, "done") == []


async def test_ack_failed_with_retries_left_requeues_after_backoff(service_with: Any) -> None:
    # Base 1 s, exponential, attempt 1: the delay is drawn from [0.5 s, 1 s].
    clock = FakeClock()
    async with service_with(retry_base_seconds=1, clock=clock) as service:
        job = await create_job(service, **pull("retry", max_attempts=3))
        [claimed] = await claim(service, "retry")
        response = await ack(service, claimed, status="failed", error="boom")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "pending"
        assert body["attempt"] == 1
        assert body["error"] == "boom"
        assert body["completed_at"] is None
        [run] = await list_runs(service, job["id"])
        assert run["status"] == "failed" and run["error"] == "boom"
        delay = ms(body["run_at"]) - ms(run["completed_at"])
        assert 500 <= delay <= 1000
        # Not claimable before run_at...
        clock.advance(ms=delay - 1)
        assert await claim(service, "retry") == []
        # ...and claimable again once it is due (the long poll wakes when the timer fires).
        [again] = await claim_while(service, "retry", lambda: clock.advance(ms=1))
        assert again["id"] == job["id"]
        assert again["attempt"] == 2
        assert ms(again["last_run_at"]) >= ms(body["run_at"])
        assert again["claim_token"] != claimed["claim_token"]


async def test_ack_failed_not_retryable_fails_at_once(service: Service) -> None:
    job = await create_job(service, **pull("fatal", max_attempts=5))
    [claimed] = await claim(service, "fatal")
    response = await ack(service, claimed, status="failed", error="fatal", retryable=False)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["attempt"] == 1
    assert body["error"] == "fatal"
    assert body["completed_at"] is not None
    assert (await get_job(service, job["id"]))["status"] == "failed"
    assert await claim(service, "fatal", wait_seconds=0.2) == []


async def test_ack_failed_on_last_attempt_fails(service: Service) -> None:
    job = await create_job(service, **pull("last", max_attempts=2))
    [first] = await claim(service, "last")
    assert (await ack(service, first, status="failed", error="e1")).json()["status"] == "pending"
    [second] = await claim(service, "last", wait_seconds=5)
    response = await ack(service, second, status="failed", error="e2")
    assert response.json()["status"] == "failed"
    assert response.json()["attempt"] == 2
    assert response.json()["error"] == "e2"
    assert [r["error"] for r in await list_runs(service, job["id"])] == ["e2", "e1"]


async def test_ack_error_object_is_stored_as_json_text(service: Service) -> None:
    job = await create_job(service, **pull("errobj"))
    [claimed] = await claim(service, "errobj")
    error = {"code": "E42", "detail": [1, "x"], "nested": {"a": None}}
    response = await ack(service, claimed, status="failed", error=error, retryable=False)
    assert response.status_code == 200, response.text
    text = response.json()["error"]
    assert isinstance(text, str)
    assert json.loads(text) == error
    assert text == '{"code":"E42","detail":[1,"x"],"nested":{"a":null}}'
    [run] = await list_runs(service, job["id"])
    assert run["error"] == text


async def test_ack_with_stale_claim_token_is_409(service: Service) -> None:
    job = await create_job(service, **pull("stale", max_attempts=3))
    [first] = await claim(service, "stale")
    assert (await ack(service, first, status="failed", error="x")).status_code == 200
    [second] = await claim(service, "stale", wait_seconds=5)
    assert second["claim_token"] != first["claim_token"]
    stale = await ack(service, first, status="completed", result={"from": "stale"})
    assert stale.status_code == 409, stale.text
    assert stale.json()["code"] == "conflict"
    still = await get_job(service, job["id"])
    assert still["status"] == "running" and still["result"] is None
    fresh = await ack(service, second, status="completed", result={"from": "fresh"})
    assert fresh.status_code == 200
    assert fresh.json()["result"] == {"from": "fresh"}


async def test_ack_with_wrong_claim_token_is_409(service: Service) -> None:
    job = await create_job(service, **pull("wrong"))
    [claimed] = await claim(service, "wrong")
    wrong = await ack(service, claimed, status="completed", claim_token="not-the-token")
    assert wrong.status_code == 409, wrong.text
    assert wrong.json()["code"] == "conflict"
    assert (await get_job(service, job["id"]))["status"] == "running"
    assert (await ack(service, claimed, status="completed")).status_code == 200


async def test_ack_of_job_that_is_not_running_is_409(service: Service) -> None:
    job = await create_job(service, **pull("idle"))
    never_claimed = await ack(service, job, status="completed", claim_token="anything")
    assert never_claimed.status_code == 409, never_claimed.text
    assert never_claimed.json()["code"] == "conflict"
    assert (await get_job(service, job["id"]))["status"] == "pending"

    [claimed] = await claim(service, "idle")
    done = await ack(service, claimed, status="completed", result=1)
    assert done.status_code == 200
    again = await ack(service, claimed, status="failed", error="late")
    assert again.status_code == 409, again.text
    stored = await get_job(service, job["id"])
    assert stored["status"] == "completed" and stored["result"] == 1 and stored["error"] is None


async def test_ack_of_unknown_job_is_404(service: Service) -> None:
    response = await ack(
        service, {"id": "job_01J00000000000000000000000"}, status="completed", claim_token="t"
    )
    assert response.status_code == 404, response.text


# ------------------------------------------------------------------------ leases


async def test_expired_lease_requeues_and_counts_as_failed_attempt(service_with: Any) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        job = await create_job(service, **pull("expire", max_attempts=2))
        [first] = await claim(service, "expire", visibility_timeout=1)
        # Nobody acks: the lease runs out and the job comes back for another worker.
        clock.advance(seconds=1)
        requeued = await wait_job(service, job["id"], "pending")
        assert requeued["error"].startswith("lease_expired")
        [second] = await claim_while(service, "expire", lambda: clock.advance(seconds=1))
        assert second["id"] == job["id"]
        assert second["attempt"] == 2
        assert ms(second["last_run_at"]) >= ms(first["claimed_until"])
        late = await ack(service, first, status="completed")
        assert late.status_code == 409, late.text
        clock.advance(seconds=30)  # the second lease (30 s by default) runs out too
        failed = await wait_job(service, job["id"], "failed")
        assert failed["attempt"] == 2
        assert failed["error"].startswith("lease_expired")
        runs = await list_runs(service, job["id"])
        assert [r["attempt"] for r in runs] == [2, 1]
        assert all(r["status"] == "failed" for r in runs)
        assert all(r["error"].startswith("lease_expired") for r in runs)
        assert await claim(service, "expire") == []


async def test_heartbeat_extends_lease_and_job_is_not_requeued(service_with: Any) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        job = await create_job(service, **pull("hb"))
        [claimed] = await claim(service, "hb", visibility_timeout=1)
        original_until = ms(claimed["claimed_until"])
        response = await service.client.post(
            f"/infra/jobs/{job['id']}/heartbeat",
            json={"claim_token": claimed["claim_token"], "visibility_timeout": 30},
        )
        assert response.status_code == 200, response.text
        extended = response.json()
        assert ms(extended["claimed_until"]) == original_until + 29_000
        assert extended["status"] == "running"
        # Past the original lease: the heartbeat moved its one timer, nothing comes back.
        timers = service.supervisor.jobs.timers
        assert timers.due(Lease(job["id"], claimed["claim_token"])) == ms(extended["claimed_until"])
        clock.advance(seconds=1.5)
        await anyio.wait_all_tasks_blocked()
        assert await claim(service, "hb") == []
        stored = await get_job(service, job["id"])
        assert stored["status"] == "running"
        assert stored["attempt"] == 1
        assert stored["claimed_until"] == extended["claimed_until"]
        done = await ack(service, claimed, status="completed", result="ok")
        assert done.status_code == 200, done.text
        [run] = await list_runs(service, job["id"])
        assert run["status"] == "completed"
        assert timers.due(Lease(job["id"], claimed["claim_token"])) is None  # released


async def test_heartbeat_with_wrong_token_or_idle_job_is_409(service: Service) -> None:
    job = await create_job(service, **pull("hbx"))
    idle = await service.client.post(
        f"/infra/jobs/{job['id']}/heartbeat", json={"claim_token": "whatever"}
    )
    assert idle.status_code == 409, idle.text
    [claimed] = await claim(service, "hbx", visibility_timeout=60)
    wrong = await service.client.post(
        f"/infra/jobs/{job['id']}/heartbeat", json={"claim_token": "nope"}
    )
    assert wrong.status_code == 409, wrong.text
    assert (await get_job(service, job["id"]))["claimed_until"] == claimed["claimed_until"]


async def test_runs_are_listed_per_claim(service: Service) -> None:
    job = await create_job(service, **pull("runs", max_attempts=3))
    [first] = await claim(service, "runs")
    await ack(service, first, status="failed", error="first try")
    [second] = await claim(service, "runs", wait_seconds=5)
    await ack(service, second, status="completed", result={"n": 2})
    runs = await list_runs(service, job["id"])
    assert [r["attempt"] for r in runs] == [2, 1]
    assert [r["status"] for r in runs] == ["completed", "failed"]
    assert [r["error"] for r in runs] == [None, "first try"]
    assert all(r["job_id"] == job["id"] for r in runs)
    assert runs[0]["id"] != runs[1]["id"]
    assert all(r["id"].startswith("run_") for r in runs)
    for run in runs:
        assert ms(run["started_at"]) <= ms(run["completed_at"])
        assert run["duration_ms"] == ms(run["completed_at"]) - ms(run["started_at"])
    assert ms(runs[1]["completed_at"]) <= ms(runs[0]["started_at"])


# ------------------------------------------------------------------------ queues


async def test_paused_queue_gives_nothing_until_unpaused(service: Service) -> None:
    paused = await service.client.put("/infra/queues/pq", json={"paused": True})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    job = await create_job(service, **pull("pq"))
    assert await claim(service, "pq") == []
    assert await claim(service, "pq", wait_seconds=0.3) == []
    assert (await get_job(service, job["id"]))["status"] == "pending"

    got: list[list[dict[str, Any]]] = []

    async def worker() -> None:
        got.append(await claim(service, "pq", wait_seconds=10))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            await wait_for_waiter(service, "pq")
            resumed = await service.client.put("/infra/queues/pq", json={"paused": False})
            assert resumed.status_code == 200
            assert resumed.json()["paused"] is False
    assert [j["id"] for j in got[0]] == [job["id"]]


async def test_list_queues_shows_depth_running_and_paused(service: Service) -> None:
    for i in range(3):
        await create_job(service, **pull("alpha", payload=i))
    await claim(service, "alpha")
    assert (
        await service.client.put("/infra/queues/beta", json={"paused": True})
    ).status_code == 200
    response = await service.client.get("/infra/queues")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    queues = {q["name"]: q for q in body["queues"]}
    assert set(queues) == {"alpha", "beta"}
    alpha, beta = queues["alpha"], queues["beta"]
    assert (alpha["depth"], alpha["running"], alpha["paused"]) == (2, 1, False)
    assert alpha["concurrency"] is None and alpha["rate_limit_per_second"] is None
    assert isinstance(alpha["oldest_pending_age_seconds"], int | float)
    assert 0 <= alpha["oldest_pending_age_seconds"] < 60
    assert (beta["depth"], beta["running"], beta["paused"]) == (0, 0, True)
    assert beta["oldest_pending_age_seconds"] is None


async def test_queue_counts_follow_acks(service: Service) -> None:
    await create_job(service, **pull("cnt2"))
    [claimed] = await claim(service, "cnt2")

    async def alpha() -> dict[str, Any]:
        queues = (await service.client.get("/infra/queues")).json()["queues"]
        [found] = [q for q in queues if q["name"] == "cnt2"]
        return found

    assert ((await alpha())["depth"], (await alpha())["running"]) == (0, 1)
    await ack(service, claimed, status="completed")
    assert ((await alpha())["depth"], (await alpha())["running"]) == (0, 0)


async def test_disabled_job_is_not_claimable(service: Service) -> None:
    job = await create_job(service, **pull("off", enabled=False))
    assert job["enabled"] is False
    assert await claim(service, "off") == []
    assert await claim(service, "off", wait_seconds=0.2) == []
    assert (await get_job(service, job["id"]))["status"] == "pending"
    enabled = await service.client.patch(f"/infra/jobs/{job['id']}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    [claimed] = await claim(service, "off")
    assert claimed["id"] == job["id"]


async def test_heartbeats_of_a_long_job_keep_one_lease_timer(service_with: Any) -> None:
    """Every heartbeat re-arms the job's lease timer: the heap does not grow with them."""
    async with service_with(sync="normal") as service:
        engine = service.supervisor.jobs
        job = await create_job(service, **pull("long"))
        [claimed] = await claim(service, "long", visibility_timeout=600)
        before = engine.timers.heap_size
        for _ in range(10_000):
            live = engine.jobs[job["id"]]
            await engine.heartbeat(live, claimed["claim_token"], 600)
        assert engine.timers.heap_size <= max(64, before + 2)
        assert len(engine.timers) <= before + 1
        key = Lease(job["id"], claimed["claim_token"])
        assert engine.timers.due(key) == engine.jobs[job["id"]].claimed_until
