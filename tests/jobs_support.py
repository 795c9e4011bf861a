"""Small helpers shared by the Jobs API tests: bodies, creation and error-shape checks."""

import itertools
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import httpx

from tests.conftest import Service

HANDLER = "http://127.0.0.1:9/hook"  # nothing listens: a delivery fails at once
PULL: dict[str, Any] = {"trigger": {"type": "pull", "queue": "q"}}
LATER: dict[str, Any] = {"trigger": {"type": "delayed", "delay_seconds": 3600}, "handler": HANDLER}
YEARLY: dict[str, Any] = {
    "trigger": {"type": "scheduled", "schedule": "0 0 1 1 *"},
    "handler": HANDLER,
}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
JOB_ID = re.compile(r"^job_[0-9A-HJKMNP-TV-Z]{26}$")
JOB_FIELDS = frozenset(
    [
        "id",
        "name",
        "trigger",
        "handler",
        "payload",
        "result",
        "status",
        "enabled",
        "priority",
        "attempt",
        "max_attempts",
        "timeout",
        "backoff",
        "idempotency_key",
        "error",
        "created_at",
        "run_at",
        "next_run_at",
        "last_run_at",
        "claimed_until",
        "completed_at",
        "callback_url",
        "workflow",
    ]
)
RUN_FIELDS = frozenset(
    [
        "id",
        "job_id",
        "scheduled_at",
        "started_at",
        "completed_at",
        "status",
        "duration_ms",
        "handler_status",
        "error",
    ]
)


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an error response's status and shape; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert "Traceback" not in response.text
    return body


def assert_invalid(response: httpx.Response, path: str, status: int = 400) -> None:
    """A 400 (or 413) whose details name ``path``."""
    code = "bad_request" if status == 400 else "payload_too_large"
    body = error_of(response, status, code)
    paths = [item["path"] for item in body["details"]]
    assert path in paths, body
    assert all(isinstance(item["message"], str) and item["message"] for item in body["details"])


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /infra/jobs and expect 202; the job."""
    response = await client.post("/infra/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def job_ids(client: httpx.AsyncClient, query: str = "") -> list[str]:
    """The ids listed by GET /infra/jobs (one page of up to 100)."""
    response = await client.get(f"/infra/jobs?limit=100{query}")
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


async def claim(client: httpx.AsyncClient, queue: str = "q") -> dict[str, Any]:
    """Claim exactly one job from a pull queue."""
    response = await client.post("/infra/jobs/claim", json={"queue": queue})
    assert response.status_code == 200, response.text
    [job] = response.json()
    return dict(job)


_projects = itertools.count(1)


@asynccontextmanager
async def project_client(
    service: Service, scopes: list[str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for a brand-new project on ``service``: it starts with no jobs at all.

    Tests share one server per module and stay isolated by using a project each.
    """
    key = await new_key(service, f"project-{next(_projects)}", scopes)
    async with service.client_for(key) as client:
        yield client


async def new_key(service: Service, project: str, scopes: list[str] | None = None) -> str:
    """``service.new_key`` off the event loop.

    It writes SQLite synchronously; on the loop it could wait on a write lock held by the
    in-process server, whose commit needs the very loop it blocks.
    """
    return await anyio.to_thread.run_sync(lambda: service.new_key(project, scopes))


def ms(stamp: str) -> int:
    """Epoch milliseconds of an API timestamp (which must be RFC 3339 with ms and Z)."""
    assert TIMESTAMP.match(stamp), stamp
    return round(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def get(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await api.get(f"/infra/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def ack(api: httpx.AsyncClient, job: dict[str, Any], status: str, **extra: Any) -> None:
    body = {"status": status, "claim_token": job["claim_token"], **extra}
    response = await api.post(f"/infra/jobs/{job['id']}/ack", json=body)
    assert response.status_code == 200, response.text
