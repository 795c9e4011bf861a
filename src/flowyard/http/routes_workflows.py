"""``/infra/workflows``: blueprints, triggers, executions, their events and controls."""

from typing import Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.clock import rfc3339
from flowyard.errors import Invalid, NotFound
from flowyard.http.body import query_choice, query_int, query_str, read_json, read_no_fields
from flowyard.http.context import caller, charge_read
from flowyard.http.respond import json_response
from flowyard.storage import workflows as store
from flowyard.storage.workflows import Blueprint
from flowyard.workflows.blueprint import BlueprintSpec
from flowyard.workflows.signals import MAX_DATA_BYTES
from flowyard.workflows.state import (
    CancelExecution,
    Event,
    ExecutionState,
    ExecutionStatus,
    ItemState,
    MapProgress,
    PauseExecution,
    ResumeExecution,
)

STATUSES = frozenset(s.value for s in ExecutionStatus)
BOOLEANS = frozenset({"true", "false"})


class TriggerBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/workflows/blueprints/{id}/trigger``."""

    input_data: dict[str, Any] = {}
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class ResumeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/workflows/executions/{id}/resume``."""

    step_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    override_output: Any | msgspec.UnsetType = msgspec.UNSET
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class SignalBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/workflows/executions/{id}/signals``."""

    name: Annotated[str, Meta(min_length=1, max_length=128)]
    data: Any = None
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


def blueprint_view(blueprint: Blueprint) -> dict[str, Any]:
    """A blueprint as the API shows it."""
    return {
        "id": blueprint.id,
        "project_id": blueprint.project_id,
        "name": blueprint.name,
        "description": blueprint.description,
        "steps": blueprint.steps,
        "max_duration_sec": blueprint.max_duration_sec,
        "created_at": rfc3339(blueprint.created_at),
        "archived_at": rfc3339(blueprint.archived_at),
    }


def execution_view(state: ExecutionState) -> dict[str, Any]:
    """An execution as the API shows it."""
    return {
        "id": state.id,
        "blueprint_id": state.blueprint_id,
        "project_id": state.project_id,
        "status": state.status,
        "input_data": state.input_data,
        "result": {s.step_id: s.output for s in state.steps.values() if s.status == "completed"},
        "error": state.error,
        "idempotency_key": state.idempotency_key,
        "started_at": rfc3339(state.started_at),
        "completed_at": rfc3339(state.completed_at),
        "cancelled_at": rfc3339(state.cancelled_at),
        "paused_at": rfc3339(state.paused_at),
        "pause_reason": state.pause_reason,
        "resumed_at": rfc3339(state.resumed_at),
        "deadline_at": rfc3339(state.deadline_at),
        "parent": parent_view(state),
        "steps": [
            {
                "step_id": s.step_id,
                "status": s.status,
                "job_id": s.job_id,
                "attempt": s.attempt,
                "output": s.output,
                "error": s.error,
                "started_at": rfc3339(s.started_at),
                "completed_at": rfc3339(s.completed_at),
                "caught_by": s.caught_by,
                "skip_reason": s.skip_reason,
                "signal": s.signal,
                "signal_id": s.signal_id,
                "child_execution_id": s.child_execution_id,
                "items": item_counts(s.items),
            }
            for s in state.steps.values()
        ],
    }


def item_counts(progress: MapProgress | None) -> dict[str, int] | None:
    """A for_each step's item counts as the API shows them (None for other steps)."""
    if progress is None:
        return None
    return {
        "total": progress.total,
        "completed": progress.completed,
        "failed": progress.failed,
        "running": progress.running,
        "queued": progress.queued,
        "cancelled": progress.cancelled,
    }


def item_view(item: ItemState) -> dict[str, Any]:
    """One item of a for_each step."""
    return {
        "index": item.index,
        "status": item.status,
        "job_id": item.job_id,
        "child_execution_id": item.child_execution_id,
        "attempt": item.attempt,
        "output": item.output,
        "error": item.error,
        "started_at": rfc3339(item.started_at),
        "completed_at": rfc3339(item.completed_at),
    }


