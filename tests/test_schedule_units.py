"""The pure rules of workflow schedules: next fire, latest slot, due slot, slot keys."""

from datetime import UTC, datetime

from flowyard.jobs.cron import ever_fires
from flowyard.jobs.spec import check_schedule, check_timezone
from flowyard.workflows.schedules import (
    Overlap,
    Schedule,
    due_slot,
    fire_time,
    latest_slot_ms,
    manual_key,
    next_fire_at,
    schedule_view,
    slot_key,
)


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def schedule(**fields: object) -> Schedule:
    values: dict[str, object] = {
        "id": "wfsch_1",
        "project_id": "proj_1",
        "blueprint_id": "wf_1",
        "schedule": "* * * * *",
        "created_at": 0,
        "updated_at": 0,
        **fields,
    }
    return Schedule(**values)  # type: ignore[arg-type]


def test_slot_key_is_the_slot_in_iso_8601_utc() -> None:
    slot = at("2026-12-06T20:30:00")
    assert fire_time(slot) == "2026-12-06T20:30:00Z"
    assert slot_key("wfsch_1", slot) == "schedule:wfsch_1:2026-12-06T20:30:00Z"


def test_manual_key_keeps_milliseconds_so_it_is_never_a_slot_key() -> None:
    slot = at("2026-12-06T20:30:00")
    assert manual_key("wfsch_1", slot) == "schedule:wfsch_1:2026-12-06T20:30:00.000Z"
    assert manual_key("wfsch_1", slot + 345) == "schedule:wfsch_1:2026-12-06T20:30:00.345Z"
    assert manual_key("wfsch_1", slot) != slot_key("wfsch_1", slot)


def test_next_fire_is_strictly_after_now_and_none_when_disabled() -> None:
    every_minute = schedule()
    assert next_fire_at(every_minute, at("2026-12-06T20:30:00")) == at("2026-12-06T20:31:00")
    assert next_fire_at(every_minute, at("2026-12-06T20:30:59")) == at("2026-12-06T20:31:00")
    assert next_fire_at(schedule(enabled=False), at("2026-12-06T20:30:00")) is None
    paris = schedule(schedule="0 9 * * *", timezone="Europe/Paris")
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_fire_at(paris, at("2026-12-06T20:30:00")) == at("2026-12-07T08:00:00")
    assert next_fire_at(paris, at("2026-07-01T00:00:00")) == at("2026-07-01T07:00:00")


def test_latest_slot_is_at_or_before() -> None:
    assert latest_slot_ms("* * * * *", "UTC", at("2026-12-06T20:30:00")) == at(
        "2026-12-06T20:30:00"
    )
    assert latest_slot_ms("* * * * *", "UTC", at("2026-12-06T20:30:59")) == at(
        "2026-12-06T20:30:00"
    )
    assert latest_slot_ms("0 0 1 1 *", "UTC", at("2026-12-06T20:30:00")) == at(
        "2026-01-01T00:00:00"
    )
    assert latest_slot_ms("0 9 * * *", "Asia/Tokyo", at("2026-12-06T20:30:00")) == at(
        "2026-12-06T00:00:00"
    )


def test_due_slot_collapses_missed_slots_into_the_latest() -> None:
    due = at("2026-12-06T20:30:00")
    pending = schedule(next_fire_at=due)
    assert due_slot(pending, due - 1) is None
    assert due_slot(pending, due) == due
    assert due_slot(pending, due + 30_000) == due
    assert due_slot(pending, due + 10 * 60_000 + 5) == due + 10 * 60_000
    assert due_slot(schedule(next_fire_at=due, enabled=False), due) is None
    assert due_slot(schedule(next_fire_at=None), due) is None


def test_view_has_the_contract_fields() -> None:
    view = schedule_view(schedule(next_fire_at=at("2026-12-06T20:30:00"), overlap=Overlap.ALLOW))
    assert view["next_fire_at"] == "2026-12-06T20:30:00.000Z"
    assert view["overlap"] == "allow" and view["timezone"] == "UTC"
    assert view["input_data"] == {} and view["last_fire_at"] is None
    assert "project_id" not in view


def test_a_schedule_that_never_fires_and_a_timezone_folder_are_refused() -> None:
    assert check_schedule("0 0 31 2 *", "$.schedule") == [
        {"path": "$.schedule", "message": "names no date that ever comes"}
    ]
    assert check_schedule("0 0 29 2 *", "$.schedule") == []  # leap years
    assert not ever_fires("0 0 30 2 *") and ever_fires("* * * * *")
    # A folder of the timezone database is no timezone (reading it fails with an OSError).
    assert check_timezone("America", "$.timezone") == [
        {"path": "$.timezone", "message": "unknown timezone 'America'"}
    ]
