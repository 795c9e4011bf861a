"""Changing jobs over HTTP: PATCH, DELETE (cancel), retry, trigger, and the runs list."""

import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import httpx
import pytest

from tests.conftest import Handler
from tests.jobs_support import (
    LATER,
    PULL,
    RUN_FIELDS,
    YEARLY,
    ack,
    assert_invalid,
    claim,
    create,
    error_of,
    get,
    ms,
    now_ms,
)


async def failed_job(api: httpx.AsyncClient) -> dict[str, Any]:
    """A pull job whose only attempt failed."""
    job = await create(api, {**PULL, "max_attempts": 1})
    await ack(api, await claim(api), "failed", error="boom")
    failed = await get(api, job["id"])
    assert failed["status"] == "failed"
    return failed


async def cancelled_job(api: httpx.AsyncClient) -> dict[str, Any]:
    job = await create(api, LATER)
    response = await api.delete(f"/infra/jobs/{job['id']}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def completed_job(api: httpx.AsyncClient) -> dict[str, Any]:
    await create(api, PULL)
    claimed = await claim(api)
    await ack(api, claimed, "completed", result={"ok": True})
    return await get(api, claimed["id"])


async def running_job(api: httpx.AsyncClient) -> dict[str, Any]:
    await create(api, PULL)
    return await claim(api)


# ----------------------------------------------------------------------------- PATCH


async def test_patch_handler_payload_and_enabled(api: httpx.AsyncClient) -> None:
    job = await create(api, {**LATER, "payload": {"v": 1}, "name": "keep"})
    response = await api.patch(
        f"/infra/jobs/{job['id']}",
        json={"handler": "http://other.example/h", "payload": [1, "two"], "enabled": False},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    changed = {"handler": "http://other.example/h", "payload": [1, "two"], "enabled": False}
    assert {field: patched[field] for field in changed} == changed
    unchanged = {k: v for k, v in job.items() if k not in changed}
    assert {k: patched[k] for k in unchanged} == unchanged
    assert await get(api, job["id"]) == patched


async def test_patch_one_field_keeps_the_others(api: httpx.AsyncClient) -> None:
    job = await create(api, {**LATER, "payload": {"v": 1}})
    patched = (await api.patch(f"/infra/jobs/{job['id']}", json={"enabled": False})).json()
    assert patched == {**job, "enabled": False}
    cleared = (await api.patch(f"/infra/jobs/{job['id']}", json={"payload": None})).json()
    assert cleared == {**job, "enabled": False, "payload": None}


async def test_patch_delay_moves_run_at(api: httpx.AsyncClient) -> None:
    job = await create(api, LATER)
    before = now_ms()
    response = await api.patch(
        f"/infra/jobs/{job['id']}", json={"trigger": {"delay_seconds": 7200}}
    )
    after = now_ms()
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["trigger"] == {"type": "delayed", "delay_seconds": 7200}
    assert before + 7_200_000 <= ms(patched["run_at"]) <= after + 7_200_000
    assert (await get(api, job["id"]))["run_at"] == patched["run_at"]


async def test_patch_schedule_and_timezone(api: httpx.AsyncClient) -> None:
    job = await create(api, YEARLY)
    response = await api.patch(
        f"/infra/jobs/{job['id']}",
        json={"trigger": {"schedule": "30 9 * * *", "timezone": "Europe/Paris"}},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    expected = {"type": "scheduled", "schedule": "30 9 * * *", "timezone": "Europe/Paris"}
    assert patched["trigger"] == expected
    assert patched["status"] == "scheduled"
    fire = datetime.fromtimestamp(ms(patched["next_run_at"]) / 1000, UTC)
    local = fire.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute, local.second) == (9, 30, 0)
    assert 0 < fire.timestamp() - time.time() <= 25 * 3600
    # Changing only the timezone keeps the schedule.
    response = await api.patch(f"/infra/jobs/{job['id']}", json={"trigger": {"timezone": "UTC"}})
    again = response.json()
    assert again["trigger"] == {**expected, "timezone": "UTC"}
    fire = datetime.fromtimestamp(ms(again["next_run_at"]) / 1000, UTC)
    assert (fire.hour, fire.minute) == (9, 30)


BAD_PATCHES: list[tuple[str, dict[str, Any], Any, str, int]] = [
    ("handler-ftp", LATER, {"handler": "ftp://x"}, "$.handler", 400),
    ("handler-not-url", LATER, {"handler": "not a url"}, "$.handler", 400),
    ("handler-number", LATER, {"handler": 5}, "$.handler", 400),
    ("enabled-string", LATER, {"enabled": "yes"}, "$.enabled", 400),
    ("delay-negative", LATER, {"trigger": {"delay_seconds": -1}}, "$.trigger.delay_seconds", 400),
    (
        "delay-too-long",
        LATER,
        {"trigger": {"delay_seconds": 2_592_001}},
        "$.trigger.delay_seconds",
        400,
    ),
    (
        "schedule-on-delayed",
        LATER,
        {"trigger": {"schedule": "0 9 * * *"}},
        "$.trigger.schedule",
        400,
    ),
    ("trigger-string", LATER, {"trigger": "now"}, "$.trigger", 400),
    ("payload-too-big", LATER, {"payload": "x" * (256 * 1024)}, "$.payload", 413),
    ("bad-cron", YEARLY, {"trigger": {"schedule": "* * *"}}, "$.trigger.schedule", 400),
    ("bad-cron-range", YEARLY, {"trigger": {"schedule": "0 25 * * *"}}, "$.trigger.schedule", 400),
    ("bad-timezone", YEARLY, {"trigger": {"timezone": "Nowhere/Land"}}, "$.trigger.timezone", 400),
    (
        "delay-on-scheduled",
        YEARLY,
        {"trigger": {"delay_seconds": 5}},
        "$.trigger.delay_seconds",
        400,
    ),
    ("delay-on-pull", PULL, {"trigger": {"delay_seconds": 5}}, "$.trigger.delay_seconds", 400),
    ("body-array", LATER, [], "$", 400),
]


@pytest.mark.parametrize(
    ("body", "patch", "path", "status"),
    [case[1:] for case in BAD_PATCHES],
    ids=[case[0] for case in BAD_PATCHES],
)
async def test_bad_patch_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, body: dict[str, Any], patch: Any, path: str, status: int
) -> None:
    job = await create(api, body)
    response = await api.patch(f"/infra/jobs/{job['id']}", json=patch)
    assert_invalid(response, path, status)
    assert await get(api, job["id"]) == job


async def test_patch_body_must_be_json(api: httpx.AsyncClient) -> None:
    job = await create(api, LATER)
    url = f"/infra/jobs/{job['id']}"
    response = await api.patch(url, content=b"{", headers={"content-type": "application/json"})
    error_of(response, 400, "bad_request")
    response = await api.patch(url, content=b"{}", headers={"content-type": "text/plain"})
    error_of(response, 415, "unsupported_media_type")
    assert await get(api, job["id"]) == job


@pytest.mark.parametrize("state", ["running", "cancelled", "completed", "failed"])
async def test_patch_after_the_job_ran_or_ended_is_409(api: httpx.AsyncClient, state: str) -> None:
    make = {
        "running": running_job,
        "cancelled": cancelled_job,
        "completed": completed_job,
        "failed": failed_job,
    }[state]
    job = await make(api)
    before = await get(api, job["id"])
    response = await api.patch(f"/infra/jobs/{job['id']}", json={"enabled": False})
    error_of(response, 409, "conflict")
    assert await get(api, job["id"]) == before


@pytest.mark.parametrize(
    ("patch", "path", "status"),
    [
        ({"handler": "ftp://x"}, "$.handler", 400),
        ({"trigger": {"schedule": "0 9 * * *"}}, "$.trigger.schedule", 400),
        ({"trigger": {"delay_seconds": -1}}, "$.trigger.delay_seconds", 400),
        ({"payload": "x" * (256 * 1024)}, "$.payload", 413),
    ],
)
async def test_a_bad_body_is_refused_before_the_state_is_409(
    api: httpx.AsyncClient, patch: dict[str, Any], path: str, status: int
) -> None:
    job = await cancelled_job(api)
    response = await api.patch(f"/infra/jobs/{job['id']}", json=patch)
    assert_invalid(response, path, status)


# ----------------------------------------------------------------------------- DELETE


async def test_delete_cancels_and_a_second_delete_is_409(api: httpx.AsyncClient) -> None:
    job = await create(api, PULL)
    before = now_ms()
    response = await api.delete(f"/infra/jobs/{job['id']}")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["id"] == job["id"]
    assert cancelled["status"] == "cancelled"
    assert before <= ms(cancelled["completed_at"]) <= now_ms()
    assert await get(api, job["id"]) == cancelled
    claimed = await api.post("/infra/jobs/claim", json={"queue": "q"})
    assert claimed.json() == []
    error_of(await api.delete(f"/infra/jobs/{job['id']}"), 409, "conflict")
    assert await get(api, job["id"]) == cancelled


@pytest.mark.parametrize("make", [running_job, lambda api: create(api, YEARLY)])
async def test_delete_cancels_running_and_scheduled_jobs(api: httpx.AsyncClient, make: Any) -> None:
    job = await make(api)
    response = await api.delete(f"/infra/jobs/{job['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert (await get(api, job["id"]))["status"] == "cancelled"


@pytest.mark.parametrize("make", [completed_job, failed_job])
async def test_delete_of_an_ended_job_is_409(api: httpx.AsyncClient, make: Any) -> None:
    job = await make(api)
    error_of(await api.delete(f"/infra/jobs/{job['id']}"), 409, "conflict")
    assert await get(api, job["id"]) == job


# ----------------------------------------------------------------------------- retry


async def test_retry_sends_a_failed_job_back_to_pending(api: httpx.AsyncClient) -> None:
    job = await failed_job(api)
    assert job["attempt"] == 1 and job["error"] == "boom"
    response = await api.post(f"/infra/jobs/{job['id']}/retry")
    assert response.status_code == 200, response.text
    retried = response.json()
    assert retried["status"] == "pending"
    assert retried["attempt"] == 0
    assert retried["error"] is None
    assert retried["completed_at"] is None
    assert await get(api, job["id"]) == retried
    again = await claim(api)
    assert again["id"] == job["id"] and again["attempt"] == 1
    error_of(await api.post(f"/infra/jobs/{job['id']}/retry"), 409, "conflict")


@pytest.mark.parametrize(
    "make", [lambda api: create(api, PULL), running_job, cancelled_job, completed_job]
)
async def test_retry_of_a_job_that_has_not_failed_is_409(api: httpx.AsyncClient, make: Any) -> None:
    job = await make(api)
    before = await get(api, job["id"])
    error_of(await api.post(f"/infra/jobs/{job['id']}/retry"), 409, "conflict")
    assert await get(api, job["id"]) == before


# ----------------------------------------------------------------------------- trigger


async def test_trigger_fires_a_scheduled_job_now(api: httpx.AsyncClient, handler: Handler) -> None:
    job = await create(api, {**YEARLY, "handler": handler.at("/cron"), "payload": {"tick": 1}})
    response = await api.post(f"/infra/jobs/{job['id']}/trigger")
    assert response.status_code == 202, response.text
    fired = response.json()
    assert fired["id"] == job["id"]
    assert fired["status"] == "scheduled"
    [delivery] = await handler.wait_for("/cron")
    assert delivery.json() == {"tick": 1}
    with anyio.fail_after(10):
        while True:
            runs = (await api.get(f"/infra/jobs/{job['id']}/runs")).json()["runs"]
            if runs and runs[0]["status"] == "completed":
                break
            await anyio.sleep(0.01)
    assert len(runs) == 1 and runs[0]["handler_status"] == 200
    after = await get(api, job["id"])
    assert after["status"] == "scheduled"
    assert after["next_run_at"] == job["next_run_at"]


@pytest.mark.parametrize("make", [cancelled_job, completed_job, failed_job, running_job])
async def test_trigger_of_an_ended_or_running_job_is_409(api: httpx.AsyncClient, make: Any) -> None:
    job = await make(api)
    before = await get(api, job["id"])
    error_of(await api.post(f"/infra/jobs/{job['id']}/trigger"), 409, "conflict")
    assert await get(api, job["id"]) == before


# ----------------------------------------------------------------------------- runs


async def test_runs_list_every_claim_newest_first(api: httpx.AsyncClient) -> None:
    job = await create(api, {**PULL, "max_attempts": 3, "backoff": "fixed"})
    empty = await api.get(f"/infra/jobs/{job['id']}/runs")
    assert empty.status_code == 200
    assert empty.json() == {"runs": [], "next_cursor": None}
    first = await claim(api)
    [open_run] = (await api.get(f"/infra/jobs/{job['id']}/runs")).json()["runs"]
    assert open_run.keys() >= RUN_FIELDS
    assert open_run["id"].startswith("run_") and open_run["job_id"] == job["id"]
    assert open_run["status"] == "running" and open_run["completed_at"] is None
    assert ms(open_run["started_at"]) == ms(first["last_run_at"])
    assert ms(first["claimed_until"]) == ms(first["last_run_at"]) + 30_000
    await ack(api, first, "failed", error="first try")
    response = await api.post("/infra/jobs/claim", json={"queue": "q", "wait_seconds": 10})
    [second] = response.json()
    await ack(api, second, "completed", result={"ok": 1})
    runs = (await api.get(f"/infra/jobs/{job['id']}/runs")).json()
    assert [run["status"] for run in runs["runs"]] == ["completed", "failed"]
    assert runs["runs"][1]["id"] == open_run["id"]
    assert runs["runs"][1]["error"] == "first try"
    for run in runs["runs"]:
        assert run["duration_ms"] >= 0
        assert ms(run["completed_at"]) >= ms(run["started_at"])
    page = (await api.get(f"/infra/jobs/{job['id']}/runs?limit=1")).json()
    assert [run["id"] for run in page["runs"]] == [runs["runs"][0]["id"]]
    rest = await api.get(f"/infra/jobs/{job['id']}/runs", params={"cursor": page["next_cursor"]})
    assert [run["id"] for run in rest.json()["runs"]] == [runs["runs"][1]["id"]]
    assert rest.json()["next_cursor"] is None


@pytest.mark.parametrize(("query", "path"), [("limit=0", "$.limit"), ("cursor=zz", "$.cursor")])
async def test_bad_runs_queries_are_400(api: httpx.AsyncClient, query: str, path: str) -> None:
    job = await create(api, PULL)
    assert_invalid(await api.get(f"/infra/jobs/{job['id']}/runs?{query}"), path)
