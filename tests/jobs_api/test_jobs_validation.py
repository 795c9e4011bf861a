"""Bad input on POST /infra/jobs and /infra/jobs/batch: status, error shape, field path, and
that nothing was created."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.jobs_support import (
    HANDLER,
    LATER,
    PULL,
    assert_invalid,
    create,
    error_of,
    job_ids,
)

MAX_PAYLOAD = 256 * 1024
MAX_BODY = 1024 * 1024


def delayed(seconds: Any) -> dict[str, Any]:
    return {"trigger": {"type": "delayed", "delay_seconds": seconds}, "handler": HANDLER}


def scheduled(schedule: str, timezone: str = "UTC") -> dict[str, Any]:
    trigger = {"type": "scheduled", "schedule": schedule, "timezone": timezone}
    return {"trigger": trigger, "handler": HANDLER}


BAD_CREATE: list[tuple[str, Any, str]] = [
    ("timeout-0", {**PULL, "timeout": 0}, "$.timeout"),
    ("timeout-31", {**PULL, "timeout": 31}, "$.timeout"),
    ("timeout-float", {**PULL, "timeout": 1.5}, "$.timeout"),
    ("max-attempts-0", {**PULL, "max_attempts": 0}, "$.max_attempts"),
    ("max-attempts-21", {**PULL, "max_attempts": 21}, "$.max_attempts"),
    ("priority-0", {**PULL, "priority": 0}, "$.priority"),
    ("priority-11", {**PULL, "priority": 11}, "$.priority"),
    ("priority-string", {**PULL, "priority": "5"}, "$.priority"),
    ("delay-negative", delayed(-1), "$.trigger.delay_seconds"),
    ("delay-over-30-days", delayed(2_592_001), "$.trigger.delay_seconds"),
    ("delay-string", delayed("10"), "$.trigger.delay_seconds"),
    (
        "delay-missing",
        {"trigger": {"type": "delayed"}, "handler": HANDLER},
        "$.trigger.delay_seconds",
    ),
    ("name-257", {**PULL, "name": "n" * 257}, "$.name"),
    ("idempotency-key-129", {**PULL, "idempotency_key": "k" * 129}, "$.idempotency_key"),
    ("queue-129", {"trigger": {"type": "pull", "queue": "q" * 129}}, "$.trigger.queue"),
    ("queue-empty", {"trigger": {"type": "pull", "queue": ""}}, "$.trigger.queue"),
    (
        "push-queue-129",
        {"trigger": {"type": "queue", "queue": "q" * 129}, "handler": HANDLER},
        "$.trigger.queue",
    ),
    ("enabled-string", {**PULL, "enabled": "yes"}, "$.enabled"),
    ("backoff-unknown", {**PULL, "backoff": "random"}, "$.backoff"),
    ("trigger-string", {"trigger": "immediate", "handler": HANDLER}, "$.trigger"),
    ("trigger-unknown-type", {"trigger": {"type": "hourly"}, "handler": HANDLER}, "$.trigger.type"),
    ("trigger-no-type", {"trigger": {}, "handler": HANDLER}, "$.trigger.type"),
    ("trigger-missing", {"handler": HANDLER}, "$.trigger"),
    ("handler-missing-immediate", {"trigger": {"type": "immediate"}}, "$.handler"),
    ("handler-missing-delayed", {"trigger": {"type": "delayed", "delay_seconds": 5}}, "$.handler"),
    (
        "handler-missing-scheduled",
        {"trigger": {"type": "scheduled", "schedule": "0 0 1 1 *"}},
        "$.handler",
    ),
    (
        "handler-ftp-queue",
        {"trigger": {"type": "queue", "queue": "q"}, "handler": "ftp://x"},
        "$.handler",
    ),
    ("handler-ftp", {"trigger": {"type": "immediate"}, "handler": "ftp://x"}, "$.handler"),
    ("handler-not-url", {"trigger": {"type": "immediate"}, "handler": "not a url"}, "$.handler"),
    ("handler-number", {"trigger": {"type": "immediate"}, "handler": 7}, "$.handler"),
    ("handler-pull-ftp", {**PULL, "handler": "ftp://x"}, "$.handler"),
    ("callback-ftp", {**PULL, "callback_url": "ftp://x"}, "$.callback_url"),
    ("callback-not-url", {**PULL, "callback_url": "not a url"}, "$.callback_url"),
    ("cron-four-fields", scheduled("* * * *"), "$.trigger.schedule"),
    ("cron-minute-61", scheduled("61 * * * *"), "$.trigger.schedule"),
    ("cron-six-fields", scheduled("0 0 0 1 1 *"), "$.trigger.schedule"),
    ("timezone-unknown", scheduled("0 0 1 1 *", "Mars/Olympus_Mons"), "$.trigger.timezone"),
    ("body-array", [PULL], "$"),
]


@pytest.mark.parametrize(
    ("body", "path"), [c[1:] for c in BAD_CREATE], ids=[c[0] for c in BAD_CREATE]
)
async def test_bad_create_body_is_400_naming_the_field(
    api: httpx.AsyncClient, body: Any, path: str
) -> None:
    response = await api.post("/infra/jobs", json=body)
    assert_invalid(response, path)
    assert await job_ids(api) == []


GOOD_EDGES: list[tuple[str, dict[str, Any], str, Any]] = [
    ("timeout-1", {**PULL, "timeout": 1}, "timeout", 1),
    ("timeout-30", {**PULL, "timeout": 30}, "timeout", 30),
    ("max-attempts-1", {**PULL, "max_attempts": 1}, "max_attempts", 1),
    ("max-attempts-20", {**PULL, "max_attempts": 20}, "max_attempts", 20),
    ("priority-1", {**PULL, "priority": 1}, "priority", 1),
    ("priority-10", {**PULL, "priority": 10}, "priority", 10),
    ("name-256", {**PULL, "name": "n" * 256}, "name", "n" * 256),
    ("idempotency-key-128", {**PULL, "idempotency_key": "k" * 128}, "idempotency_key", "k" * 128),
    ("backoff-linear", {**PULL, "backoff": "linear"}, "backoff", "linear"),
    ("backoff-fixed", {**PULL, "backoff": "fixed"}, "backoff", "fixed"),
    (
        "queue-128",
        {"trigger": {"type": "pull", "queue": "q" * 128}},
        "trigger",
        {"type": "pull", "queue": "q" * 128},
    ),
    (
        "delay-0",
        {**delayed(0), "enabled": False},
        "trigger",
        {"type": "delayed", "delay_seconds": 0},
    ),
    (
        "delay-30-days",
        delayed(2_592_000),
        "trigger",
        {"type": "delayed", "delay_seconds": 2_592_000},
    ),
    (
        "handler-http",
        {**delayed(3600), "handler": "http://h.example:8080/x?y=1"},
        "handler",
        "http://h.example:8080/x?y=1",
    ),
    (
        "callback-https",
        {**PULL, "callback_url": "https://cb.example/done"},
        "callback_url",
        "https://cb.example/done",
    ),
    (
        "timezone-paris",
        scheduled("0 9 * * 1-5", "Europe/Paris"),
        "trigger",
        {"type": "scheduled", "schedule": "0 9 * * 1-5", "timezone": "Europe/Paris"},
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "value"), [c[1:] for c in GOOD_EDGES], ids=[c[0] for c in GOOD_EDGES]
)
async def test_values_at_the_edges_are_accepted(
    api: httpx.AsyncClient, body: dict[str, Any], field: str, value: Any
) -> None:
    job = await create(api, body)
    assert job[field] == value
    stored = (await api.get(f"/infra/jobs/{job['id']}")).json()
    assert stored[field] == value


def sized_payload(total: int) -> str:
    """A JSON string payload whose encoding is exactly ``total`` bytes."""
    return "x" * (total - 2)


async def test_payload_of_256_kib_is_accepted(api: httpx.AsyncClient) -> None:
    job = await create(api, {**PULL, "payload": sized_payload(MAX_PAYLOAD)})
    assert len(job["payload"]) == MAX_PAYLOAD - 2


async def test_payload_over_256_kib_is_413(api: httpx.AsyncClient) -> None:
    body = {**PULL, "payload": sized_payload(MAX_PAYLOAD + 1)}
    response = await api.post("/infra/jobs", json=body)
    assert_invalid(response, "$.payload", status=413)
    assert await job_ids(api) == []


def padded_body(total: int) -> bytes:
    """A valid pull-job body padded with JSON whitespace to exactly ``total`` bytes."""
    head, tail = b'{"trigger": {"type": "pull", "queue": "q"}', b"}"
    return head + b" " * (total - len(head) - len(tail)) + tail


JSON = {"content-type": "application/json"}


async def test_body_of_1_mib_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post("/infra/jobs", content=padded_body(MAX_BODY), headers=JSON)
    assert response.status_code == 202, response.text


async def test_body_over_1_mib_is_413(api: httpx.AsyncClient) -> None:
    response = await api.post("/infra/jobs", content=padded_body(MAX_BODY + 1), headers=JSON)
    error_of(response, 413, "payload_too_large")
    assert await job_ids(api) == []


async def test_chunked_body_over_1_mib_is_413(api: httpx.AsyncClient) -> None:
    body = padded_body(MAX_BODY + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await api.post("/infra/jobs", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    error_of(response, 413, "payload_too_large")
    assert await job_ids(api) == []


@pytest.mark.parametrize("content", [b'{"trigger": ', b"not json", b"", b"   ", b"\xff\xfe"])
async def test_malformed_json_is_400(api: httpx.AsyncClient, content: bytes) -> None:
    response = await api.post("/infra/jobs", content=content, headers=JSON)
    error_of(response, 400, "bad_request")
    assert await job_ids(api) == []


@pytest.mark.parametrize(
    "media", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_non_json_content_type_is_415(api: httpx.AsyncClient, media: str) -> None:
    response = await api.post(
        "/infra/jobs",
        content=b'{"trigger": {"type": "pull", "queue": "q"}}',
        headers={"content-type": media},
    )
    error_of(response, 415, "unsupported_media_type")
    assert await job_ids(api) == []


async def test_json_with_charset_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/infra/jobs",
        content=b'{"trigger": {"type": "pull", "queue": "q"}}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 202, response.text


# ----------------------------------------------------------------------------- batch


def pulls(count: int) -> list[dict[str, Any]]:
    return [{**PULL, "name": f"job-{index}"} for index in range(count)]


async def test_batch_of_100_creates_all_in_order(api: httpx.AsyncClient) -> None:
    response = await api.post("/infra/jobs/batch", json={"jobs": pulls(100)})
    assert response.status_code == 202, response.text
    jobs = response.json()["jobs"]
    assert [job["name"] for job in jobs] == [f"job-{index}" for index in range(100)]
    assert len({job["id"] for job in jobs}) == 100
    assert sorted(await job_ids(api)) == sorted(job["id"] for job in jobs)


async def test_batch_of_one(api: httpx.AsyncClient) -> None:
    response = await api.post("/infra/jobs/batch", json={"jobs": [LATER]})
    assert response.status_code == 202, response.text
    [job] = response.json()["jobs"]
    assert job["status"] == "pending"
    assert await job_ids(api) == [job["id"]]


@pytest.mark.parametrize(
    "body",
    [{"jobs": []}, {"jobs": pulls(101)}, {"jobs": PULL}, {"jobs": None}, {}],
    ids=["empty", "101", "object", "null", "missing"],
)
async def test_batch_size_and_shape_are_checked(
    api: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await api.post("/infra/jobs/batch", json=body)
    assert_invalid(response, "$.jobs")
    assert await job_ids(api) == []


BAD_ITEMS: list[tuple[str, int, dict[str, Any], str, int]] = [
    ("priority", 1, {**PULL, "priority": 0}, "$.jobs[1].priority", 400),
    ("type", 2, {**PULL, "enabled": "yes"}, "$.jobs[2].enabled", 400),
    ("handler", 2, {"trigger": {"type": "immediate"}}, "$.jobs[2].handler", 400),
    ("cron", 0, scheduled("* * *"), "$.jobs[0].trigger.schedule", 400),
    ("timezone", 1, scheduled("0 0 1 1 *", "Nowhere/Land"), "$.jobs[1].trigger.timezone", 400),
    ("payload", 1, {**PULL, "payload": sized_payload(MAX_PAYLOAD + 1)}, "$.jobs[1].payload", 413),
]


@pytest.mark.parametrize(
    ("index", "item", "path", "status"), [c[1:] for c in BAD_ITEMS], ids=[c[0] for c in BAD_ITEMS]
)
async def test_one_bad_item_refuses_the_whole_batch(
    api: httpx.AsyncClient, index: int, item: dict[str, Any], path: str, status: int
) -> None:
    items = pulls(3)
    items[index] = item
    response = await api.post("/infra/jobs/batch", json={"jobs": items})
    assert_invalid(response, path, status)
    assert await job_ids(api) == []


async def test_a_batch_of_one_bad_item_names_its_index(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/infra/jobs/batch", json={"jobs": [{"trigger": {"type": "immediate"}}]}
    )
    assert_invalid(response, "$.jobs[0].handler")
    assert await job_ids(api) == []


async def test_batch_over_1_mib_is_413_even_with_small_payloads(api: httpx.AsyncClient) -> None:
    items = [{**PULL, "payload": sized_payload(MAX_PAYLOAD - 100)} for _ in range(5)]
    response = await api.post("/infra/jobs/batch", json={"jobs": items})
    error_of(response, 413, "payload_too_large")
    assert await job_ids(api) == []


async def test_batch_repeating_an_idempotency_key_is_refused(api: httpx.AsyncClient) -> None:
    items = [{**PULL, "idempotency_key": "same"}, {**PULL, "idempotency_key": "same"}]
    response = await api.post("/infra/jobs/batch", json={"jobs": items})
    error_of(response, 400, "bad_request")
    assert await job_ids(api) == []


async def test_batch_returns_the_existing_job_for_a_known_idempotency_key(
    api: httpx.AsyncClient,
) -> None:
    first = await create(api, {**PULL, "idempotency_key": "k1"})
    items = [{**PULL, "name": "new"}, {**PULL, "idempotency_key": "k1", "name": "ignored"}]
    response = await api.post("/infra/jobs/batch", json={"jobs": items})
    assert response.status_code == 202, response.text
    fresh, existing = response.json()["jobs"]
    assert existing == first
    assert fresh["name"] == "new" and fresh["id"] != first["id"]
    assert sorted(await job_ids(api)) == sorted([first["id"], fresh["id"]])
