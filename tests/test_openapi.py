"""``/openapi.json`` covers every route, its response Structs match the views, ``/docs`` works.

The response Structs forbid unknown fields and require every field, so decoding a real answer
into the type its route table entry names fails when a view and its Struct drift apart.
"""

import re
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx
import msgspec
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from flowyard.http import api_types as api
from flowyard.http.app import create_app
from flowyard.http.openapi import document, error_statuses
from flowyard.http.operations import NOT_API, OPERATIONS, Operation
from flowyard.settings import Settings
from tests.conftest import Service
from tests.jobs_support import PULL, create

BY_ROUTE = {(op.method, op.path): op for op in OPERATIONS}


# Kept for the whole run: its supervisor holds streams that warn when collected unclosed.
_APP = create_app(Settings(db=":memory:"))


def app_routes() -> set[tuple[str, str]]:
    """``(method, path)`` of every route of the app; ``*`` for a mount."""
    found = set()
    for route in _APP.routes:
        if isinstance(route, Route):
            found |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
        elif isinstance(route, Mount):
            found.add(("*", route.path))
    return found


def test_every_app_route_has_an_entry_and_every_entry_a_route() -> None:
    routes = {(m, p) for m, p in app_routes() if p not in NOT_API}
    assert routes - BY_ROUTE.keys() == set(), "add these routes to http/operations.py"
    assert BY_ROUTE.keys() - routes == set(), "these entries have no route"
    assert {p for _, p in app_routes()} >= NOT_API


def test_document_is_valid_openapi_3_1() -> None:
    spec = document()
    validate(spec)  # type: ignore[arg-type]
    assert spec["openapi"] == "3.1.0"
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert set(spec["components"]["schemas"]["Error"]["required"]) == {"code", "message"}


def test_document_describes_statuses_parameters_and_auth() -> None:
    paths = document()["paths"]
    assert set(paths["/infra/jobs"]["post"]["responses"]) >= {"202", "400", "401", "402", "403"}
    assert "202" in paths["/infra/jobs/{job_id}/trigger"]["post"]["responses"]
    listed = {p["name"]: p["schema"] for p in paths["/infra/jobs"]["get"]["parameters"]}
    assert listed["limit"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 25}
    assert listed["status"] == {"$ref": "#/components/schemas/JobStatus"}
    assert set(listed["trigger_type"]["enum"]) == {
        "immediate",
        "delayed",
        "scheduled",
        "queue",
        "pull",
    }
    callback = paths["/infra/jobs/{job_id}/runs/{run_id}/callback"]["post"]
    assert callback["security"] == []
    assert {p["name"] for p in callback["parameters"]} == {"job_id", "run_id", "sig"}
    assert "401" not in callback["responses"]
    assert paths["/livez"]["get"]["security"] == []


def test_error_statuses_follow_from_the_entry() -> None:
    op = Operation("GET", "/x/{id}", "x", api.Health, "jobs:read", query=())
    assert error_statuses(op) == [401, 403, 404, 429, 503]
    admin = Operation("POST", "/admin/x", "x", api.Health, auth="admin", body=api.Health)
    assert error_statuses(admin) == [400, 401, 403, 413, 415, 503]


