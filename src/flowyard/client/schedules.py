"""``client.workflows.schedules``: blueprints triggered on a 5-field cron schedule.

Each fire triggers the blueprint with the schedule's ``input_data`` and the idempotency key
``schedule:<id>:<fire time>``; ``trigger`` fires one now. Every call is described once here
and run by either client.
"""

from collections.abc import Mapping
from typing import Any, Literal

import httpx
import msgspec

from flowyard.client.core import Call, query, returns, returns_page, segment
from flowyard.client.models import UNSET, Page, Schedule, ScheduleDeleted, Triggered, Unset
from flowyard.client.namespace import Mode, Namespace, endpoint, paginate

ROOT = "/infra/workflows/schedules"
OverlapName = Literal["skip", "allow"]


def _path(schedule_id: str, *rest: str) -> str:
    return "/".join([ROOT, segment(schedule_id), *rest])


def _fields(**values: Any) -> dict[str, Any]:
    """A body without the fields left unset, so the server keeps or defaults them."""
    return {name: value for name, value in values.items() if value is not UNSET}


class Schedules(Namespace[Mode]):
    """``/infra/workflows/schedules``: create, list, read, change, delete, fire now."""

    @endpoint
    def create(
        self,
        blueprint_id: str,
        schedule: str,
        *,
        timezone: str | Unset = UNSET,
        input_data: Mapping[str, Any] | Unset = UNSET,
        enabled: bool | Unset = UNSET,
        overlap: OverlapName | Unset = UNSET,
    ) -> Call[Schedule]:
        """Trigger ``blueprint_id`` at every fire of ``schedule`` (5-field cron) read in
        ``timezone`` (IANA; UTC when left out). ``overlap="skip"`` (the default) skips a
        fire while the previous execution is still running or paused; ``"allow"`` does not.
        """
        data = dict(input_data) if isinstance(input_data, Mapping) else input_data
        body = _fields(
            blueprint_id=blueprint_id,
            schedule=schedule,
            timezone=timezone,
            input_data=data,
            enabled=enabled,
            overlap=overlap,
        )
        return Call("POST", ROOT, returns(Schedule), body=body)

    @endpoint
    def list(
        self, *, blueprint_id: str | None = None, limit: int = 25, cursor: str | None = None
    ) -> Call[Page[Schedule]]:
        """One page of the project's schedules (of one blueprint, if given), newest first."""
        params = query(blueprint_id=blueprint_id, limit=limit, cursor=cursor)
        return Call("GET", ROOT, returns_page("schedules", Schedule), params)

    iter = paginate(list)
    """Every schedule that matches, newest first, following cursors."""

    @endpoint
    def get(self, schedule_id: str) -> Call[Schedule]:
        """One schedule, with its next and last fire."""
        return Call("GET", _path(schedule_id), returns(Schedule))

    @endpoint
    def update(
        self,
        schedule_id: str,
        *,
        schedule: str | Unset = UNSET,
        timezone: str | Unset = UNSET,
        input_data: Mapping[str, Any] | Unset = UNSET,
        enabled: bool | Unset = UNSET,
        overlap: OverlapName | Unset = UNSET,
    ) -> Call[Schedule]:
        """Change the fields given (PATCH); the others stay. ``next_fire_at`` is computed
        again from now (None while disabled)."""
        data = dict(input_data) if isinstance(input_data, Mapping) else input_data
        body = _fields(
            schedule=schedule, timezone=timezone, input_data=data, enabled=enabled, overlap=overlap
        )
        return Call("PATCH", _path(schedule_id), returns(Schedule), body=body)

    @endpoint
    def delete(self, schedule_id: str) -> Call[ScheduleDeleted]:
        """Delete a schedule; its executions run on."""
        return Call("DELETE", _path(schedule_id), returns(ScheduleDeleted))

    @endpoint
    def trigger(self, schedule_id: str) -> Call[Triggered]:
        """Fire now, enabled or not and whatever ``overlap`` says: the execution started."""
        return Call("POST", _path(schedule_id, "trigger"), _triggered)


def _triggered(response: httpx.Response) -> Triggered:
    started = returns(Triggered)(response)
    replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
    return msgspec.structs.replace(started, replayed=replayed)
