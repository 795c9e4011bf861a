"""Per-project rate limits over real HTTP (DESIGN §2): headers on every answer, 429 first."""

import math
import time
from typing import Any

import anyio
import httpx

from tests.accounts_support import (
    JOB_WRITE,
    READ,
    TOKEN,
    admin_balance,
    assert_no_rate_headers,
    assert_rate_headers,
    set_account,
    set_in_sql,
    tokens,
)
from tests.conftest import Service
from tests.fake_clock import FakeClock
from tests.jobs_support import PULL, error_of, new_key

UNKNOWN_JOB = "job_01JBZZZZZZZZZZZZZZZZZZZZZZ"


def assert_reset_ahead(reset: int, asked_at: float, answered_at: float, window: float) -> None:
    """``X-RateLimit-Reset`` is a unix second, now or later, at most ``window`` s ahead."""
    assert math.floor(asked_at) <= reset <= math.ceil(answered_at + window), (
        asked_at,
        reset,
    )


async def test_every_answer_to_a_limited_project_carries_the_headers(service: Service) -> None:
    client = service.client
    job = (await client.post("/infra/jobs", json={**PULL, "name": "j"})).json()
    read_only = await new_key(service, "test", ["jobs:read"])
    await set_account(service, rps=50)

    asked = time.time()
    first = await client.get("/infra/jobs")
    assert first.status_code == 200
    remaining, reset = assert_rate_headers(first, "50")
    assert remaining == 49  # a full bucket (one second of requests), less this one
    assert_reset_ahead(reset, asked, time.time(), 1)

    async with service.client_for(read_only) as reader:
        forbidden = await reader.post("/infra/jobs", json=PULL)
    answers = [
        (await client.post("/infra/jobs", json={**PULL, "name": "k"}), 202),
        (await client.get(f"/infra/jobs/{job['id']}"), 200),
        (await client.get(f"/infra/jobs/{UNKNOWN_JOB}"), 404),
        (await client.post("/infra/jobs", json={"name": "no trigger"}), 400),
        (await client.post("/infra/jobs", content=b"{", headers={"content-type": "x/y"}), 415),
        (forbidden, 403),
        (await client.delete(f"/infra/jobs/{UNKNOWN_JOB}"), 404),
        (await client.post("/infra/jobs/claim", json={"queue": "q"}), 200),
        (await client.get("/core/tokens/balance"), 200),
        (await client.get("/core/tokens/usage"), 200),
        (await client.get("/infra/workflows/blueprints"), 200),
        (await client.get("/infra/queues"), 200),
    ]
    for response, status in answers:
        assert response.status_code == status, response.text
        left, reset = assert_rate_headers(response, "50")
        assert left < 50
        assert_reset_ahead(reset, asked, time.time(), 1)


async def test_a_balance_refusal_carries_the_headers_too(service: Service) -> None:
    await set_account(service, balance=0, rps=10)
    refused = await service.client.post("/infra/jobs", json=PULL)
    error_of(refused, 402, "insufficient_tokens")
    assert_rate_headers(refused, "10")


async def test_a_burst_beyond_the_limit_is_refused_with_nothing_done(service: Service) -> None:
    client = service.client
    await set_account(service, balance=TOKEN, rps=5)
    accepted: list[str] = []
    refused: list[httpx.Response] = []
    for index in range(12):
        asked = time.time()
        response = await client.post("/infra/jobs", json={**PULL, "name": f"burst-{index}"})
        if response.status_code == 202:
            assert_rate_headers(response, "5")
            accepted.append(response.json()["name"])
            continue
        error_of(response, 429, "rate_limited")
        remaining, reset = assert_rate_headers(response, "5")
        assert remaining == 0
        assert_reset_ahead(reset, asked, time.time(), 1)
        assert reset >= asked  # the bucket is not full yet
        retry_after = response.headers["retry-after"]
        assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
        refused.append(response)
    assert len(accepted) >= 5  # the bucket holds one second of requests
    assert refused, "a burst beyond the limit was never refused"
    # A refused create created nothing and cost nothing.
    assert await admin_balance(service) == tokens(TOKEN - len(accepted) * JOB_WRITE)

    # After waiting Retry-After, calls go through again.
    await anyio.sleep(int(refused[-1].headers["retry-after"]))
    listed = await client.get("/infra/jobs?limit=100")
    assert listed.status_code == 200, listed.text
    assert_rate_headers(listed, "5")
    assert sorted(job["name"] for job in listed.json()["jobs"]) == sorted(accepted)
    assert await admin_balance(service) == tokens(TOKEN - len(accepted) * JOB_WRITE - READ)