class Checker:
    """Calls routes by their table entry and decodes each answer into the entry's type."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def __call__(self, method: str, template: str, json: Any = None, **path: str) -> Any:
        op = BY_ROUTE[(method, template)]
        url = template.format(**path)
        response = await self.client.request(method, url, json=json)
        assert response.status_code == op.status, response.text
        return msgspec.json.decode(response.content, type=op.response, strict=True)


async def test_answers_decode_into_the_documented_types(service: Service) -> None:
    call = Checker(service.client)
    job = await call("POST", "/infra/jobs", PULL)
    await call("POST", "/infra/jobs/batch", {"jobs": [PULL]})
    await call("GET", "/infra/jobs")
    await call("GET", "/infra/jobs/{job_id}", job_id=job.id)
    await call("PATCH", "/infra/jobs/{job_id}", {"payload": [1]}, job_id=job.id)
    [claimed, *_] = await call("POST", "/infra/jobs/claim", {"queue": "q", "count": 2})
    token = {"claim_token": claimed.claim_token}
    await call("POST", "/infra/jobs/{job_id}/heartbeat", token, job_id=claimed.id)
    body = {"status": "failed", "error": "no", "retryable": False, **token}
    failed = await call("POST", "/infra/jobs/{job_id}/ack", body, job_id=claimed.id)
    await call("POST", "/infra/jobs/{job_id}/retry", job_id=failed.id)
    await call("DELETE", "/infra/jobs/{job_id}", job_id=failed.id)
    await call("GET", "/infra/jobs/{job_id}/runs", job_id=failed.id)
    await call("GET", "/infra/jobs/signing-secret")
    await call("POST", "/infra/jobs/signing-secret/rotate")
    await call("PUT", "/infra/queues/{name}", {"concurrency": 2}, name="q")
    await call("GET", "/infra/queues")

    step = {"id": "a", "job_trigger": {"trigger": {"type": "pull", "queue": "wf"}}}
    blueprint = await call("POST", "/infra/workflows/blueprints", {"name": "b", "steps": [step]})
    await call("GET", "/infra/workflows/blueprints")
    await call("GET", "/infra/workflows/blueprints/{id}", id=blueprint.id)
    started = await call("POST", "/infra/workflows/blueprints/{id}/trigger", {}, id=blueprint.id)
    execution = {"id": started.execution_id}
    await call("GET", "/infra/workflows/executions")
    await call("GET", "/infra/workflows/executions/{id}", **execution)
    await call("POST", "/infra/workflows/executions/{id}/pause", **execution)
    await call("POST", "/infra/workflows/executions/{id}/resume", {}, **execution)
    signal = {"name": "go", "data": {"n": 1}, "idempotency_key": "k"}
    await call("POST", "/infra/workflows/executions/{id}/signals", signal, **execution)
    await call("POST", "/infra/workflows/executions/{id}/cancel", **execution)
    await call("GET", "/infra/workflows/executions/{id}/events", **execution)
    await call(
        "GET", "/infra/workflows/executions/{id}/steps/{step_id}/items", **execution, step_id="a"
    )
    mapped = {
        **step,
        "id": "m",
        "for_each": "{{input.xs}}",
        "max_concurrency": 2,
        "payload_template": {"x": "{{item}}", "i": "{{item_index}}"},
    }
    blueprint = await call("POST", "/infra/workflows/blueprints", {"name": "m", "steps": [mapped]})
    started = await call(
        "POST",
        "/infra/workflows/blueprints/{id}/trigger",
        {"input_data": {"xs": [1, 2, 3]}},
        id=blueprint.id,
    )
    execution = {"id": started.execution_id}
    await call("GET", "/infra/workflows/executions/{id}", **execution)
    await call(
        "GET", "/infra/workflows/executions/{id}/steps/{step_id}/items", **execution, step_id="m"
    )
    items = await call("POST", "/infra/jobs/claim", {"queue": "wf", "count": 5})
    assert [j.workflow.item_index for j in items] == [0, 1]

    await call("GET", "/core/tokens/balance")
    await call("GET", "/core/tokens/usage")
    for path in ("/livez", "/readyz", "/healthz", "/openapi.json"):
        await call("GET", path)


async def test_schedule_answers_decode_into_the_documented_types(service: Service) -> None:
    call = Checker(service.client)
    step = {"id": "a", "job_trigger": {"trigger": {"type": "pull", "queue": "sched"}}}
    blueprint = await call("POST", "/infra/workflows/blueprints", {"name": "b", "steps": [step]})
    body = {"blueprint_id": blueprint.id, "schedule": "0 0 1 1 *", "timezone": "Asia/Tokyo"}
    schedule = await call("POST", "/infra/workflows/schedules", body)
    one = {"id": schedule.id}
    await call("GET", "/infra/workflows/schedules")
    await call("GET", "/infra/workflows/schedules/{id}", **one)
    await call("PATCH", "/infra/workflows/schedules/{id}", {"enabled": False}, **one)
    await call("POST", "/infra/workflows/schedules/{id}/trigger", **one)
    fired = await call("GET", "/infra/workflows/schedules/{id}", **one)
    assert fired.last_execution_id is not None and fired.next_fire_at is None
    await call("DELETE", "/infra/workflows/schedules/{id}", **one)
    paths = document()["paths"]
    assert paths["/infra/workflows/schedules"]["post"]["tags"] == ["schedules"]
    assert set(paths["/infra/workflows/schedules/{id}"]["patch"]["responses"]) >= {
        "200",
        "400",
        "402",
        "403",
        "404",
        "409",
    }


async def test_parent_and_child_executions_decode_into_the_documented_types(
    service: Service,
) -> None:
    call = Checker(service.client)
    step = {"id": "a", "job_trigger": {"trigger": {"type": "pull", "queue": "wf-child"}}}
    child = await call("POST", "/infra/workflows/blueprints", {"name": "c", "steps": [step]})
    sub = {"id": "s", "sub_workflow": {"blueprint_id": child.id, "input": {}}}
    parent = await call("POST", "/infra/workflows/blueprints", {"name": "p", "steps": [sub]})
    started = await call("POST", "/infra/workflows/blueprints/{id}/trigger", {}, id=parent.id)
    state = await call("GET", "/infra/workflows/executions/{id}", id=started.execution_id)
    assert state.parent is None
    child_id = state.steps[0].child_execution_id
    assert child_id is not None
    kid = await call("GET", "/infra/workflows/executions/{id}", id=child_id)
    assert kid.parent == api.ParentStep(started.execution_id, "s", None)
    spec = document()["paths"]["/infra/workflows/executions"]["get"]["parameters"]
    assert "parent_execution_id" in {p["name"] for p in spec}
    listed = await service.client.get(
        f"/infra/workflows/executions?parent_execution_id={started.execution_id}"
    )
    page = msgspec.json.decode(listed.content, type=api.ExecutionList, strict=True)
    assert [e.id for e in page.executions] == [child_id]


async def test_admin_answers_decode_into_the_documented_types(service: Service) -> None:
    admin_key = await anyio.to_thread.run_sync(lambda: service.new_key("ops", admin=True))
    async with service.client_for(admin_key) as client:
        call = Checker(client)
        await create(service.client, PULL)
        project = await call("POST", "/admin/projects", {"name": "made"})
        await call("GET", "/admin/projects")
        await call("GET", "/admin/projects/{id}", id=project.id)
        body = {"rate_limit_rps": 50, "token_balance": "12.5"}
        await call("PATCH", "/admin/projects/{id}", body, id=project.id)
        key = await call("POST", "/admin/keys", {"project_id": project.id, "name": "k"})
        await call("GET", "/admin/keys")
        await call("DELETE", "/admin/keys/{id}", id=key.id)
        await call("GET", "/admin/jobs")
        await call("GET", "/admin/executions")
        await call("GET", "/admin/stats")
        await call("GET", "/admin/cluster")


async def test_errors_decode_into_the_error_type(service: Service) -> None:
    missing = await service.client.get("/infra/jobs/job_nope")
    assert msgspec.json.decode(missing.content, type=api.Error).code == "not_found"
    invalid = await service.client.post("/infra/jobs", json={"trigger": {"type": "nope"}})
    error = msgspec.json.decode(invalid.content, type=api.Error)
    assert error.code == "bad_request" and error.details


async def test_openapi_and_docs_need_no_key(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.url) as anonymous:
        spec = await anonymous.get("/openapi.json")
        assert spec.status_code == 200
        assert spec.headers["content-type"] == "application/json"
        page = await anonymous.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        base = f"{service.url}/docs"
        assets = re.findall(r'(?:href|src|data-spec-url)="([^"]+)"', page.text)
        kinds = {urljoin(base, ref): ref.rsplit(".", 1)[-1] for ref in assets}
        assert sorted(kinds.values()) == ["css", "js", "js", "json"]
        for url, kind in kinds.items():
            answer = await anonymous.get(url)
            assert answer.status_code == 200, url
            expected = {"css": "text/css", "js": "javascript", "json": "application/json"}[kind]
            assert expected in answer.headers["content-type"], (url, answer.headers)
        for name in ("LICENSE", "NOTICE"):
            assert (await anonymous.get(f"/docs/assets/{name}")).status_code == 200


def test_step_conditions_are_documented() -> None:
    schemas = document()["components"]["schemas"]
    when = schemas["Step"]["properties"]["when"]
    assert when["anyOf"][0]["maxLength"] == 4096
    assert "CEL" in when["anyOf"][0]["description"]
    assert "skip_reason" in schemas["ExecutionStep"]["required"]
    assert "condition_false" in str(schemas["ExecutionStep"]["properties"]["skip_reason"])
