"""The Jobs API's answers: the job object, idempotency, listing and paging, PATCH, cancel,
retry, trigger and runs (DESIGN §2-§3; the pull and push protocols are tested elsewhere)."""

from datetime import UTC, datetime

import anyio
import httpx
import pytest

from tests.conftest import Service
from tests.jobs_support import (
    HANDLER,
    JOB_FIELDS,
    JOB_ID,
    LATER,
    PULL,
    YEARLY,
    assert_invalid,
    create,
    error_of,
    get,
    job_ids,
    ms,
    now_ms,
    project_client,
)

# ----------------------------------------------------------------------------- create


async def test_create_answers_202_with_the_full_job(api: httpx.AsyncClient) -> None:
    payload = {"n": [1, 2.5, "é", None, {"deep": True}]}
    before = now_ms()
    response = await api.post(
        "/infra/jobs",
        json={
            "trigger": {"type": "delayed", "delay_seconds": 90},
            "handler": HANDLER,
            "payload": payload,
            "name": "nightly",
            "timeout": 7,
            "max_attempts": 9,
            "backoff": "linear",
            "priority": 2,
            "callback_url": "https://cb.example/done",
            "idempotency_key": "idem-1",
            "enabled": True,
        },
    )
    after = now_ms()
    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/json")
    job = response.json()
    assert job.keys() >= JOB_FIELDS
    assert "claim_token" not in job
    assert JOB_ID.match(job["id"])
    assert job["trigger"] == {"type": "delayed", "delay_seconds": 90}
    expected = {
        "name": "nightly",
        "handler": HANDLER,
        "payload": payload,
        "result": None,
        "status": "pending",
        "enabled": True,
        "priority": 2,
        "attempt": 0,
        "max_attempts": 9,
        "timeout": 7,
        "backoff": "linear",
        "idempotency_key": "idem-1",
        "error": None,
        "next_run_at": None,
        "last_run_at": None,
        "claimed_until": None,
        "completed_at": None,
        "callback_url": "https://cb.example/done",
        "workflow": None,
    }
    assert {field: job[field] for field in expected} == expected
    assert before <= ms(job["created_at"]) <= after
    assert ms(job["run_at"]) == ms(job["created_at"]) + 90_000
    assert await get(api, job["id"]) == job


async def test_create_defaults(api: httpx.AsyncClient) -> None:
    job = await create(api, PULL)
    defaults = {
        "timeout": 30,
        "max_attempts": 3,
        "backoff": "exponential",
        "priority": 5,
        "enabled": True,
        "payload": None,
        "name": None,
        "handler": None,
        "callback_url": None,
        "idempotency_key": None,
        "status": "pending",
        "attempt": 0,
    }
    assert {field: job[field] for field in defaults} == defaults
    assert job["run_at"] == job["created_at"]


async def test_a_scheduled_job_is_scheduled_with_its_next_fire(api: httpx.AsyncClient) -> None:
    job = await create(api, YEARLY)
    assert job["status"] == "scheduled"
    assert job["trigger"] == {"type": "scheduled", "schedule": "0 0 1 1 *", "timezone": "UTC"}
    assert job["run_at"] is None
    fire = datetime.fromtimestamp(ms(job["next_run_at"]) / 1000, UTC)
    assert (fire.month, fire.day, fire.hour, fire.minute, fire.second) == (1, 1, 0, 0, 0)
    assert fire.year == datetime.now(UTC).year + 1


async def test_idempotency_key_returns_the_same_job(api: httpx.AsyncClient) -> None:
    first = await create(api, {**PULL, "idempotency_key": "once", "name": "first"})
    again = await create(api, {**PULL, "idempotency_key": "once", "name": "second"})
    assert again == first
    assert await job_ids(api) == [first["id"]]


async def test_idempotency_key_holds_under_concurrent_creates(api: httpx.AsyncClient) -> None:
    ids: list[str] = []

    async def post() -> None:
        ids.append((await create(api, {**PULL, "idempotency_key": "race"}))["id"])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(post)
    assert len(set(ids)) == 1
    assert await job_ids(api) == ids[:1]


async def test_idempotency_keys_are_per_project(api: httpx.AsyncClient, shared: Service) -> None:
    mine = await create(api, {**PULL, "idempotency_key": "shared-key"})
    async with project_client(shared) as other:
        theirs = await create(other, {**PULL, "idempotency_key": "shared-key"})
        assert await job_ids(other) == [theirs["id"]]
    assert theirs["id"] != mine["id"]
    assert await job_ids(api) == [mine["id"]]


# ----------------------------------------------------------------------------- list