def parent_view(state: ExecutionState) -> dict[str, Any] | None:
    """The step (and for_each item) whose child the execution is, or None."""
    ref = state.parent
    if ref is None:
        return None
    view: dict[str, Any] = {"execution_id": ref.execution_id, "step_id": ref.step_id}
    if ref.item_index is not None:  # only a for_each item's child says which item it runs
        view["item_index"] = ref.item_index
    return view


def event_view(seq: int, event: Event) -> dict[str, Any]:
    """One event of the log. The log keeps times as epoch milliseconds (``replay`` reads them
    back), so the ``deadline_at`` of ``resumed`` and ``timed_out`` is shown here in RFC 3339,
    like every other time of the API, whenever the event was written."""
    data = event.data
    for field in ("deadline_at", "timeout_at"):
        if isinstance(data.get(field), int):
            data = {**data, field: rfc3339(data[field])}
    return {
        "seq": seq,
        "at": rfc3339(event.at),
        "type": event.type,
        "step_id": event.step_id,
        "data": data,
    }


async def create_blueprint(request: Request) -> Response:
    runtime, key = await caller(request, "workflows:write")
    spec = await read_json(request, BlueprintSpec)
    blueprint = await runtime.workflows.blueprints.create(key.project_id, spec)
    return json_response(blueprint_view(blueprint))


