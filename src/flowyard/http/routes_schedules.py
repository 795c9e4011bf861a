"""``/infra/workflows/schedules``: blueprints triggered on a cron schedule."""

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.clock import rfc3339
from flowyard.http.body import query_int, query_str, read_json, read_no_fields
from flowyard.http.context import caller, charge_read
from flowyard.http.respond import json_response
from flowyard.http.schemas import ScheduleBody, SchedulePatch
from flowyard.storage import schedules as store
from flowyard.workflows.schedules import schedule_view

READ, WRITE = "workflows:read", "workflows:write"


async def create_schedule(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    body = await read_json(request, ScheduleBody)
    schedule = await runtime.schedules.create(key.project_id, msgspec.structs.asdict(body))
    return json_response(schedule_view(schedule))


async def list_schedules(request: Request) -> Response:
    runtime, key = await caller(request, READ)
    schedules, next_cursor = await store.list_schedules(
        runtime.db,
        key.project_id,
        blueprint_id=query_str(request, "blueprint_id", 256),
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    charge_read(request, runtime, key.project_id)
    return json_response(
        {"schedules": [schedule_view(s) for s in schedules], "next_cursor": next_cursor}
    )


async def get_schedule(request: Request) -> Response:
    runtime, key = await caller(request, READ)
    schedule = runtime.schedules.require(key.project_id, request.path_params["id"])
    charge_read(request, runtime, key.project_id)
    return json_response(schedule_view(schedule))


async def patch_schedule(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    runtime.schedules.require(key.project_id, request.path_params["id"])  # 404 first
    patch = await read_json(request, SchedulePatch)
    changes: dict[str, Any] = {
        field: value
        for field, value in msgspec.structs.asdict(patch).items()
        if value is not msgspec.UNSET
    }
    schedule = await runtime.schedules.update(key.project_id, request.path_params["id"], changes)
    return json_response(schedule_view(schedule))


async def delete_schedule(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    schedule = await runtime.schedules.delete(key.project_id, request.path_params["id"])
    return json_response({"id": schedule.id, "deleted": True})


async def trigger_schedule(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    runtime.schedules.require(key.project_id, request.path_params["id"])  # 404 first
    await read_no_fields(request)
    state, replayed = await runtime.schedules.trigger(key.project_id, request.path_params["id"])
    answer = {
        "execution_id": state.id,
        "blueprint_id": state.blueprint_id,
        "status": state.status,
        "started_at": rfc3339(state.started_at),
    }
    return json_response(answer, headers={"Idempotent-Replayed": "true"} if replayed else None)


_ONE = "/infra/workflows/schedules/{id}"
routes = [
    Route("/infra/workflows/schedules", create_schedule, methods=["POST"]),
    Route("/infra/workflows/schedules", list_schedules, methods=["GET"]),
    Route(_ONE, get_schedule, methods=["GET"]),
    Route(_ONE, patch_schedule, methods=["PATCH"]),
    Route(_ONE, delete_schedule, methods=["DELETE"]),
    Route(f"{_ONE}/trigger", trigger_schedule, methods=["POST"]),
]
