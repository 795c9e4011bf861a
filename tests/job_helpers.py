"""Small helpers for the jobs end-to-end tests: create, read and poll jobs over HTTP."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio

from tests.conftest import Service


def ms(stamp: str) -> int:
    """Epoch milliseconds of an RFC 3339 ``...Z`` timestamp as the API writes it."""
    assert stamp.endswith("Z"), stamp
    return round(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


async def create_job(service: Service, **body: Any) -> dict[str, Any]:
    """POST /infra/jobs and insist on 202."""
    response = await service.client.post("/infra/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def get_job(service: Service, job_id: str) -> dict[str, Any]:
    response = await service.client.get(f"/infra/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def list_runs(service: Service, job_id: str) -> list[dict[str, Any]]:
    """The job's runs, newest first."""
    response = await service.client.get(f"/infra/jobs/{job_id}/runs")
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["runs"]
    return runs


async def wait_job(
    service: Service,
    job_id: str,
    until: str | Callable[[dict[str, Any]], bool],
    timeout: float = 10,
) -> dict[str, Any]:
    """Poll the job until it has status ``until`` (or ``until(job)`` holds)."""
    check = until if callable(until) else (lambda job: job["status"] == until)
    with anyio.fail_after(timeout):
        while True:
            job = await get_job(service, job_id)
            if check(job):
                return job
            await anyio.sleep(0.01)


async def claim(service: Service, queue: str, **body: Any) -> list[dict[str, Any]]:
    """POST /infra/jobs/claim and insist on 200."""
    response = await service.client.post("/infra/jobs/claim", json={"queue": queue, **body})
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()
    return jobs


async def ack(service: Service, job: dict[str, Any], **body: Any) -> Any:
    """POST /infra/jobs/{id}/ack with the job's claim token unless one is given."""
    payload = {"claim_token": job.get("claim_token"), **body}
    return await service.client.post(f"/infra/jobs/{job['id']}/ack", json=payload)
