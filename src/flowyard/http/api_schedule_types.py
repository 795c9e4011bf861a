"""The response bodies of the workflow schedules API (``/infra/workflows/schedules``), for
``/openapi.json``; the rules of ``http/api_types.py`` hold here too."""

from typing import Any, Literal

from flowyard.http.api_types import Cursor, Timestamp, View


class Schedule(View, frozen=True):
    """A blueprint triggered at every fire of a 5-field cron `schedule` read in `timezone`.
    `next_fire_at` is null while it is disabled."""

    id: str
    blueprint_id: str
    schedule: str
    timezone: str
    input_data: dict[str, Any]
    enabled: bool
    overlap: Literal["skip", "allow"]
    next_fire_at: Timestamp | None
    last_fire_at: Timestamp | None
    last_execution_id: str | None
    created_at: Timestamp
    updated_at: Timestamp


class ScheduleList(View, frozen=True):
    """A page of schedules, newest first."""

    schedules: list[Schedule]
    next_cursor: Cursor


class ScheduleDeleted(View, frozen=True):
    """A schedule deleted; its executions run on."""

    id: str
    deleted: Literal[True]
