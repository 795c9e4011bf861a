"""Scheduled (cron) jobs end to end: next fire in the job's timezone, manual trigger, real fires."""

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx

from flowyard.jobs.events import Callback, Fire
from tests.conftest import Handler, Service
from tests.fake_clock import FakeClock
from tests.job_helpers import create_job, get_job, list_runs, ms, wait_job


def cron(url: str, schedule: str, timezone: str | None = None, **fields: Any) -> dict[str, Any]:
    trigger: dict[str, Any] = {"type": "scheduled", "schedule": schedule}
    if timezone is not None:
        trigger["timezone"] = timezone
    return {"trigger": trigger, "handler": url, **fields}


def next_utc(after_ms: int, *, hour: int, minute: int = 0) -> int:
    """The first ``hour:minute`` UTC strictly after ``after_ms``."""
    after = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
    candidate = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= after:
        candidate += timedelta(days=1)
    return int(candidate.timestamp() * 1000)


async def test_next_run_at_is_computed_in_the_job_timezone(
    service: Service, handler: Handler
) -> None:
    url = handler.at("/never")
    tokyo = await create_job(service, **cron(url, "0 9 * * *", "Asia/Tokyo"))
    assert tokyo["status"] == "scheduled"
    assert tokyo["run_at"] is None
    # 09:00 in Tokyo (UTC+9, no daylight saving) is 00:00 UTC.
    assert ms(tokyo["next_run_at"]) == next_utc(ms(tokyo["created_at"]), hour=0)
    assert tokyo["next_run_at"].endswith("T00:00:00.000Z")

    utc = await create_job(service, **cron(url, "0 9 * * *"))
    assert utc["trigger"]["timezone"] == "UTC"
    assert ms(utc["next_run_at"]) == next_utc(ms(utc["created_at"]), hour=9)

    kolkata = await create_job(service, **cron(url, "30 5 * * *", "Asia/Kolkata"))
    # 05:30 in Kolkata (UTC+5:30) is 00:00 UTC.
    assert ms(kolkata["next_run_at"]) == next_utc(ms(kolkata["created_at"]), hour=0)
    stored = await get_job(service, tokyo["id"])
    assert stored["next_run_at"] == tokyo["next_run_at"]
    assert handler.received == []


