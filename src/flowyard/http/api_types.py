"""The response bodies of the API as msgspec Structs, for ``/openapi.json``.

The handlers build their answers as dicts (``job_view``, ``execution_view`` ...); these Structs
describe those dicts field for field so that the OpenAPI schemas are generated, not written by
hand. Every field is required and unknown fields are forbidden, so a view that gains, loses or
retypes a field no longer decodes into its Struct (``tests/test_openapi.py`` checks that).
"""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from flowyard.jobs.model import Backoff, JobStatus, RunStatus, Trigger
from flowyard.workflows.blueprint import Step
from flowyard.workflows.state import ExecutionStatus, ItemStatus, StepError, StepStatus

Timestamp = Annotated[
    str, Meta(description="RFC 3339 UTC with milliseconds", examples=["2026-11-23T10:00:00.000Z"])
]
Cursor = Annotated[str | None, Meta(description="pass as ?cursor for the next page; null: done")]
ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "insufficient_tokens",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "internal_error",
    "unavailable",
]


class View(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of the response Structs: exact, every field present."""


class ErrorDetail(View, frozen=True):
    """One problem with a request, e.g. `{"path": "$.steps[1].id", "message": "..."}`."""

    path: str
    message: str


class Error(View, frozen=True):
    """Every error answer: `details` lists one entry per problem when there are some."""

    code: ErrorCode
    message: str
    details: list[ErrorDetail] | msgspec.UnsetType = msgspec.UNSET


class AckError(View, frozen=True):
    """Why one ack of an exchange was refused: the code the ack route would answer, except
    `invalid` for a malformed ack."""

    code: ErrorCode | Literal["invalid"]
    message: str
    details: list[ErrorDetail] | msgspec.UnsetType = msgspec.UNSET


class Health(View, frozen=True):
    """`/livez`, `/readyz`, `/healthz`."""

    status: Literal["ok"]


# ------------------------------------------------------------------------------ jobs


class WorkflowStepRef(View, frozen=True):
    """The workflow step a job runs for; `item_index` is there for an item of a for_each
    step."""

    execution_id: str
    step_id: str
    item_index: int | msgspec.UnsetType = msgspec.UNSET


class Job(View, frozen=True):
    """A job (`job_view`)."""

    id: str
    name: str | None
    trigger: Trigger
    handler: str | None
    payload: Any
    result: Any
    status: JobStatus
    enabled: bool
    priority: int
    attempt: int
    max_attempts: int
    timeout: int
    backoff: Backoff
    idempotency_key: str | None
    error: str | None
    created_at: Timestamp
    run_at: Timestamp | None
    next_run_at: Timestamp | None
    last_run_at: Timestamp | None
    claimed_until: Timestamp | None
    completed_at: Timestamp | None
    callback_url: str | None
    workflow: WorkflowStepRef | None


class ClaimedJob(Job, frozen=True):
    """A job a worker holds: ack and heartbeat must quote its `claim_token`."""

    claim_token: str | None


class AckAnswer(View, frozen=True):
    """What became of one ack of an exchange; `error` only when `ok` is false."""

    job_id: str | None
    ok: bool
    error: AckError | msgspec.UnsetType = msgspec.UNSET


class Exchanged(View, frozen=True):
    """`POST /infra/jobs/exchange`: one answer per ack, in order, and the jobs claimed."""

    acks: list[AckAnswer]
    jobs: list[ClaimedJob]


class JobList(View, frozen=True):
    """A page of jobs, newest first."""

    jobs: list[Job]
    next_cursor: Cursor


class JobBatch(View, frozen=True):
    """The jobs a batch created, in the order sent."""

    jobs: list[Job]


class Run(View, frozen=True):
    """One delivery or claim of a job (`run_view`)."""

    id: str
    job_id: str
    attempt: int
    scheduled_at: Timestamp | None
    started_at: Timestamp
    completed_at: Timestamp | None
    status: RunStatus
    duration_ms: int | None
    handler_status: int | None
    error: str | None


class RunList(View, frozen=True):
    """A page of a job's runs, newest first."""

    runs: list[Run]
    next_cursor: Cursor


class SigningSecret(View, frozen=True):
    """The project's push-signing secret (HMAC key: its UTF-8 bytes)."""

    signing_secret: str | None


class Queue(View, frozen=True):
    """A named queue of the project (`JobQueue.view`)."""

    name: str
    depth: int
    running: int
    oldest_pending_age_seconds: float | None
    concurrency: int | None
    rate_limit_per_second: float | None
    paused: bool
    handler: str | None


class QueueList(View, frozen=True):
    """A page of queues, by name."""

    queues: list[Queue]
    next_cursor: Cursor


# ------------------------------------------------------------------------- workflows


class Blueprint(View, frozen=True):
    """A blueprint (`blueprint_view`)."""

    id: str
    project_id: str
    name: str
    description: str | None
    steps: list[Step]
    max_duration_sec: int
    created_at: Timestamp
    archived_at: Annotated[Timestamp | None, Meta(description="null while it is live")]


class BlueprintSummary(View, frozen=True):
    """A blueprint as lists show it."""

    id: str
    name: str
    description: str | None
    created_at: Timestamp
    archived_at: Timestamp | None


class BlueprintList(View, frozen=True):
    """A page of blueprints, newest first."""

    blueprints: list[BlueprintSummary]
    next_cursor: Cursor


class ExecutionStarted(View, frozen=True):
    """The answer to a trigger (header `Idempotent-Replayed: true` on a replay)."""

    execution_id: str
    blueprint_id: str
    status: ExecutionStatus
    started_at: Timestamp


class ItemCounts(View, frozen=True):
    """The items of a for_each step, by where they are."""

    total: int
    completed: int
    failed: int
    running: int
    queued: int
    cancelled: int


class ExecutionStep(View, frozen=True):
    """One step of an execution."""

    step_id: str
    status: StepStatus
    job_id: str | None
    attempt: int
    output: Any
    error: StepError | None
    started_at: Timestamp | None
    completed_at: Timestamp | None
    caught_by: str | None
    skip_reason: Annotated[
        str | None,
        Meta(description="condition_false when its when was false (it counts as done); else null"),
    ]
    signal: str | None
    signal_id: str | None
    child_execution_id: Annotated[
        str | None, Meta(description="a sub_workflow step's child execution (latest attempt)")
    ]
    items: ItemCounts | None


class StepItem(View, frozen=True):
    """One item of a for_each step (`GET .../steps/{step_id}/items`)."""

    index: int
    status: ItemStatus
    job_id: str | None
    child_execution_id: Annotated[
        str | None,
        Meta(description="a for_each sub_workflow step's item: its child execution (latest)"),
    ]
    attempt: int
    output: Any
    error: StepError | None
    started_at: Timestamp | None
    completed_at: Timestamp | None


class StepItemList(View, frozen=True):
    """A page of a for_each step's items, in item order."""

    items: list[StepItem]
    next_cursor: str | None


class ParentStep(View, frozen=True, omit_defaults=True):
    """The sub_workflow step whose child an execution is."""

    execution_id: str
    step_id: str
    item_index: Annotated[
        int | None, Meta(description="the for_each item it runs; absent for the step's one child")
    ] = None


class Execution(View, frozen=True):
    """An execution (`execution_view`); `result` maps step ids to completed outputs."""

    id: str
    blueprint_id: str
    project_id: str
    status: ExecutionStatus
    input_data: Any
    result: dict[str, Any]
    error: StepError | None
    idempotency_key: str | None
    started_at: Timestamp
    completed_at: Timestamp | None
    cancelled_at: Timestamp | None
    paused_at: Timestamp | None
    pause_reason: str | None
    resumed_at: Timestamp | None
    deadline_at: Timestamp
    parent: Annotated[
        ParentStep | None, Meta(description="the step that started it; null: a client did")
    ]
    steps: list[ExecutionStep]


class ExecutionList(View, frozen=True):
    """A page of executions, newest first."""

    executions: list[Execution]
    next_cursor: Cursor


class Event(View, frozen=True):
    """One entry of an execution's event log (`event_view`)."""

    seq: int
    at: Timestamp
    type: str
    step_id: str | None
    data: dict[str, Any]


class EventList(View, frozen=True):
    """A page of an execution's events, oldest first."""

    events: list[Event]
    next_cursor: Cursor


class Cancelled(View, frozen=True):
    """The answer to a cancel."""

    id: str
    status: ExecutionStatus
    cancelled_at: Timestamp | None


class Paused(View, frozen=True):
    """The answer to a pause."""

    id: str
    status: ExecutionStatus
    paused_at: Timestamp | None


class Resumed(View, frozen=True):
    """The answer to a resume."""

    id: str
    status: ExecutionStatus
    resumed_at: Timestamp | None


class SignalSent(View, frozen=True):
    """The answer to a signal: the step it completed, or null when it was kept
    (header `Idempotent-Replayed: true` on a replay)."""

    signal_id: str
    execution_id: str
    name: str
    consumed_by: str | None


# ---------------------------------------------------------------------------- tokens

Tokens = Annotated[str, Meta(description="a decimal amount of tokens", examples=["0.0000018"])]


class TokenBalance(View, frozen=True):
    """The project's balance; null when it is unlimited."""

    project_id: str
    total_balance: Tokens | None


class WhoAmI(View, frozen=True):
    """The calling key and its project (never the key's secret)."""

    project_id: str
    project_name: str
    key_id: str
    name: str
    scopes: list[str]
    admin: bool


class FamilyUsage(View, frozen=True):
    """Calls and tokens of one route family (`infra/jobs` ...) on one day."""

    calls: int
    tokens: Tokens


class UsageDay(View, frozen=True):
    """One UTC day of usage."""

    period_start: Timestamp
    calls: int
    total: Tokens
    by_family: dict[str, FamilyUsage]


class TokenUsage(View, frozen=True):
    """Calls and tokens per UTC day, oldest day first."""

    project_id: str
    granularity: Literal["day"]
    series: list[UsageDay]
