"""The route table of the HTTP API and the OpenAPI 3.1 document generated from it.

Adding a route means adding one ``Operation`` to ``OPERATIONS`` (``tests/test_openapi.py``
fails for an app route without one). Request schemas come from the msgspec types the handlers
decode with, response schemas from ``http/api_types.py``; nothing here is hand-written JSON
Schema. The error statuses an operation lists follow from its auth, body, query and path, plus
the ``errors`` it names itself.
"""

import re
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from flowyard import __version__
from flowyard.http import api_types as api
from flowyard.http.body import NoFields
from flowyard.http.routes_admin import KeyBody, ProjectBody, ProjectPatch
from flowyard.http.routes_workflows import ResumeBody, TriggerBody
from flowyard.http.schemas import (
    AckBody,
    BatchBody,
    CallbackBody,
    ClaimBody,
    HeartbeatBody,
    PublishBody,
    QueueBody,
    WebhookBody,
    WebhookPatch,
)
from flowyard.jobs.model import JobStatus, TriggerType
from flowyard.jobs.spec import JobPatch, JobSpec
from flowyard.workflows.blueprint import BlueprintSpec
from flowyard.workflows.state import ExecutionStatus

REF = "#/components/schemas/{name}"
Auth = Literal["key", "admin", "none", "signed"]
"""``key``: a project key (scope optional); ``admin``: an admin key; ``signed``: a signed URL."""

NOT_API = frozenset({"/docs", "/docs/assets", "/dashboard"})
"""App routes that are pages and files, not API operations."""


