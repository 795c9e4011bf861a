"""Job and run records, their statuses, and their JSON views.

Records are frozen msgspec Structs written to SQLite as JSON; new fields must have defaults
(msgspec's schema-evolution rules) so that older rows still decode. A job's and a run's
documents leave out the fields that hold their default: read one with its Struct, not as
plain JSON.
"""

from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Raw

from flowyard.clock import rfc3339

NULL = Raw(b"null")


def null() -> Raw:
    """``NULL`` as a field's ``default_factory`` (JSON Schema cannot show a ``Raw`` default)."""
    return NULL


QueueName = Annotated[str, Meta(min_length=1, max_length=128)]


class Immediate(
    msgspec.Struct, frozen=True, tag="immediate", tag_field="type", forbid_unknown_fields=True
):
    """POST to the handler now."""


class Delayed(
    msgspec.Struct, frozen=True, tag="delayed", tag_field="type", forbid_unknown_fields=True
):
    """POST to the handler after ``delay_seconds``."""

    delay_seconds: Annotated[int, Meta(ge=0, le=2_592_000)]


class Scheduled(
    msgspec.Struct, frozen=True, tag="scheduled", tag_field="type", forbid_unknown_fields=True
):
    """POST to the handler at every fire of a 5-field cron expression."""

    schedule: Annotated[str, Meta(min_length=1, max_length=256)]
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] = "UTC"


class PushQueue(
    msgspec.Struct, frozen=True, tag="queue", tag_field="type", forbid_unknown_fields=True
):
    """POST to the handler through a named queue's concurrency and rate limits."""

    queue: QueueName


class PullQueue(
    msgspec.Struct, frozen=True, tag="pull", tag_field="type", forbid_unknown_fields=True
):
    """No handler: a worker claims the job from the named queue."""

    queue: QueueName


Trigger = Immediate | Delayed | Scheduled | PushQueue | PullQueue
QUEUE_TRIGGERS = (PushQueue, PullQueue)  # a tuple: ``isinstance`` with it builds no union
TRIGGER_TAGS: dict[type, str] = {
    kind: str(kind.__struct_config__.tag)
    for kind in (Immediate, Delayed, Scheduled, PushQueue, PullQueue)
}
"""Each trigger type's ``type`` tag (a look-up: ``__struct_config__`` builds an object)."""
TriggerType = Literal["immediate", "delayed", "scheduled", "queue", "pull"]
"""The ``type`` tags of ``Trigger``."""
Backoff = Literal["exponential", "linear", "fixed"]


class JobStatus(StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SCHEDULED = "scheduled"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
LIVE = frozenset({JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SCHEDULED})


class RunStatus(StrEnum):
    """Where one delivery or claim is."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


# gc=False: these records never take part in reference cycles; leaving them out of the
# cyclic collector saves memory and collector time with many live jobs and executions.
class WorkflowRef(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The workflow step a job runs for."""

    execution_id: str
    step_id: str
    attempt: int = 1
    item: int | None = None
    """The for_each item the job runs (``attempt`` is then the item's); None for a step."""


def workflow_view(ref: WorkflowRef) -> dict[str, Any]:
    """The step a job runs for, as the API shows it (``item_index`` only for an item)."""
    view: dict[str, Any] = {"execution_id": ref.execution_id, "step_id": ref.step_id}
    if ref.item is not None:
        view["item_index"] = ref.item
    return view


class Job(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """A job as stored. ``claim_token``, ``run_id`` and ``callback_deadline`` are internal.

    A field that holds its default is left out of the stored document (most of a job's fields
    are unset or default most of its life), and comes back as that default when decoded.
    """

    id: str
    project_id: str
    trigger: Trigger
    handler: str | None = None
    payload: Raw = NULL
    name: str | None = None
    result: Raw = NULL
    status: JobStatus = JobStatus.PENDING
    enabled: bool = True
    priority: int = 5
    attempt: int = 0
    max_attempts: int = 3
    timeout: int = 30
    backoff: Backoff = "exponential"
    idempotency_key: str | None = None
    error: str | None = None
    created_at: int = 0
    run_at: int | None = None
    next_run_at: int | None = None
    last_run_at: int | None = None
    claimed_until: int | None = None
    completed_at: int | None = None
    callback_url: str | None = None
    workflow: WorkflowRef | None = None
    claim_token: str | None = None
    run_id: str | None = None
    callback_deadline: int | None = None

    @property
    def queue(self) -> str | None:
        """The queue name of a push- or pull-queue job."""
        trigger = self.trigger
        return trigger.queue if isinstance(trigger, QUEUE_TRIGGERS) else None

    @property
    def trigger_type(self) -> str:
        """The trigger's type tag."""
        return TRIGGER_TAGS[type(self.trigger)]

    @property
    def is_pull(self) -> bool:
        """Whether a worker claims this job rather than a handler receiving it."""
        return isinstance(self.trigger, PullQueue)


class Run(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One delivery of a push job or one claim of a pull job (stored without its default
    fields, as a job is)."""

    id: str
    job_id: str
    attempt: int
    scheduled_at: int | None
    started_at: int
    completed_at: int | None = None
    status: RunStatus = RunStatus.RUNNING
    duration_ms: int | None = None
    handler_status: int | None = None
    error: str | None = None


def job_view(job: Job, *, claim_token: bool = False) -> dict[str, Any]:
    """The job as the API shows it."""
    view: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "trigger": job.trigger,
        "handler": job.handler,
        "payload": job.payload,
        "result": job.result,
        "status": job.status,
        "enabled": job.enabled,
        "priority": job.priority,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "backoff": job.backoff,
        "idempotency_key": job.idempotency_key,
        "error": job.error,
        "created_at": rfc3339(job.created_at),
        # Most of these are unset: the test costs less than a call (a claim answers with
        # several jobs).
        "run_at": None if job.run_at is None else rfc3339(job.run_at),
        "next_run_at": None if job.next_run_at is None else rfc3339(job.next_run_at),
        "last_run_at": None if job.last_run_at is None else rfc3339(job.last_run_at),
        "claimed_until": None if job.claimed_until is None else rfc3339(job.claimed_until),
        "completed_at": None if job.completed_at is None else rfc3339(job.completed_at),
        "callback_url": job.callback_url,
        "workflow": workflow_view(job.workflow) if job.workflow else None,
    }
    if claim_token:
        view["claim_token"] = job.claim_token
    return view


def run_view(run: Run) -> dict[str, Any]:
    """The run as the API shows it."""
    return {
        "id": run.id,
        "job_id": run.job_id,
        "attempt": run.attempt,
        "scheduled_at": rfc3339(run.scheduled_at),
        "started_at": rfc3339(run.started_at),
        "completed_at": rfc3339(run.completed_at),
        "status": run.status,
        "duration_ms": run.duration_ms,
        "handler_status": run.handler_status,
        "error": run.error,
    }


def claimed_views(jobs: Sequence["Job | Raw"]) -> list[Any]:
    """Claimed jobs as a claim answers them, with their claim tokens; a job claimed at
    another node of a cluster comes as that node showed it."""
    return [job_view(job, claim_token=True) if isinstance(job, Job) else job for job in jobs]


def holder_id(job: Job) -> str:
    """The id whose shard holds ``job`` in a cluster: its execution's for a workflow step
    (the same shard as its own id for every job made since shards exist)."""
    return job.workflow.execution_id if job.workflow is not None else job.id