async def test_trigger_fires_a_scheduled_job_now_and_it_stays_scheduled(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/cron", (200, {"fired": True}, 0))
    job = await create_job(service, **cron(url, "0 9 * * *", "Asia/Tokyo", payload={"k": 1}))
    fired = await service.client.post(f"/infra/jobs/{job['id']}/trigger")
    assert fired.status_code == 202, fired.text
    assert fired.json()["status"] == "scheduled"
    [delivery] = await handler.wait_for("/cron")
    assert delivery.json() == {"k": 1}
    assert delivery.headers["x-flowyard-job-id"] == job["id"]
    done = await wait_job(service, job["id"], lambda j: j["last_run_at"] and not j["run_at"])
    assert done["status"] == "scheduled"
    assert done["result"] == {"fired": True}
    assert done["next_run_at"] == job["next_run_at"]
    [run] = await list_runs(service, job["id"])
    assert run["status"] == "completed"
    assert run["handler_status"] == 200
    assert run["id"] == delivery.headers["x-flowyard-run-id"]

    # One job, many runs: it can be fired again.
    again = await service.client.post(f"/infra/jobs/{job['id']}/trigger")
    assert again.status_code == 202, again.text
    await handler.wait_for("/cron", 2)
    await wait_job(
        service, job["id"], lambda j: not j["run_at"] and j["last_run_at"] != done["last_run_at"]
    )
    runs = await list_runs(service, job["id"])
    assert [r["status"] for r in runs] == ["completed", "completed"]
    assert (await get_job(service, job["id"]))["status"] == "scheduled"


async def test_trigger_fires_a_disabled_scheduled_job_once_with_its_retries(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/off", (500, {}, 0), (200, {"manual": True}, 0))
    job = await create_job(service, **cron(url, "0 9 * * *", enabled=False, max_attempts=2))
    assert job["enabled"] is False and job["status"] == "scheduled"
    fired = await service.client.post(f"/infra/jobs/{job['id']}/trigger")
    assert fired.status_code == 202, fired.text
    deliveries = await handler.wait_for("/off", 2)
    assert [d.headers["x-flowyard-attempt"] for d in deliveries] == ["1", "2"]
    done = await wait_job(service, job["id"], lambda j: j["last_run_at"] and not j["run_at"])
    assert done["status"] == "scheduled"
    assert done["enabled"] is False
    assert done["result"] == {"manual": True}
    assert done["next_run_at"] == job["next_run_at"]
    runs = await list_runs(service, job["id"])
    assert [(r["status"], r["handler_status"]) for r in runs] == [
        ("completed", 200),
        ("failed", 500),
    ]


async def test_trigger_of_unknown_job_is_404(service: Service) -> None:
    response = await service.client.post("/infra/jobs/job_01J00000000000000000000000/trigger")
    assert response.status_code == 404, response.text


async def test_scheduled_job_with_202_and_no_callback_fires_again(
    service_with: Any, handler: Handler
) -> None:
    """A fire whose handler never calls back ends with the window; the next fire still runs."""
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        url = handler.script("/cron-202", (202, {}, 0))
        job = await create_job(service, **cron(url, "0 9 * * *", "Asia/Tokyo", max_attempts=1))
        assert (await service.client.post(f"/infra/jobs/{job['id']}/trigger")).status_code == 202
        [delivery] = await handler.wait_for("/cron-202")
        key = Callback(job["id"], delivery.headers["x-flowyard-run-id"])
        timers = service.supervisor.jobs.timers
        with anyio.fail_after(5):
            while timers.due(key) is None:
                await anyio.sleep(0.005)
        clock.advance(seconds=3600)  # the default callback window
        ended = await wait_job(
            service, job["id"], lambda j: j["error"] is not None and not j["run_at"]
        )
        assert ended["status"] == "scheduled"
        assert "callback_timeout" in ended["error"]
        [run] = await list_runs(service, job["id"])
        assert run["status"] == "failed"
        assert run["handler_status"] == 202
        assert run["duration_ms"] >= 3_600_000
        again = await service.client.post(f"/infra/jobs/{job['id']}/trigger")
        assert again.status_code == 202, again.text
        await handler.wait_for("/cron-202", 2)


async def test_scheduled_job_202_then_callback_records_the_run(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/cron-cb", (202, {}, 0))
    job = await create_job(service, **cron(url, "0 9 * * *", "Asia/Tokyo"))
    assert (await service.client.post(f"/infra/jobs/{job['id']}/trigger")).status_code == 202
    [delivery] = await handler.wait_for("/cron-cb")
    async with httpx.AsyncClient(timeout=10) as anonymous:
        answer = await anonymous.post(
            delivery.headers["x-flowyard-callback-url"],
            json={"status": "completed", "result": {"later": 1}},
        )
    assert answer.status_code == 200, answer.text
    done = await get_job(service, job["id"])
    assert done["status"] == "scheduled"
    assert done["result"] == {"later": 1}
    [run] = await list_runs(service, job["id"])
    assert run["status"] == "completed"


async def test_every_minute_schedule_really_fires(service_with: Any, handler: Handler) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        url = handler.script("/minutely", (200, {"tick": True}, 0))
        job = await create_job(service, **cron(url, "* * * * *"))
        due = ms(job["next_run_at"])
        assert due % 60_000 == 0
        assert 0 < due - ms(job["created_at"]) <= 60_000
        timers = service.supervisor.jobs.timers
        assert timers.due(Fire(job["id"], due)) == due
        clock.advance(ms=due - clock.now_ms() - 1)
        await anyio.wait_all_tasks_blocked()
        assert handler.to("/minutely") == []  # not a millisecond early
        clock.advance(ms=1)
        [delivery] = await handler.wait_for("/minutely")
        assert delivery.headers["x-flowyard-job-id"] == job["id"]
        done = await wait_job(service, job["id"], lambda j: j["last_run_at"] and not j["run_at"])
        assert done["status"] == "scheduled"
        assert done["result"] == {"tick": True}
        assert ms(done["next_run_at"]) == due + 60_000
        [run] = await list_runs(service, job["id"])
        assert run["status"] == "completed"
        assert ms(run["scheduled_at"]) == due
        assert ms(run["started_at"]) == due
        clock.advance(seconds=60)  # and the next minute fires again
        await handler.wait_for("/minutely", 2)
        await wait_job(service, job["id"], lambda j: ms(j["next_run_at"]) == due + 120_000)