async def list_blueprints(request: Request) -> Response:
    runtime, key = await caller(request, "workflows:read")
    blueprints, next_cursor = await store.list_blueprints(
        runtime.db,
        key.project_id,
        name=query_str(request, "name", 256),
        archived=query_choice(request, "archived", BOOLEANS) == "true",
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    items = [
        {
            "id": b.id,
            "name": b.name,
            "description": b.description,
            "created_at": rfc3339(b.created_at),
            "archived_at": rfc3339(b.archived_at),
        }
        for b in blueprints
    ]
    charge_read(request, runtime, key.project_id)
    return json_response({"blueprints": items, "next_cursor": next_cursor})


async def get_blueprint(request: Request) -> Response:
    runtime, key = await caller(request, "workflows:read")
    blueprint = await runtime.workflows.blueprints.get(key.project_id, request.path_params["id"])
    charge_read(request, runtime, key.project_id)
    return json_response(blueprint_view(blueprint))


async def archive_blueprint(request: Request) -> Response:
    runtime, key = await caller(request, "workflows:write")
    blueprint = await runtime.workflows.blueprints.archive(
        key.project_id, request.path_params["id"]
    )
    return json_response(blueprint_view(blueprint))


async def trigger(request: Request) -> Response:
    runtime, key = await caller(request, "workflows:write")
    blueprint = await runtime.workflows.blueprints.get(key.project_id, request.path_params["id"])
    body = await read_json(request, TriggerBody, optional=True)
    state, replayed = await runtime.workflows.trigger(
        key.project_id, blueprint.id, body.input_data, body.idempotency_key
    )
    answer = {
        "execution_id": state.id,
        "blueprint_id": state.blueprint_id,
        "status": state.status,
        "started_at": rfc3339(state.started_at),
    }
    return json_response(answer, headers={"Idempotent-Replayed": "true"} if replayed else None)


async def list_executions(request: Request) -> Response:
    runtime, key = await caller(request, "workflows:read")
    executions, next_cursor = await store.list_executions(
        runtime.db,
        project_id=key.project_id,
        blueprint_id=query_str(request, "blueprint_id", 256),
        status=query_choice(request, "status", STATUSES),
        parent_execution_id=query_str(request, "parent_execution_id", 256),
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    charge_read(request, runtime, key.project_id)
    return json_response(
        {"executions": [execution_view(e) for e in executions], "next_cursor": next_cursor}
    )


async def _execution(request: Request, scope: str) -> tuple[Any, ExecutionState]:
    runtime, key = await caller(request, scope)
    execution_id = request.path_params["id"]
    actor = runtime.workflows.actors.get(execution_id)
    state = actor.state if actor is not None else None
    if state is None or state.project_id != key.project_id:
        state = await store.get_execution(runtime.db, execution_id, key.project_id)
    if state is None:
        raise NotFound(f"execution {execution_id} not found")
    return runtime, state


async def get_execution(request: Request) -> Response:
    runtime, state = await _execution(request, "workflows:read")
    charge_read(request, runtime, state.project_id)
    return json_response(execution_view(state))


async def list_events(request: Request) -> Response:
    runtime, state = await _execution(request, "workflows:read")
    events, next_cursor = await store.list_events(
        runtime.db,
        state.id,
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    charge_read(request, runtime, state.project_id)
    return json_response(
        {"events": [event_view(seq, e) for seq, e in events], "next_cursor": next_cursor}
    )


async def list_items(request: Request) -> Response:
    runtime, state = await _execution(request, "workflows:read")
    step_id = request.path_params["step_id"]
    if step_id not in state.steps:
        raise NotFound(f"execution {state.id} has no step {step_id!r}")
    items, next_cursor = await store.list_items(
        runtime.db,
        state.id,
        step_id,
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    charge_read(request, runtime, state.project_id)
    return json_response({"items": [item_view(i) for i in items], "next_cursor": next_cursor})


async def cancel(request: Request) -> Response:
    runtime, state = await _execution(request, "workflows:write")
    await read_no_fields(request)
    new = await runtime.workflows.command(state.project_id, state.id, CancelExecution())
    return json_response(
        {"id": new.id, "status": new.status, "cancelled_at": rfc3339(new.cancelled_at)}
    )


async def pause(request: Request) -> Response:
    runtime, state = await _execution(request, "workflows:write")
    await read_no_fields(request)
    new = await runtime.workflows.command(state.project_id, state.id, PauseExecution())
    return json_response({"id": new.id, "status": new.status, "paused_at": rfc3339(new.paused_at)})


async def resume(request: Request) -> Response:
    runtime, state = await _execution(request, "workflows:write")
    body = await read_json(request, ResumeBody, optional=True)
    override = not isinstance(body.override_output, msgspec.UnsetType)
    message = ResumeExecution(
        step_id=body.step_id,
        override=override,
        output=body.override_output if override else None,
        reason=body.reason,
    )
    new = await runtime.workflows.command(state.project_id, state.id, message)
    return json_response(
        {"id": new.id, "status": new.status, "resumed_at": rfc3339(new.resumed_at)}
    )


async def signal(request: Request) -> Response:
    runtime, state = await _execution(request, "workflows:write")
    body = await read_json(request, SignalBody)
    if len(msgspec.json.encode(body.data)) > MAX_DATA_BYTES:
        message = f"over {MAX_DATA_BYTES} bytes as JSON"
        raise Invalid(f"data is {message}", [{"path": "$.data", "message": message}])
    sent, replayed = await runtime.workflows.signal(
        state.project_id, state.id, body.name, body.data, body.idempotency_key
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return json_response(msgspec.to_builtins(sent), headers=headers)


routes = [
    Route("/infra/workflows/blueprints", create_blueprint, methods=["POST"]),
    Route("/infra/workflows/blueprints", list_blueprints, methods=["GET"]),
    Route("/infra/workflows/blueprints/{id}", get_blueprint, methods=["GET"]),
    Route("/infra/workflows/blueprints/{id}", archive_blueprint, methods=["DELETE"]),
    Route("/infra/workflows/blueprints/{id}/trigger", trigger, methods=["POST"]),
    Route("/infra/workflows/executions", list_executions, methods=["GET"]),
    Route("/infra/workflows/executions/{id}", get_execution, methods=["GET"]),
    Route("/infra/workflows/executions/{id}/events", list_events, methods=["GET"]),
    Route("/infra/workflows/executions/{id}/steps/{step_id}/items", list_items, methods=["GET"]),
    Route("/infra/workflows/executions/{id}/cancel", cancel, methods=["POST"]),
    Route("/infra/workflows/executions/{id}/pause", pause, methods=["POST"]),
    Route("/infra/workflows/executions/{id}/resume", resume, methods=["POST"]),
    Route("/infra/workflows/executions/{id}/signals", signal, methods=["POST"]),
]
