"""The route table of the HTTP API: one ``Operation`` per route, from which ``http/openapi.py``
generates the OpenAPI document.

Adding a route means adding one ``Operation`` to ``OPERATIONS`` (``tests/test_openapi.py``
fails for an app route without one). Request schemas come from the msgspec types the handlers
decode with, response schemas from ``http/api_types.py`` (and its admin and webhook siblings).
"""

from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from msgspec import Meta

from flowyard.http import api_admin_types as admin_api
from flowyard.http import api_schedule_types as schedule_api
from flowyard.http import api_types as api
from flowyard.http import api_webhook_types as webhook_api
from flowyard.http.body import NoFields
from flowyard.http.routes_admin import KeyBody, ProjectBody, ProjectPatch
from flowyard.http.routes_workflows import ResumeBody, SignalBody, TriggerBody
from flowyard.http.schemas import (
    AckBody,
    BatchBody,
    CallbackBody,
    ClaimBody,
    ExchangeBody,
    HeartbeatBody,
    PublishBody,
    QueueBody,
    ScheduleBody,
    SchedulePatch,
    WebhookBody,
    WebhookPatch,
)
from flowyard.jobs.model import JobStatus, TriggerType
from flowyard.jobs.spec import JobPatch, JobSpec
from flowyard.workflows.blueprint import BlueprintSpec
from flowyard.workflows.state import ExecutionStatus

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
    media_type: str = "application/json"
    """What a successful answer is; errors are always JSON."""
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
_SCHED = "/infra/workflows/schedules/{id}"

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
    Operation("POST", "/infra/jobs/exchange",
              "Ack finished jobs and claim the next ones in one call", api.Exchanged, _J,
              body=ExchangeBody,
              description="Each ack is applied as `POST /infra/jobs/{job_id}/ack` would be, in "
              "order, and answered in `acks` (a refused one with its error: `conflict`, "
              "`not_found`, `invalid`, ...); then `claim` runs as `POST /infra/jobs/claim` "
              "would (absent, or `count` 0: acks only). A malformed body is 400 and acks "
              "nothing."),
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
                     Param("status", ExecutionStatus, "only executions in this status"),
                     Param("parent_execution_id", _text(1, 256),
                           "only the children this execution's sub_workflow steps started"),
                     *PAGE)),
    Operation("GET", "/infra/workflows/executions/{id}", "Read an execution", api.Execution,
              _WR, billed=True),
    Operation("GET", "/infra/workflows/executions/{id}/events",
              "List an execution's events, oldest first", api.EventList, _WR, billed=True,
              query=(replace(LIMIT, default=100), CURSOR)),
    Operation("GET", "/infra/workflows/executions/{id}/steps/{step_id}/items",
              "List a for_each step's items, in item order", api.StepItemList, _WR, billed=True,
              query=PAGE,
              description="A step without for_each has no items: its list is empty. An unknown "
              "execution or step is 404."),
    Operation("POST", "/infra/workflows/executions/{id}/cancel", "Cancel an execution",
              api.Cancelled, _W, body=NoFields, body_optional=True, errors=(409,), billed=True),
    Operation("POST", "/infra/workflows/executions/{id}/pause", "Pause an execution",
              api.Paused, _W, body=NoFields, body_optional=True, errors=(409,), billed=True),
    Operation("POST", "/infra/workflows/executions/{id}/resume", "Resume an execution",
              api.Resumed, _W, body=ResumeBody, body_optional=True, errors=(409,), billed=True),
    # workflow schedules
    Operation("POST", "/infra/workflows/schedules", "Schedule a blueprint",
              schedule_api.Schedule, _W, body=ScheduleBody, billed=True, errors=(409,),
              makes=(_SCHED, "/id"),
              description="`schedule`: 5-field cron, read in `timezone` (IANA). Each fire "
              "triggers the blueprint with `input_data` and the idempotency key "
              "`schedule:<id>:<fire time>` (e.g. `2026-12-06T20:30:00Z`). `overlap: skip` skips "
              "a fire while the previous execution is running or paused. An archived blueprint "
              "is 409."),
    Operation("GET", "/infra/workflows/schedules", "List schedules, newest first",
              schedule_api.ScheduleList, _WR, billed=True,
              query=(Param("blueprint_id", _text(1, 256), "only schedules of this blueprint"),
                     *PAGE)),
    Operation("GET", _SCHED, "Read a schedule", schedule_api.Schedule, _WR, billed=True),
    Operation("PATCH", _SCHED, "Change a schedule", schedule_api.Schedule, _W,
              body=SchedulePatch, billed=True, errors=(409,),
              description="Any of `schedule`, `timezone`, `input_data`, `enabled`, `overlap`; "
              "`next_fire_at` is computed again. Enabling the schedule of an archived "
              "blueprint is 409."),
    Operation("DELETE", _SCHED, "Delete a schedule", schedule_api.ScheduleDeleted, _W,
              billed=True, description="Its executions run on."),
    Operation("POST", f"{_SCHED}/trigger", "Fire a schedule now", api.ExecutionStarted, _W,
              body=NoFields, body_optional=True, errors=(409,), billed=True,
              makes=("/infra/workflows/executions/{id}", "/execution_id"),
              description="Enabled or not, whatever `overlap` says; answers as a trigger of "
              "the blueprint. `next_fire_at` does not move."),
    Operation("POST", "/infra/workflows/executions/{id}/signals", "Send a signal to an execution",
              api.SignalSent, _W, body=SignalBody, errors=(409,), billed=True,
              description="It completes the oldest step waiting for `name` with `data` (at "
              "most 256 KiB as JSON) as its output, or is kept for the next step that waits "
              "for it (`consumed_by` null; an execution keeps at most 1000, 409 beyond). 409 "
              "once the execution has ended (completed, failed, compensated, cancelled); the "
              "same `idempotency_key` again answers the first answer, with another name or "
              "data 409."),
    # webhooks
    Operation("POST", "/infra/webhooks", "Create a webhook", webhook_api.Webhook, _H,
              body=WebhookBody, status=201, billed=True, makes=(_HOOK, "/id"), errors=(409,),
              description="`topics`: exact topics, `*`, or prefixes ending in `.*`. The "
              "`secret` is generated when omitted. A project holds at most 100 webhooks "
              "(409 beyond)."),
    Operation("GET", "/infra/webhooks", "List webhooks, newest first",
              webhook_api.WebhookList, _HR, query=PAGE, billed=True),
    Operation("POST", "/infra/webhooks/publish", "Publish a custom event",
              webhook_api.Published, _H, body=PublishBody, status=202, billed=True,
              description="Topics `[a-z0-9_.-]`, not starting with `jobs.`, `workflows.` or "
              "`webhooks.`; `deliveries` counts the webhooks it goes to."),
    Operation("GET", _HOOK, "Read a webhook", webhook_api.Webhook, _HR, billed=True),
    Operation("PATCH", _HOOK, "Change a webhook", webhook_api.Webhook, _H, body=WebhookPatch,
              billed=True),
    Operation("DELETE", _HOOK, "Delete a webhook and drop its pending deliveries",
              webhook_api.WebhookDeleted, _H, billed=True),
    Operation("POST", f"{_HOOK}/test", "Send `webhooks.test` now", webhook_api.WebhookTest, _H,
              body=NoFields, body_optional=True, billed=True,
              description="One attempt, not stored; `status` is null when the receiver did "
              "not answer (`error` says why)."),
    Operation("GET", f"{_HOOK}/deliveries", "List a webhook's deliveries, newest first",
              webhook_api.DeliveryList, _HR, billed=True,
              query=(Param("status", Literal["pending", "succeeded", "failed"],
                           "only deliveries in this status"), *PAGE)),
    Operation("GET", f"{_HOOK}/deliveries/{{delivery_id}}", "Read a delivery", webhook_api.Delivery,
              _HR, billed=True),
    Operation("POST", f"{_HOOK}/deliveries/{{delivery_id}}/retry",
              "Give a failed delivery another round of attempts", webhook_api.Delivery, _H,
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
    Operation("POST", "/admin/projects", "Create a project", admin_api.Project, auth="admin",
              body=ProjectBody, errors=(409,), makes=("/admin/projects/{id}", "/id")),
    Operation("GET", "/admin/projects", "List projects, newest first", admin_api.ProjectList,
              auth="admin", query=PAGE),
    Operation("GET", "/admin/projects/{id}", "Read a project", admin_api.Project, auth="admin"),
    Operation("PATCH", "/admin/projects/{id}", "Set a project's rate limit or token balance",
              admin_api.Project, auth="admin", body=ProjectPatch,
              description="Committed before the answer; applies at once. null removes a "
              "limit."),
    Operation("GET", "/admin/keys", "List keys, newest first (never their secrets)",
              admin_api.KeyList, auth="admin",
              query=(Param("project_id", _text(1, 256), "only this project's keys"), *PAGE)),
    Operation("POST", "/admin/keys", "Create a key (its secret is shown once)",
              admin_api.CreatedKey, auth="admin", body=KeyBody, errors=(404,),
              makes=("/admin/keys/{id}", "/id")),
    Operation("DELETE", "/admin/keys/{id}", "Revoke a key (refused at once)", admin_api.KeyRecord,
              auth="admin", description="Revoking a revoked key changes nothing."),
    Operation("GET", "/admin/jobs", "List every project's jobs, newest first",
              admin_api.ProjectJobList, auth="admin",
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
    Operation("GET", "/admin/stats", "Executions and jobs per project and status", admin_api.Stats,
              auth="admin",
              query=(Param("project_id", _text(1, 256), "only this project"),)),
    Operation("GET", "/admin/cluster", "The cluster's nodes and the shards each owns",
              admin_api.Cluster, auth="admin",
              description="`shards.unowned` counts the shards that no live node owns right now "
              "(being taken over). A server without `--node-url` is one node that owns every "
              "shard."),
    # service
    Operation("GET", "/livez", "The process is up", api.Health, auth="none"),
    Operation("GET", "/readyz", "Storage is open and live work restored", api.Health,
              auth="none", errors=(503,)),
    Operation("GET", "/healthz", "Same as /readyz", api.Health, auth="none", errors=(503,)),
    Operation("GET", "/metrics", "Prometheus metrics (text exposition)", str, auth="none",
              media_type="text/plain", errors=(401,),
              description="Open unless the server runs with `--metrics-token`; then it needs"
              " `Authorization: Bearer <token>`. Never rate-limited or billed."),
    Operation("GET", "/openapi.json", "This document", dict[str, Any], auth="none"),
)
# fmt: on