@dataclass(frozen=True)
class Param:
    """A query parameter; its msgspec type carries the range or choices the handler enforces."""

    name: str
    type: Any
    description: str
    default: Any = None
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One method on one path: what it takes, what it answers, who may call it."""

    method: str
    path: str
    summary: str
    response: Any
    scope: str | None = None
    auth: Auth = "key"
    body: Any = None
    body_optional: bool = False
    query: tuple[Param, ...] = ()
    status: int = 200
    errors: tuple[int, ...] = ()
    billed: bool = False
    description: str = ""
    makes: tuple[str, str] | None = None
    """What the answer names: a path template and the JSON pointer of its id in the answer,
    so that tools can follow an OpenAPI link to every operation under that path."""


def _text(low: int, high: int) -> Any:
    return Annotated[str, Meta(min_length=low, max_length=high)]


LIMIT = Param("limit", Annotated[int, Meta(ge=1, le=100)], "page size", default=25)
CURSOR = Param("cursor", _text(1, 512), "the `next_cursor` of the previous page")
PAGE = (LIMIT, CURSOR)

_J, _W = "jobs:write", "workflows:write"
_JR, _WR = "jobs:read", "workflows:read"
_H, _HR = "webhooks:write", "webhooks:read"
_HOOK = "/infra/webhooks/{webhook_id}"
_CLIENT = "Client writes and reads cost tokens; the pull and push protocols are free."

# fmt: off
OPERATIONS: tuple[Operation, ...] = (
    # jobs
    Operation("POST", "/infra/jobs", "Create a job", api.Job, _J, body=JobSpec, status=202,
              billed=True, description="The same `idempotency_key` returns the existing job.",
              makes=("/infra/jobs/{job_id}", "/id")),
    Operation("GET", "/infra/jobs", "List jobs, newest first", api.JobList, _JR, billed=True,
              query=(Param("status", JobStatus, "only jobs in this status"),
                     Param("trigger_type", TriggerType, "only jobs with this trigger type"),
                     Param("queue", _text(1, 128), "only jobs of this queue"), *PAGE)),
    Operation("POST", "/infra/jobs/batch", "Create up to 100 jobs, all or nothing", api.JobBatch,
              _J, body=BatchBody, status=202, billed=True,
              makes=("/infra/jobs/{job_id}", "/jobs/0/id")),
    Operation("GET", "/infra/jobs/signing-secret", "Read the push-signing secret",
              api.SigningSecret, _J, billed=True),
    Operation("POST", "/infra/jobs/signing-secret/rotate", "Replace the push-signing secret",
              api.SigningSecret, _J, body=NoFields, body_optional=True, billed=True),
    Operation("POST", "/infra/jobs/claim", "Claim pull jobs (long-polls with wait_seconds)",
              list[api.ClaimedJob], _J, body=ClaimBody),
    Operation("GET", "/infra/jobs/{job_id}", "Read a job", api.Job, _JR, billed=True),
    Operation("PATCH", "/infra/jobs/{job_id}", "Change a job before it runs", api.Job, _J,
              body=JobPatch, errors=(409,), billed=True),
    Operation("DELETE", "/infra/jobs/{job_id}", "Cancel a job", api.Job, _J, errors=(409,),
              billed=True),
    Operation("POST", "/infra/jobs/{job_id}/trigger", "Fire a scheduled job now", api.Job, _J,
              body=NoFields, body_optional=True, status=202, errors=(409,), billed=True),
    Operation("POST", "/infra/jobs/{job_id}/retry", "Retry a failed job", api.Job, _J,
              body=NoFields, body_optional=True, errors=(409,), billed=True),
    Operation("GET", "/infra/jobs/{job_id}/runs", "List a job's runs, newest first",
              api.RunList, _JR, query=PAGE, billed=True),
    Operation("POST", "/infra/jobs/{job_id}/ack", "Report a claimed job's outcome", api.Job, _J,
              body=AckBody, errors=(409,)),
    Operation("POST", "/infra/jobs/{job_id}/heartbeat", "Extend a claim's lease",
              api.ClaimedJob, _J, body=HeartbeatBody, errors=(409,)),
    Operation("POST", "/infra/jobs/{job_id}/runs/{run_id}/callback",
              "Post a deferred result (signed URL)", api.Job, auth="signed", body=CallbackBody,
              query=(Param("sig", str, "the signature in the URL (64 hex digits)",
                           required=True),),
              errors=(409,),
              description="The URL comes in the `X-Flowyard-Callback-Url` header of a push "
              "delivery; it is signed, so no API key is needed. A wrong `sig` is 404."),
    # queues
    Operation("GET", "/infra/queues", "List queues by name", api.QueueList, _JR, billed=True,
              query=(LIMIT, Param("cursor", _text(1, 128), "the `next_cursor` of the previous "
                                  "page"))),
    Operation("PUT", "/infra/queues/{name}", "Set a queue's limits, handler or pause", api.Queue,
              _J, body=QueueBody, billed=True,
              description="`handler` receives the queue's jobs that name no handler of their "
              "own; while it is null they wait, pending. Null clears a limit or the handler."),
    # workflows
    Operation("POST", "/infra/workflows/blueprints", "Create a blueprint", api.Blueprint, _W,
              body=BlueprintSpec, billed=True,
              makes=("/infra/workflows/blueprints/{id}", "/id")),
    Operation("GET", "/infra/workflows/blueprints", "List blueprints, newest first",
              api.BlueprintList, _WR, billed=True,
              query=(Param("name", _text(1, 256), "only blueprints with exactly this name"),
                     Param("archived", Literal["true", "false"],
                           "`true` lists archived blueprints too", default="false"), *PAGE)),
    Operation("GET", "/infra/workflows/blueprints/{id}", "Read a blueprint", api.Blueprint, _WR,
              billed=True),
    Operation("DELETE", "/infra/workflows/blueprints/{id}", "Archive a blueprint",
              api.Blueprint, _W, billed=True,
              description="It leaves lists (unless `?archived=true`) and a trigger of it is "
              "409; its executions run on. Archiving it again answers the same."),
    Operation("POST", "/infra/workflows/blueprints/{id}/trigger", "Start an execution",
              api.ExecutionStarted, _W, body=TriggerBody, body_optional=True, errors=(409,),
              billed=True, makes=("/infra/workflows/executions/{id}", "/execution_id")),
    Operation("GET", "/infra/workflows/executions", "List executions, newest first",
              api.ExecutionList, _WR, billed=True,
              query=(Param("blueprint_id", _text(1, 256), "only executions of this blueprint"),
                     Param("status", ExecutionStatus, "only executions in this status"), *PAGE)),
    Operation("GET", "/infra/workflows/executions/{id}", "Read an execution", api.Execution,
              _WR, billed=True),
    Operation("GET", "/infra/workflows/executions/{id}/events",
              "List an execution's events, oldest first", api.EventList, _WR, billed=True,
              query=(replace(LIMIT, default=100), CURSOR)),
    Operation("POST", "/infra/workflows/executions/{id}/cancel", "Cancel an execution",
              api.Cancelled, _W, body=NoFields, body_optional=True, errors=(409,), billed=True),
    Operation("POST", "/infra/workflows/executions/{id}/pause", "Pause an execution",
              api.Paused, _W, body=NoFields, body_optional=True, errors=(409,), billed=True),
    Operation("POST", "/infra/workflows/executions/{id}/resume", "Resume an execution",
              api.Resumed, _W, body=ResumeBody, body_optional=True, errors=(409,), billed=True),
    # webhooks
    Operation("POST", "/infra/webhooks", "Create a webhook", api.Webhook, _H, body=WebhookBody,
              status=201, billed=True, makes=(_HOOK, "/id"),
              description="`topics`: exact topics, `*`, or prefixes ending in `.*`. The "
              "`secret` is generated when omitted."),
    Operation("GET", "/infra/webhooks", "List webhooks, newest first", api.WebhookList, _HR,
              query=PAGE, billed=True),
    Operation("POST", "/infra/webhooks/publish", "Publish a custom event", api.Published, _H,
              body=PublishBody, status=202, billed=True,
              description="Topics `[a-z0-9_.-]`, not starting with `jobs.`, `workflows.` or "
              "`webhooks.`; `deliveries` counts the webhooks it goes to."),
    Operation("GET", _HOOK, "Read a webhook", api.Webhook, _HR, billed=True),
    Operation("PATCH", _HOOK, "Change a webhook", api.Webhook, _H, body=WebhookPatch,
              billed=True),
    Operation("DELETE", _HOOK, "Delete a webhook and drop its pending deliveries",
              api.WebhookDeleted, _H, billed=True),
    Operation("POST", f"{_HOOK}/test", "Send `webhooks.test` now", api.WebhookTest, _H,
              body=NoFields, body_optional=True, billed=True,
              description="One attempt, not stored; `status` is null when the receiver did "
              "not answer (`error` says why)."),
    Operation("GET", f"{_HOOK}/deliveries", "List a webhook's deliveries, newest first",
              api.DeliveryList, _HR, billed=True,
              query=(Param("status", Literal["pending", "succeeded", "failed"],
                           "only deliveries in this status"), *PAGE)),
    Operation("GET", f"{_HOOK}/deliveries/{{delivery_id}}", "Read a delivery", api.Delivery,
              _HR, billed=True),
    Operation("POST", f"{_HOOK}/deliveries/{{delivery_id}}/retry",
              "Give a failed delivery another round of attempts", api.Delivery, _H,
              body=NoFields, body_optional=True, errors=(409,), billed=True),
    # tokens
    Operation("GET", "/core/tokens/balance", "Read the project's token balance",
              api.TokenBalance),
    Operation("GET", "/core/tokens/usage", "Calls and tokens per day and route family",
              api.TokenUsage),
    Operation("GET", "/core/whoami", "The calling key and its project", api.WhoAmI,
              description="Any valid key, free: the project's name, the key's scopes and "
              "whether it is an admin key."),
    # admin
    Operation("POST", "/admin/projects", "Create a project", api.Project, auth="admin",
              body=ProjectBody, errors=(409,), makes=("/admin/projects/{id}", "/id")),
    Operation("GET", "/admin/projects", "List projects, newest first", api.ProjectList,
              auth="admin", query=PAGE),
    Operation("GET", "/admin/projects/{id}", "Read a project", api.Project, auth="admin"),
    Operation("PATCH", "/admin/projects/{id}", "Set a project's rate limit or token balance",
              api.Project, auth="admin", body=ProjectPatch,
              description="Committed before the answer; applies at once. null removes a "
              "limit."),
    Operation("GET", "/admin/keys", "List keys, newest first (never their secrets)",
              api.KeyList, auth="admin",
              query=(Param("project_id", _text(1, 256), "only this project's keys"), *PAGE)),
    Operation("POST", "/admin/keys", "Create a key (its secret is shown once)", api.CreatedKey,
              auth="admin", body=KeyBody, errors=(404,), makes=("/admin/keys/{id}", "/id")),
    Operation("DELETE", "/admin/keys/{id}", "Revoke a key (refused at once)", api.KeyRecord,
              auth="admin", description="Revoking a revoked key changes nothing."),
    Operation("GET", "/admin/jobs", "List every project's jobs, newest first",
              api.ProjectJobList, auth="admin",
              query=(Param("project_id", _text(1, 256), "only this project's jobs"),
                     Param("status", JobStatus, "only jobs in this status"),
                     Param("trigger_type", TriggerType, "only jobs with this trigger type"),
                     Param("queue", _text(1, 128), "only jobs of this queue"), *PAGE)),
    Operation("GET", "/admin/executions", "List every project's executions, newest first",
              api.ExecutionList, auth="admin",
              query=(Param("project_id", _text(1, 256), "only this project's executions"),
                     Param("blueprint_id", _text(1, 256), "only executions of this blueprint"),
                     Param("status", ExecutionStatus, "only executions in this status"),
                     *PAGE)),
    Operation("GET", "/admin/stats", "Executions and jobs per project and status", api.Stats,
              auth="admin",
              query=(Param("project_id", _text(1, 256), "only this project"),)),
    # service
    Operation("GET", "/livez", "The process is up", api.Health, auth="none"),
    Operation("GET", "/readyz", "Storage is open and live work restored", api.Health,
              auth="none", errors=(503,)),
    Operation("GET", "/healthz", "Same as /readyz", api.Health, auth="none", errors=(503,)),
    Operation("GET", "/openapi.json", "This document", dict[str, Any], auth="none"),
)
# fmt: on

REASONS = {
    400: "bad_request: malformed JSON, a bad field or query parameter (`details` names each)",
    401: "unauthorized: no key, an unknown key or a revoked key",
    402: "insufficient_tokens: the call's price exceeds the project's balance",
    403: "forbidden: the key lacks the scope (named in the message) or is not an admin key",
    404: "not_found: no such object in the caller's project",
    409: "conflict: the object's state does not allow this",
    413: "payload_too_large: a body over 1 MiB, or a payload or result over 256 KiB",
    415: "unsupported_media_type: the body is not sent as application/json",
    429: "rate_limited: the project is over its request rate",
    503: "unavailable: not ready, shutting down, or overloaded",
}
_CODES = {status: reason.split(":")[0] for status, reason in REASONS.items()}
_RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
_RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def error_statuses(op: Operation) -> list[int]:
    """Every error status ``op`` can answer."""
    found = set(op.errors)
    if op.auth in ("key", "admin"):
        found |= {401, 503}
    if op.auth == "key":
        found.add(429)
    if op.scope is not None or op.auth == "admin":
        found.add(403)
    if op.auth == "signed":
        found.add(503)
    if op.billed:
        found.add(402)
    if op.body is not None:
        found |= {400, 413, 415}
    if op.query:
        found.add(400)
    if "{" in op.path:
        found.add(404)
    return sorted(found)


def document(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    types = list(
        dict.fromkeys(
            [api.Error]
            + [op.response for op in operations]
            + [op.body for op in operations if op.body is not None]
            + [p.type for op in operations for p in op.query]
        )
    )
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        out = paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schema)
        if op.makes is not None:
            out["responses"][str(op.status)]["links"] = _links(op.makes, operations)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flowyard",
            "version": __version__,
            "description": "Jobs, queues and DAG workflows over one SQLite file. Send a key as "
            "`Authorization: Bearer <key>` or `X-API-Key: <key>`. Every error is "
            "`{code, message, details?}`; an unknown route is 404, a known route with another "
            f"method 405. {_CLIENT}",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": _error_responses(schema[api.Error]),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "required": True,
                    "schema": {"type": "string"},
                },
                **{
                    name: {
                        "description": "present while the project has a rate limit",
                        "schema": {"type": "string"},
                    }
                    for name in _RATE_HEADERS
                },
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def _operation(op: Operation, schema: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """One operation object."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    parameters += [_parameter(p, schema[p.type]) for p in op.query]
    out: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "tags": [_tag(op.path)],
        "parameters": parameters,
        "responses": _responses(op, schema),
    }
    notes = [op.description] if op.description else []
    if op.scope is not None:
        notes.append(f"Needs scope `{op.scope}` (or `*`).")
    elif op.auth == "admin":
        notes.append("Needs an admin key.")
    if op.billed:
        notes.append("Costs tokens (402 when the balance is short).")
    if notes:
        out["description"] = " ".join(notes)
    if op.auth in ("none", "signed"):
        out["security"] = []
    if op.body is not None:
        out["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": schema[op.body]}},
        }
    return out


