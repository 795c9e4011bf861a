"""Workflow schedules: the stored record, its view, and the pure rules of when it fires.

A schedule triggers its blueprint at every slot of a 5-field cron expression read in an IANA
timezone. Each fire uses the idempotency key :func:`slot_key`, so a slot fired again after a
crash answers the execution it started the first time. Slots missed while the server was down
collapse into one: :func:`due_slot` is the latest slot that has passed. Pure: time comes in as
an argument.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from croniter import croniter

from flowyard.clock import rfc3339
from flowyard.jobs.cron import next_fire_ms


class Overlap(StrEnum):
    """What a fire does while the schedule's previous execution is still running or paused."""

    SKIP = "skip"
    ALLOW = "allow"


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow schedule as stored (new fields need defaults)."""

    id: str
    project_id: str
    blueprint_id: str
    schedule: str
    timezone: str = "UTC"
    input_data: dict[str, Any] = {}
    enabled: bool = True
    overlap: Overlap = Overlap.SKIP
    next_fire_at: int | None = None  # None while disabled
    last_fire_at: int | None = None
    last_execution_id: str | None = None
    created_at: int
    updated_at: int


def next_fire_at(schedule: Schedule, now_ms: int) -> int | None:
    """When an enabled schedule fires next, strictly after ``now_ms``; None when disabled."""
    if not schedule.enabled:
        return None
    return next_fire_ms(schedule.schedule, schedule.timezone, now_ms)


def latest_slot_ms(expression: str, timezone: str, at_ms: int) -> int:
    """The latest fire time of ``expression`` at or before ``at_ms``, in epoch milliseconds."""
    start = datetime.fromtimestamp((at_ms + 1) / 1000, tz=UTC).astimezone(ZoneInfo(timezone))
    slot = croniter(expression, start).get_prev(datetime)
    return int(slot.timestamp() * 1000)


def due_slot(schedule: Schedule, now_ms: int) -> int | None:
    """The slot to fire now: the latest one that has passed, if ``next_fire_at`` has passed
    (every slot missed since collapses into it); None when nothing is due."""
    due = schedule.next_fire_at
    if not schedule.enabled or due is None or due > now_ms:
        return None
    return max(due, latest_slot_ms(schedule.schedule, schedule.timezone, now_ms))


def fire_time(slot_ms: int) -> str:
    """A slot's scheduled time as it appears in idempotency keys: ``2026-12-06T20:30:00Z``
    (ISO 8601 UTC, whole seconds)."""
    return datetime.fromtimestamp(slot_ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_key(schedule_id: str, slot_ms: int) -> str:
    """The idempotency key of the fire of one slot: ``schedule:<id>:<fire time>``."""
    return f"schedule:{schedule_id}:{fire_time(slot_ms)}"


def manual_key(schedule_id: str, at_ms: int) -> str:
    """The idempotency key of a fire asked for by hand at ``at_ms``: the time with its
    milliseconds (``schedule:<id>:2026-12-06T20:30:12.345Z``), so it is never a slot's key."""
    return f"schedule:{schedule_id}:{rfc3339(at_ms)}"


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    """A schedule as the API shows it."""
    return {
        "id": schedule.id,
        "blueprint_id": schedule.blueprint_id,
        "schedule": schedule.schedule,
        "timezone": schedule.timezone,
        "input_data": schedule.input_data,
        "enabled": schedule.enabled,
        "overlap": schedule.overlap.value,
        "next_fire_at": rfc3339(schedule.next_fire_at),
        "last_fire_at": rfc3339(schedule.last_fire_at),
        "last_execution_id": schedule.last_execution_id,
        "created_at": rfc3339(schedule.created_at),
        "updated_at": rfc3339(schedule.updated_at),
    }
