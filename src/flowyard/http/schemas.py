"""Request bodies of the Jobs API beyond the job itself (which lives in ``jobs/spec.py``)."""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Raw

from flowyard.jobs.model import null
from flowyard.jobs.spec import JobSpec


class BatchBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /infra/jobs/batch``."""

    jobs: Annotated[list[JobSpec], Meta(min_length=1, max_length=100)]


class ClaimBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/jobs/claim``."""

    queue: Annotated[str, Meta(min_length=1, max_length=128)]
    count: Annotated[int, Meta(ge=1, le=100)] = 1
    visibility_timeout: Annotated[int, Meta(ge=1, le=43_200)] = 30
    wait_seconds: Annotated[float, Meta(ge=0, le=20)] = 0


class AckBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/jobs/{id}/ack``: a worker's outcome."""

    status: Literal["completed", "failed"]
    claim_token: Annotated[str, Meta(min_length=1, max_length=256)]
    result: Raw = msgspec.field(default_factory=null)
    error: Any = None
    retryable: bool = True


class ExchangeAck(AckBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ack of ``POST /infra/jobs/exchange``: an ack body that names its job."""

    job_id: Annotated[str, Meta(min_length=1, max_length=256)]


class ExchangeClaim(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The claim of an exchange: a claim body whose ``count`` may be 0 (acks only)."""

    queue: Annotated[str, Meta(min_length=1, max_length=128)]
    count: Annotated[int, Meta(ge=0, le=100)] = 1
    visibility_timeout: Annotated[int, Meta(ge=1, le=43_200)] = 30
    wait_seconds: Annotated[float, Meta(ge=0, le=20)] = 0


class ExchangeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/jobs/exchange``: acks of finished jobs, then a claim of the next ones."""

    acks: Annotated[list[ExchangeAck], Meta(max_length=100)] = []
    claim: ExchangeClaim | None = None


class ExchangeShape(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An exchange body whose acks are not decoded yet: each is checked on its own."""

    acks: Annotated[list[Raw], Meta(max_length=100)] = []
    claim: ExchangeClaim | None = None


class HeartbeatBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/jobs/{id}/heartbeat``."""

    claim_token: Annotated[str, Meta(min_length=1, max_length=256)]
    visibility_timeout: Annotated[int, Meta(ge=1, le=43_200)] = 30


class CallbackBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a handler that answered 202 posts to its callback URL."""

    status: Literal["completed", "failed"]
    result: Raw = msgspec.field(default_factory=null)
    error: Any = None


class QueueBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /infra/queues/{name}``: any of the settings; null clears a limit or the handler."""

    concurrency: Annotated[int, Meta(ge=1, le=10_000)] | None | msgspec.UnsetType = msgspec.UNSET
    rate_limit_per_second: Annotated[float, Meta(gt=0, le=100_000)] | None | msgspec.UnsetType = (
        msgspec.UNSET
    )
    paused: bool | msgspec.UnsetType = msgspec.UNSET
    handler: str | None | msgspec.UnsetType = msgspec.UNSET


def error_text(error: Any) -> str | None:
    """A worker's error as a string: strings as they are, anything else as compact JSON."""
    if error is None or isinstance(error, str):
        return error
    return msgspec.json.encode(error).decode()


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/webhooks``: the secret is generated when omitted."""

    name: Annotated[str, Meta(min_length=1, max_length=128)]
    url: Annotated[str, Meta(min_length=1, max_length=2048)]
    topics: Annotated[list[str], Meta(min_length=1, max_length=50)]
    secret: Annotated[str, Meta(min_length=16, max_length=256)] | None = None
    enabled: bool = True


class WebhookPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /infra/webhooks/{id}``: any of the fields; the rest stay."""

    name: Annotated[str, Meta(min_length=1, max_length=128)] | msgspec.UnsetType = msgspec.UNSET
    url: Annotated[str, Meta(min_length=1, max_length=2048)] | msgspec.UnsetType = msgspec.UNSET
    topics: Annotated[list[str], Meta(min_length=1, max_length=50)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    secret: Annotated[str, Meta(min_length=16, max_length=256)] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class PublishBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/webhooks/publish``: a custom event."""

    topic: Annotated[str, Meta(min_length=1, max_length=128)]
    data: Raw = msgspec.field(default_factory=null)


class ScheduleBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /infra/workflows/schedules``."""

    blueprint_id: Annotated[str, Meta(min_length=1, max_length=256)]
    schedule: Annotated[str, Meta(min_length=1, max_length=256)]
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] = "UTC"
    input_data: dict[str, Any] = {}
    enabled: bool = True
    overlap: Literal["skip", "allow"] = "skip"


class SchedulePatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /infra/workflows/schedules/{id}``: any of the fields; the rest stay."""

    schedule: Annotated[str, Meta(min_length=1, max_length=256)] | msgspec.UnsetType = msgspec.UNSET
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | msgspec.UnsetType = msgspec.UNSET
    input_data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    overlap: Literal["skip", "allow"] | msgspec.UnsetType = msgspec.UNSET