async def test_429_is_answered_before_any_other_check(service: Service) -> None:
    """Once the bucket is empty, 404, 400, 403 and 402 all give way to 429 (rate first)."""
    client = service.client
    job = (await client.post("/infra/jobs", json={**PULL, "name": "j"})).json()
    read_only = await new_key(service, "test", ["jobs:read"])
    # One request a second: after the first, the bucket stays short for about a second.
    await set_account(service, balance=0, rps=1)
    first = await client.get("/core/tokens/balance")
    assert first.status_code == 200
    assert_rate_headers(first, "1")
    async with service.client_for(read_only) as reader:
        answers = [
            await client.get(f"/infra/jobs/{UNKNOWN_JOB}"),  # else 404
            await client.post("/infra/jobs", json={"name": "no trigger"}),  # else 400
            await reader.post("/infra/jobs", json=PULL),  # else 403
            await client.post("/infra/jobs", json=PULL),  # else 402
            await client.delete(f"/infra/jobs/{job['id']}"),  # else 402
            await client.post("/infra/jobs/claim", json={"queue": "q"}),  # else 200 (free)
        ]
    for response in answers:
        error_of(response, 429, "rate_limited")
        assert_rate_headers(response, "1")
        assert response.headers["retry-after"] == "1"
    await set_account(service, balance=TOKEN, rps=None)
    found = await client.get(f"/infra/jobs/{job['id']}")
    assert found.json()["status"] == "pending"  # the refused DELETE did nothing
    assert_no_rate_headers(found)


async def test_another_project_is_not_limited(service: Service) -> None:
    client = service.client
    other_key = await new_key(service, "other")
    await set_account(service, rps=1)
    assert (await client.get("/infra/jobs")).status_code == 200
    error_of(await client.get("/infra/jobs"), 429, "rate_limited")
    async with service.client_for(other_key) as other:
        for index in range(10):
            response = await other.post("/infra/jobs", json={**PULL, "name": f"o{index}"})
            assert response.status_code == 202, response.text
            assert_no_rate_headers(response)
    # A second project with a limit of its own has a bucket of its own.
    third_key = await new_key(service, "third")
    async with service.client_for(third_key) as third:
        third_id = (await third.get("/core/tokens/balance")).json()["project_id"]
        await set_account(service, third_id, rps=3)
        statuses = [(await third.get("/infra/jobs")).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]


async def test_calls_go_through_again_after_retry_after(service_with: Any) -> None:
    clock = FakeClock()  # the rate buckets read the service's clock: no waiting in real time
    async with service_with(clock=clock) as service:
        client = service.client
        await set_account(service, rps=2)
        statuses = [(await client.get("/infra/jobs")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        refused = await client.get("/infra/jobs")
        error_of(refused, 429, "rate_limited")
        retry_after = int(refused.headers["retry-after"])
        clock.advance(seconds=retry_after - 0.6)
        error_of(await client.get("/infra/jobs"), 429, "rate_limited")  # not yet
        clock.advance(seconds=0.6)
        again = await client.get("/infra/jobs")
        assert again.status_code == 200, again.text
        assert_rate_headers(again, "2")


async def test_an_unauthenticated_answer_carries_no_rate_headers(service: Service) -> None:
    await set_account(service, rps=1)
    for headers in ({}, {"Authorization": "Bearer sk_live_" + "x" * 32}, {"X-API-Key": "nope"}):
        async with httpx.AsyncClient(base_url=service.url, headers=headers) as anonymous:
            response = await anonymous.get("/infra/jobs")
        error_of(response, 401, "unauthorized")
        assert_no_rate_headers(response)
    # The 401s took nothing from the project's bucket.
    accepted = await service.client.get("/infra/jobs")
    assert accepted.status_code == 200
    assert_rate_headers(accepted, "1")


async def test_a_limit_set_in_the_projects_table_applies(service: Service) -> None:
    client = service.client
    assert_no_rate_headers(await client.get("/infra/jobs"))
    await set_in_sql(service, rps=2)
    statuses = [(await client.get("/infra/jobs")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    await set_in_sql(service, rps=None)
    response = await client.get("/infra/jobs")
    assert response.status_code == 200
    assert_no_rate_headers(response)


async def test_an_unlimited_project_gets_no_rate_headers(service: Service) -> None:
    client = service.client
    for _ in range(20):
        response = await client.get("/infra/jobs")
        assert response.status_code == 200
        assert_no_rate_headers(response)
    assert_no_rate_headers(await client.get(f"/infra/jobs/{UNKNOWN_JOB}"))
