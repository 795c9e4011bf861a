"""What a client may send to create or change a job, and the rules beyond field types."""

import re
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta, Raw

from flowyard.errors import Invalid, PayloadTooLarge, invalid_field
from flowyard.jobs.cron import ever_fires, is_valid_schedule
from flowyard.jobs.model import NULL, QUEUE_TRIGGERS, Backoff, Scheduled, Trigger, null

MAX_PAYLOAD_BYTES = 256 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class JobOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job create body without payload and idempotency_key (a workflow step's job_trigger)."""

    trigger: Trigger
    handler: str | None = None
    name: Annotated[str, Meta(max_length=256)] | None = None
    timeout: Annotated[int, Meta(ge=1, le=30)] = 30
    max_attempts: Annotated[int, Meta(ge=1, le=20)] = 3
    backoff: Backoff = "exponential"
    priority: Annotated[int, Meta(ge=1, le=10)] = 5
    callback_url: str | None = None
    enabled: bool = True

    def to_spec(self, payload: Raw = NULL, *, idempotency_key: str | None = None) -> "JobSpec":
        """The full job body with this payload."""
        return JobSpec(
            trigger=self.trigger,
            handler=self.handler,
            name=self.name,
            timeout=self.timeout,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            priority=self.priority,
            callback_url=self.callback_url,
            enabled=self.enabled,
            payload=payload,
            idempotency_key=idempotency_key,
        )


class JobSpec(JobOptions, frozen=True, kw_only=True):
    """The body of ``POST /infra/jobs`` (and each item of a batch)."""

    payload: Raw = msgspec.field(default_factory=null)
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class TriggerPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The trigger fields a PATCH may change."""

    schedule: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    delay_seconds: Annotated[int, Meta(ge=0, le=2_592_000)] | None = None


class JobPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``PATCH /infra/jobs/{id}``."""

    handler: str | None = None
    payload: Raw | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | None = None
    trigger: TriggerPatch | None = None


def check_url(value: str, path: str) -> list[dict[str, str]]:
    """Problems with a handler or callback URL: it must be an absolute http(s) URL."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return [{"path": path, "message": "must be an http(s) URL"}]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [{"path": path, "message": "must be an http(s) URL"}]
    if _CONTROL.search(value):  # no HTTP client sends them; NUL would fail every delivery
        return [{"path": path, "message": "must not contain control characters"}]
    if len(value) > 2048:
        return [{"path": path, "message": "must be at most 2048 characters"}]
    return []


def check_timezone(name: str, path: str) -> list[dict[str, str]]:
    """Problems with an IANA timezone name."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory
        return [{"path": path, "message": f"unknown timezone {name!r}"}]
    return []


def check_schedule(schedule: str, path: str) -> list[dict[str, str]]:
    """Problems with a 5-field cron expression."""
    if not is_valid_schedule(schedule):
        return [{"path": path, "message": "must be a 5-field cron expression"}]
    if not ever_fires(schedule):
        return [{"path": path, "message": "names no date that ever comes"}]
    return []


def check_payload(payload: Raw, path: str) -> None:
    """Raise 413 when a payload or result is over 256 KiB, 400 when it holds a number no
    float can hold (``1e999``): JSON has no infinity, and reading it back would fail later,
    when a workflow template or a worker decodes it."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"{path} is over {MAX_PAYLOAD_BYTES} bytes",
            [{"path": path, "message": f"must be at most {MAX_PAYLOAD_BYTES} bytes of JSON"}],
        )
    try:
        msgspec.json.decode(payload)
    except msgspec.ValidationError as exc:
        message = str(exc).split(" - at ")[0]  # "Number out of range"
        raise invalid_field(path, f"{message}: numbers must be finite") from None


def spec_problems(spec: JobSpec, path: str = "$") -> list[dict[str, str]]:
    """Every rule of a job body that its types do not already enforce."""
    problems: list[dict[str, str]] = []
    trigger = spec.trigger
    if spec.handler is not None:
        problems += check_url(spec.handler, f"{path}.handler")
    elif not isinstance(trigger, QUEUE_TRIGGERS):
        # A queue job without one goes to its queue's handler (``PUT /infra/queues/{name}``).
        problems.append(
            {"path": f"{path}.handler", "message": "required unless trigger is pull or queue"}
        )
    if spec.callback_url is not None:
        problems += check_url(spec.callback_url, f"{path}.callback_url")
    if isinstance(trigger, Scheduled):
        problems += check_schedule(trigger.schedule, f"{path}.trigger.schedule")
        problems += check_timezone(trigger.timezone, f"{path}.trigger.timezone")
    return problems


def validate_spec(spec: JobSpec, path: str = "$") -> None:
    """Raise 413 for an oversized payload, then 400 listing every other problem."""
    check_payload(spec.payload, f"{path}.payload")
    problems = spec_problems(spec, path)
    if problems:
        raise Invalid(f"invalid job: {problems[0]['path']}: {problems[0]['message']}", problems)