async def test_list_filters(api: httpx.AsyncClient) -> None:
    a = await create(api, {"trigger": {"type": "pull", "queue": "q1"}})
    b = await create(api, {"trigger": {"type": "pull", "queue": "q2"}})
    c = await create(api, LATER)
    d = await create(api, YEARLY)
    e = await create(
        api, {"trigger": {"type": "queue", "queue": "q1"}, "handler": HANDLER, "enabled": False}
    )
    assert (await api.delete(f"/infra/jobs/{b['id']}")).status_code == 200
    expectations = {
        "": [e, d, c, b, a],
        "&status=pending": [e, c, a],
        "&status=cancelled": [b],
        "&status=scheduled": [d],
        "&status=failed": [],
        "&trigger_type=pull": [b, a],
        "&trigger_type=delayed": [c],
        "&trigger_type=scheduled": [d],
        "&trigger_type=queue": [e],
        "&trigger_type=immediate": [],
        "&queue=q1": [e, a],
        "&queue=q2": [b],
        "&queue=q3": [],
        "&queue=q1&trigger_type=pull": [a],
        "&status=pending&trigger_type=pull": [a],
    }
    for query, jobs in expectations.items():
        assert await job_ids(api, query) == [job["id"] for job in jobs], query


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("status=done", "$.status"),
        ("trigger_type=cron", "$.trigger_type"),
        ("queue=" + "q" * 129, "$.queue"),
        ("limit=0", "$.limit"),
        ("limit=101", "$.limit"),
        ("limit=-1", "$.limit"),
        ("limit=ten", "$.limit"),
        ("cursor=garbage", "$.cursor"),
        ("cursor=!!!", "$.cursor"),
        ("cursor=eDox", "$.cursor"),  # base64 of "x:1"
        ("cursor=czphYmM", "$.cursor"),  # base64 of "s:abc"
    ],
)
async def test_bad_list_queries_are_400(api: httpx.AsyncClient, query: str, path: str) -> None:
    assert_invalid(await api.get(f"/infra/jobs?{query}"), path)


async def test_limit_bounds_and_default(api: httpx.AsyncClient) -> None:
    response = await api.post("/infra/jobs/batch", json={"jobs": [PULL] * 26})
    assert response.status_code == 202, response.text
    page = (await api.get("/infra/jobs")).json()
    assert len(page["jobs"]) == 25 and page["next_cursor"]
    rest = (await api.get("/infra/jobs", params={"cursor": page["next_cursor"]})).json()
    assert len(rest["jobs"]) == 1 and rest["next_cursor"] is None
    one = (await api.get("/infra/jobs?limit=1")).json()
    assert len(one["jobs"]) == 1 and one["next_cursor"]
    hundred = (await api.get("/infra/jobs?limit=100")).json()
    assert len(hundred["jobs"]) == 26 and hundred["next_cursor"] is None


async def test_paging_is_newest_first_and_stable_under_inserts(api: httpx.AsyncClient) -> None:
    created = [(await create(api, {**PULL, "name": str(n)}))["id"] for n in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    for page_number in range(10):
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/infra/jobs", params=params)).json()
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        for _ in range(page_number + 1):  # newer jobs arrive between the pages
            await create(api, {**PULL, "name": "late"})
    assert seen == created[::-1]
    assert len(await job_ids(api)) == 7 + 1 + 2


async def test_an_empty_list(api: httpx.AsyncClient) -> None:
    response = await api.get("/infra/jobs")
    assert response.status_code == 200
    assert response.json() == {"jobs": [], "next_cursor": None}


# ----------------------------------------------------------------------------- get


@pytest.mark.parametrize("job_id", ["job_01JZZZZZZZZZZZZZZZZZZZZZZZ", "nope", "wf_x"])
async def test_unknown_job_is_404(api: httpx.AsyncClient, job_id: str) -> None:
    for method in ("GET", "DELETE"):
        error_of(await api.request(method, f"/infra/jobs/{job_id}"), 404, "not_found")
    for action in ("trigger", "retry"):
        error_of(await api.post(f"/infra/jobs/{job_id}/{action}"), 404, "not_found")
    error_of(await api.get(f"/infra/jobs/{job_id}/runs"), 404, "not_found")
    error_of(await api.patch(f"/infra/jobs/{job_id}", json={"enabled": False}), 404, "not_found")


async def test_404_comes_before_body_validation(api: httpx.AsyncClient) -> None:
    response = await api.patch("/infra/jobs/job_01JZZZZZZZZZZZZZZZZZZZZZZZ", json={"enabled": 1})
    error_of(response, 404, "not_found")
