"""``/admin``: projects, keys, every project's jobs, executions and counts, and the cluster.

Admin keys only (any other key is 403). These routes cost no tokens and are not rate-limited.
A project's settings changed here are committed before the answer and apply at once; a key
revoked here is refused at once.
"""

from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.actors.supervisor import Supervisor
from flowyard.billing import format_tokens, parse_tokens
from flowyard.clock import now_ms, rfc3339
from flowyard.cluster.view import ClusterState
from flowyard.errors import Conflict, NotFound, invalid_field
from flowyard.http.body import query_choice, query_int, query_str, read_json
from flowyard.http.context import admin_caller, context_of
from flowyard.http.respond import json_response
from flowyard.http.routes_jobs import STATUSES as JOB_STATUSES
from flowyard.http.routes_jobs import TRIGGER_TYPES
from flowyard.http.routes_workflows import STATUSES as EXECUTION_STATUSES
from flowyard.http.routes_workflows import execution_view
from flowyard.jobs.model import JobStatus, job_view
from flowyard.storage import jobs as job_store
from flowyard.storage import projects as store
from flowyard.storage import stats
from flowyard.storage import workflows as workflow_store
from flowyard.storage.projects import ALL_SCOPES, ApiKey, Project
from flowyard.workflows.state import ExecutionStatus

Scope = Literal[
    "jobs:read",
    "jobs:write",
    "workflows:read",
    "workflows:write",
    "webhooks:read",
    "webhooks:write",
    "*",
]
TokenAmount = Annotated[
    msgspec.Raw,
    Meta(
        description="tokens as a JSON number or a decimal string (at most 9 decimals), "
        "or null for unlimited",
        extra_json_schema={
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}, {"type": "null"}]
        },
    ),
]


class ProjectBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /admin/projects``."""

    name: Annotated[str, Meta(min_length=1, max_length=256)]


class ProjectPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /admin/projects/{id}``: any of the two settings; null removes a limit."""

    rate_limit_rps: Annotated[float, Meta(gt=0, le=1_000_000)] | None | msgspec.UnsetType = (
        msgspec.UNSET
    )
    token_balance: TokenAmount | msgspec.UnsetType = msgspec.UNSET


class KeyBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /admin/keys``."""

    project_id: Annotated[str, Meta(min_length=1, max_length=256)]
    name: Annotated[str, Meta(max_length=256)] = ""
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=7)] = msgspec.field(
        default_factory=lambda: [cast(Scope, scope) for scope in ALL_SCOPES]
    )
    admin: bool = False


# ------------------------------------------------------------------------------ views


async def project_view(runtime: Supervisor, project: Project) -> dict[str, Any]:
    """A project with the balance and rate limit in force (memory holds unwritten charges)."""
    accounts = runtime.accounts
    await accounts.load(project.id)
    balance = accounts.balance(project.id)
    return {
        "id": project.id,
        "name": project.name,
        "rate_limit_rps": accounts.rate(project.id),
        "token_balance": None if balance is None else format_tokens(balance),
        "created_at": rfc3339(project.created_at),
    }


def key_view(key: ApiKey, last_used_at: int | None) -> dict[str, Any]:
    """A key record, never its secret or hash."""
    return {
        "id": key.id,
        "project_id": key.project_id,
        "name": key.name,
        "scopes": key.scopes,
        "admin": key.admin,
        "created_at": rfc3339(key.created_at),
        "last_used_at": rfc3339(last_used_at),
        "revoked_at": rfc3339(key.revoked_at),
    }


def _page(request: Request) -> dict[str, Any]:
    return {
        "cursor": query_str(request, "cursor", 512),
        "limit": query_int(request, "limit", 25, 1, 100),
    }


async def _project(runtime: Supervisor, project_id: str) -> Project:
    project = await store.get_project(runtime.db, project_id)
    if project is None:
        raise NotFound(f"project {project_id} not found")
    return project


def _tokens(raw: msgspec.Raw) -> int | None:
    text = bytes(raw).decode().strip()
    if text == "null":
        return None
    try:
        return parse_tokens(msgspec.json.decode(text, type=str) if text[:1] == '"' else text)
    except ValueError as exc:
        raise invalid_field("$.token_balance", str(exc)) from None


# ----------------------------------------------------------------------------- projects


async def create_project(request: Request) -> Response:
    runtime = await admin_caller(request)
    body = await read_json(request, ProjectBody)
    project = await store.create_project(runtime.db, body.name)
    if project is None:
        raise Conflict(f"a project named {body.name!r} already exists")
    return json_response(await project_view(runtime, project))


async def list_projects(request: Request) -> Response:
    runtime = await admin_caller(request)
    projects, next_cursor = await store.list_projects(runtime.db, **_page(request))
    items = [await project_view(runtime, project) for project in projects]
    return json_response({"projects": items, "next_cursor": next_cursor})


async def get_project(request: Request) -> Response:
    runtime = await admin_caller(request)
    project = await _project(runtime, request.path_params["id"])
    return json_response(await project_view(runtime, project))


async def patch_project(request: Request) -> Response:
    runtime = await admin_caller(request)
    project = await _project(runtime, request.path_params["id"])
    body = await read_json(request, ProjectPatch)
    balance = (
        body.token_balance
        if isinstance(body.token_balance, msgspec.UnsetType)
        else _tokens(body.token_balance)
    )
    accounts = runtime.accounts
    await accounts.load(project.id)  # so that the settings not changed here stay as stored
    ops = []
    if not isinstance(body.rate_limit_rps, msgspec.UnsetType):
        ops.append(accounts.set_rate(project.id, body.rate_limit_rps))
    if not isinstance(balance, msgspec.UnsetType):
        ops.append(accounts.set_balance(project.id, balance))
    await accounts.commit_settings(project.id, ops)
    return json_response(await project_view(runtime, project))


# ----------------------------------------------------------------------------- keys


async def list_keys(request: Request) -> Response:
    runtime = await admin_caller(request)
    keys, next_cursor = await store.list_keys(
        runtime.db, project_id=query_str(request, "project_id", 256), **_page(request)
    )
    seen = context_of(request).authenticate
    items = [key_view(key, seen.last_used(key)) for key in keys]
    return json_response({"keys": items, "next_cursor": next_cursor})


async def create_key(request: Request) -> Response:
    runtime = await admin_caller(request)
    body = await read_json(request, KeyBody)
    project = await _project(runtime, body.project_id)
    scopes = list(dict.fromkeys(body.scopes))
    created, insert = store.new_key(
        project.id, scopes, admin=body.admin, name=body.name or project.name
    )
    await runtime.db.commit([insert])
    record = created.record
    return json_response(
        {
            "id": record.id,
            "key": created.key,
            "project_id": record.project_id,
            "name": record.name,
            "scopes": record.scopes,
            "created_at": rfc3339(record.created_at),
        }
    )


async def revoke_key(request: Request) -> Response:
    """Revoke a key; revoking a revoked key changes nothing and answers the same record."""
    runtime = await admin_caller(request)
    key_id = request.path_params["id"]
    key = await store.get_key(runtime.db, key_id)
    if key is None:
        raise NotFound(f"key {key_id} not found")
    authenticate = context_of(request).authenticate
    if key.revoked_at is None:
        await runtime.db.commit([store.revoke_key(key_id, now_ms())])
        authenticate.forget()
        key = await store.get_key(runtime.db, key_id) or key
    return json_response(key_view(key, authenticate.last_used(key)))


# ----------------------------------------------------------------- across projects


async def list_jobs(request: Request) -> Response:
    runtime = await admin_caller(request)
    jobs, next_cursor = await job_store.list_jobs(
        runtime.db,
        project_id=query_str(request, "project_id", 256),
        status=query_choice(request, "status", JOB_STATUSES),
        trigger_type=query_choice(request, "trigger_type", TRIGGER_TYPES),
        queue=query_str(request, "queue", 128),
        **_page(request),
    )
    items = [{**job_view(job), "project_id": job.project_id} for job in jobs]
    return json_response({"jobs": items, "next_cursor": next_cursor})


async def list_executions(request: Request) -> Response:
    runtime = await admin_caller(request)
    executions, next_cursor = await workflow_store.list_executions(
        runtime.db,
        project_id=query_str(request, "project_id", 256),
        blueprint_id=query_str(request, "blueprint_id", 256),
        status=query_choice(request, "status", EXECUTION_STATUSES),
        **_page(request),
    )
    items = [execution_view(execution) for execution in executions]
    return json_response({"executions": items, "next_cursor": next_cursor})


async def get_stats(request: Request) -> Response:
    """Jobs and executions per project and status (every status, zeros included)."""
    runtime = await admin_caller(request)
    project_id = query_str(request, "project_id", 256)
    jobs = await stats.status_counts(runtime.db, "jobs", project_id)
    executions = await stats.status_counts(runtime.db, "executions", project_id)
    items = [
        {
            "project_id": pid,
            "executions": {s.value: executions.get(pid, {}).get(s, 0) for s in ExecutionStatus},
            "jobs": {s.value: jobs.get(pid, {}).get(s, 0) for s in JobStatus},
        }
        for pid in await stats.project_ids(runtime.db, project_id)
    ]
    return json_response({"projects": items})


# ------------------------------------------------------------------------------ cluster


def cluster_view(state: ClusterState) -> dict[str, Any]:
    """The nodes and the shards' ownership, with times as the rest of the API shows them."""
    nodes = [
        {
            "node_id": node.node_id,
            "url": node.url,
            "started_at": rfc3339(node.started_at),
            "last_seen_at": rfc3339(node.last_seen_at),
            "shards": sorted(node.shards),
        }
        for node in state.nodes
    ]
    shards = {"total": state.shards["total"], "unowned": state.shards["unowned"]}
    return {"nodes": nodes, "shards": shards}


async def get_cluster(request: Request) -> Response:
    """The cluster's nodes, as the database has them (this node alone for a single server)."""
    runtime = await admin_caller(request)
    return json_response(cluster_view(await runtime.cluster.state()))


routes = [
    Route("/admin/projects", create_project, methods=["POST"]),
    Route("/admin/projects", list_projects, methods=["GET"]),
    Route("/admin/projects/{id}", get_project, methods=["GET"]),
    Route("/admin/projects/{id}", patch_project, methods=["PATCH"]),
    Route("/admin/keys", list_keys, methods=["GET"]),
    Route("/admin/keys", create_key, methods=["POST"]),
    Route("/admin/keys/{id}", revoke_key, methods=["DELETE"]),
    Route("/admin/jobs", list_jobs, methods=["GET"]),
    Route("/admin/executions", list_executions, methods=["GET"]),
    Route("/admin/stats", get_stats, methods=["GET"]),
    Route("/admin/cluster", get_cluster, methods=["GET"]),
]
