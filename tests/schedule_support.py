"""Helpers for the workflow schedule tests: blueprints to schedule, schedules, waits."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx

from tests.workflow_support import create_blueprint, pull_step

Json = dict[str, Any]
SCHEDULES = "/infra/workflows/schedules"


def ms(stamp: str) -> int:
    """Epoch milliseconds of an RFC 3339 timestamp the API wrote."""
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def key_time(at_ms: int) -> str:
    """A slot as it appears in idempotency keys: ``2026-12-06T20:30:00Z``."""
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def scheduled_blueprint(client: httpx.AsyncClient, queue: str = "sched") -> Json:
    """A blueprint of one pull step that reads ``{{input.who}}``: its executions stay running
    until a worker takes the job."""
    step = pull_step("greet", queue, {"hello": "{{input.who}}"})
    return await create_blueprint(client, [step], name="scheduled")


async def create_schedule(client: httpx.AsyncClient, blueprint_id: str, **fields: Any) -> Json:
    """POST a schedule and insist on 200."""
    body = {"blueprint_id": blueprint_id, "schedule": "* * * * *", **fields}
    body.setdefault("input_data", {"who": "world"})
    response = await client.post(SCHEDULES, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def get_schedule(client: httpx.AsyncClient, schedule_id: str) -> Json:
    response = await client.get(f"{SCHEDULES}/{schedule_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_schedule(
    client: httpx.AsyncClient, schedule_id: str, predicate: Callable[[Json], Any]
) -> Json:
    """Poll the schedule until ``predicate`` holds (at most 10 s)."""
    found: Json = {}
    try:
        with anyio.fail_after(10):
            while not predicate(found := await get_schedule(client, schedule_id)):
                await anyio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"condition never held; last state: {found}") from None
    return found


async def executions_of(client: httpx.AsyncClient, blueprint_id: str) -> list[Json]:
    """Every execution of a blueprint, oldest first."""
    found: list[Json] = []
    cursor = None
    while True:
        query = f"blueprint_id={blueprint_id}&limit=100" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/infra/workflows/executions?{query}")
        assert response.status_code == 200, response.text
        found += response.json()["executions"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found[::-1]