def _links(makes: tuple[str, str], operations: tuple[Operation, ...]) -> dict[str, Any]:
    """Links from an answer naming ``makes`` to every operation under its path."""
    prefix, pointer = makes
    [name] = re.findall(r"{(\w+)}", prefix)
    return {
        _operation_id(op): {
            "operationId": _operation_id(op),
            "parameters": {f"path.{name}": f"$response.body#{pointer}"},
        }
        for op in operations
        if op.path == prefix or op.path.startswith(f"{prefix}/")
    }


def _parameter(param: Param, schema: dict[str, Any]) -> dict[str, Any]:
    if param.default is not None:
        schema = {**schema, "default": param.default}
    return {
        "name": param.name,
        "in": "query",
        "required": param.required,
        "description": param.description,
        "schema": schema,
    }


def _responses(op: Operation, schema: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    success: dict[str, Any] = {
        "description": op.summary,
        "content": {"application/json": {"schema": schema[op.response]}},
    }
    if op.auth == "key":
        success["headers"] = {n: {"$ref": f"#/components/headers/{n}"} for n in _RATE_HEADERS}
    responses = {str(op.status): success}
    for status in error_statuses(op):
        responses[str(status)] = {"$ref": f"#/components/responses/{_CODES[status]}"}
    return responses


def _error_responses(error: dict[str, Any]) -> dict[str, Any]:
    """``components.responses``: one error answer per status, named by its code."""
    responses = {}
    for status, reason in REASONS.items():
        answer: dict[str, Any] = {
            "description": reason,
            "content": {"application/json": {"schema": error}},
        }
        if status in (429, 503):
            answer["headers"] = _RETRY_AFTER
        responses[_CODES[status]] = answer
    return responses


def _operation_id(op: Operation) -> str:
    words = re.sub(r"[{}]", "", op.path).replace("/infra/", "/").strip("/")
    return f"{op.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', words)}".rstrip("_")


def _tag(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[0] == "infra":
        return parts[2] if parts[1] == "workflows" else parts[1]
    if parts[0] == "core":
        return "tokens"
    if parts[0] == "admin":
        return "admin"
    return "service"
