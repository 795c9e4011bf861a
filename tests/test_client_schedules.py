"""``client.workflows.schedules`` on both clients against the real server: create, list,
get, update, delete, trigger, and the errors they raise."""

import pytest

from flowyard.client import Conflict, NotFound
from flowyard.client.errors import BadRequest
from flowyard.client.models import Schedule, ScheduleDeleted, Triggered
from tests.sdk_support import Api

YEARLY = "0 0 1 1 *"
STEP = {
    "id": "greet",
    "job_trigger": {"trigger": {"type": "pull", "queue": "sdk-sched"}},
    "payload_template": {"hello": "{{input.who}}"},
}


async def test_schedules_round_trip(api: Api) -> None:
    blueprint = await api.workflows.create_blueprint({"name": "sdk", "steps": [STEP]})
    made = await api.workflows.schedules.create(
        blueprint.id, YEARLY, timezone="Asia/Tokyo", input_data={"who": "sdk"}
    )
    assert isinstance(made, Schedule)
    assert made.id.startswith("wfsch_") and made.blueprint_id == blueprint.id
    assert (made.timezone, made.overlap, made.enabled) == ("Asia/Tokyo", "skip", True)
    assert made.input_data == {"who": "sdk"}
    assert made.next_fire_at is not None and made.last_execution_id is None
    assert await api.workflows.schedules.get(made.id) == made

    other = await api.workflows.schedules.create(
        blueprint.id, "0 9 * * 1", input_data={"who": "b"}, overlap="allow", enabled=False
    )
    assert other.overlap == "allow" and other.next_fire_at is None
    page = await api.workflows.schedules.list(limit=1)
    assert [s.id for s in page.items] == [other.id] and page.next_cursor is not None
    listed = await api.workflows.schedules.iter(blueprint_id=blueprint.id)
    assert [s.id for s in listed] == [other.id, made.id]

    changed = await api.workflows.schedules.update(made.id, enabled=False, overlap="allow")
    assert changed.enabled is False and changed.next_fire_at is None
    assert changed.schedule == YEARLY and changed.input_data == {"who": "sdk"}

    fired = await api.workflows.schedules.trigger(made.id)
    assert isinstance(fired, Triggered) and fired.replayed is False
    assert fired.blueprint_id == blueprint.id and fired.status == "running"
    execution = await api.workflows.get_execution(fired.execution_id)
    assert execution.input_data == {"who": "sdk"}
    assert execution.idempotency_key is not None
    assert execution.idempotency_key.startswith(f"schedule:{made.id}:")
    assert (await api.workflows.schedules.get(made.id)).last_execution_id == fired.execution_id

    deleted = await api.workflows.schedules.delete(made.id)
    assert deleted == ScheduleDeleted(id=made.id, deleted=True)
    with pytest.raises(NotFound):
        await api.workflows.schedules.get(made.id)


async def test_schedule_errors(api: Api) -> None:
    blueprint = await api.workflows.create_blueprint({"name": "sdk", "steps": [STEP]})
    with pytest.raises(BadRequest) as bad:
        await api.workflows.schedules.create(blueprint.id, "nope", timezone="Nowhere/City")
    assert [d["path"] for d in bad.value.details] == [
        "$.schedule",
        "$.timezone",
        "$.input_data.who",
    ]
    made = await api.workflows.schedules.create(blueprint.id, YEARLY, input_data={"who": 1})
    await api.workflows.archive_blueprint(blueprint.id)
    with pytest.raises(Conflict):
        await api.workflows.schedules.trigger(made.id)
    with pytest.raises(Conflict):
        await api.workflows.schedules.create(blueprint.id, YEARLY, input_data={"who": 1})
