"""``/infra/workflows/schedules`` over HTTP against the real server: every route, every
validation rule, scopes and projects. The schedules here fire once a year, so none fires
while a test runs (firing is ``test_schedules_firing.py``'s)."""

from typing import Any

import anyio

from tests.conftest import Service
from tests.schedule_support import (
    SCHEDULES,
    create_schedule,
    executions_of,
    get_schedule,
    ms,
    scheduled_blueprint,
)
from tests.workflow_support import create_blueprint, execution, pull_step

YEARLY = "0 0 1 1 *"


async def test_create_answers_the_schedule_with_its_defaults(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    made = await create_schedule(service.client, blueprint["id"], schedule=YEARLY)
    assert made["id"].startswith("wfsch_")
    assert set(made) == {
        "id",
        "blueprint_id",
        "schedule",
        "timezone",
        "input_data",
        "enabled",
        "overlap",
        "next_fire_at",
        "last_fire_at",
        "last_execution_id",
        "created_at",
        "updated_at",
    }
    assert made["blueprint_id"] == blueprint["id"]
    assert (made["schedule"], made["timezone"]) == (YEARLY, "UTC")
    assert made["input_data"] == {"who": "world"}
    assert made["enabled"] is True and made["overlap"] == "skip"
    assert made["last_fire_at"] is None and made["last_execution_id"] is None
    assert made["created_at"] == made["updated_at"]
    assert made["created_at"].endswith("Z") and len(made["created_at"]) == 24
    assert made["next_fire_at"].endswith("-01-01T00:00:00.000Z")
    assert ms(made["next_fire_at"]) > ms(made["created_at"])
    assert await get_schedule(service.client, made["id"]) == made


async def test_next_fire_is_read_in_the_timezone(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    tokyo = await create_schedule(
        service.client, blueprint["id"], schedule="0 9 * * *", timezone="Asia/Tokyo"
    )
    assert tokyo["timezone"] == "Asia/Tokyo"
    assert tokyo["next_fire_at"].endswith("T00:00:00.000Z")  # 09:00 in Tokyo
    assert 0 < ms(tokyo["next_fire_at"]) - ms(tokyo["created_at"]) <= 86_400_000


async def test_list_pages_newest_first_and_filters_by_blueprint(service: Service) -> None:
    first = await scheduled_blueprint(service.client)
    second = await scheduled_blueprint(service.client)
    made = [await create_schedule(service.client, first["id"], schedule=YEARLY) for _ in range(3)]
    other = await create_schedule(service.client, second["id"], schedule=YEARLY)
    response = await service.client.get(f"{SCHEDULES}?limit=2")
    assert response.status_code == 200, response.text
    page = response.json()
    assert [s["id"] for s in page["schedules"]] == [other["id"], made[2]["id"]]
    rest = (await service.client.get(f"{SCHEDULES}?limit=2&cursor={page['next_cursor']}")).json()
    assert [s["id"] for s in rest["schedules"]] == [made[1]["id"], made[0]["id"]]
    assert rest["next_cursor"] is None
    only = (await service.client.get(f"{SCHEDULES}?blueprint_id={first['id']}")).json()
    assert [s["id"] for s in only["schedules"]] == [s["id"] for s in made[::-1]]
    assert only["schedules"][0] == made[2]
    bad = await service.client.get(f"{SCHEDULES}?cursor=nope")
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request"
    assert (await service.client.get(f"{SCHEDULES}?limit=0")).status_code == 400


async def test_patch_changes_fields_and_recomputes_next_fire(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    made = await create_schedule(service.client, blueprint["id"], schedule=YEARLY)
    await anyio.sleep(0.002)
    url = f"{SCHEDULES}/{made['id']}"
    response = await service.client.patch(
        url, json={"schedule": "30 5 * * *", "timezone": "Asia/Kolkata", "overlap": "allow"}
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["schedule"], changed["timezone"], changed["overlap"]) == (
        "30 5 * * *",
        "Asia/Kolkata",
        "allow",
    )
    assert changed["next_fire_at"].endswith("T00:00:00.000Z")  # 05:30 in Kolkata
    assert ms(changed["next_fire_at"]) - ms(changed["updated_at"]) <= 86_400_000
    assert changed["updated_at"] > made["updated_at"]
    assert changed["created_at"] == made["created_at"]
    assert changed["input_data"] == made["input_data"]

    off = (await service.client.patch(url, json={"enabled": False})).json()
    assert off["enabled"] is False and off["next_fire_at"] is None
    on = (await service.client.patch(url, json={"enabled": True})).json()
    assert on["enabled"] is True and on["next_fire_at"] == changed["next_fire_at"]
    data = (await service.client.patch(url, json={"input_data": {"who": "you"}})).json()
    assert data["input_data"] == {"who": "you"}
    assert await get_schedule(service.client, made["id"]) == data
    empty = await service.client.patch(url, json={})
    assert empty.status_code == 200 and empty.json()["schedule"] == "30 5 * * *"


async def test_delete_removes_it(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    made = await create_schedule(service.client, blueprint["id"], schedule=YEARLY)
    url = f"{SCHEDULES}/{made['id']}"
    response = await service.client.delete(url)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": made["id"], "deleted": True}
    for answer in (
        await service.client.get(url),
        await service.client.delete(url),
        await service.client.patch(url, json={"enabled": False}),
        await service.client.post(f"{url}/trigger"),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["code"] == "not_found"
    assert (await service.client.get(SCHEDULES)).json()["schedules"] == []
    # Unknown ids leave nothing behind in the server's memory.
    assert made["id"] not in service.supervisor.schedules._locks
    for n in range(20):
        await service.client.patch(f"{SCHEDULES}/wfsch_{n}", json={"enabled": False})
    assert service.supervisor.schedules._locks == {}


async def test_trigger_fires_now_even_when_disabled(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    made = await create_schedule(
        service.client, blueprint["id"], schedule=YEARLY, enabled=False, input_data={"who": "x"}
    )
    response = await service.client.post(f"{SCHEDULES}/{made['id']}/trigger")
    assert response.status_code == 200, response.text
    started = response.json()
    assert set(started) == {"execution_id", "blueprint_id", "status", "started_at"}
    assert started["blueprint_id"] == blueprint["id"] and started["status"] == "running"
    state = await execution(service.client, started["execution_id"])
    assert state["input_data"] == {"who": "x"}
    # The time of the call with its milliseconds: never the key of a slot.
    assert state["idempotency_key"].startswith(f"schedule:{made['id']}:")
    stamp = state["idempotency_key"].removeprefix(f"schedule:{made['id']}:")
    assert stamp.endswith("Z") and len(stamp) == 24
    after = await get_schedule(service.client, made["id"])
    assert after["last_execution_id"] == started["execution_id"]
    assert after["last_fire_at"] == stamp
    assert after["next_fire_at"] is None and after["enabled"] is False
    # overlap "skip" does not hold back a fire asked for by hand
    again = await service.client.post(f"{SCHEDULES}/{made['id']}/trigger", json={})
    assert again.status_code == 200, again.text
    assert again.json()["execution_id"] != started["execution_id"]
    assert len(await executions_of(service.client, blueprint["id"])) == 2
    extra = await service.client.post(f"{SCHEDULES}/{made['id']}/trigger", json={"x": 1})
    assert extra.status_code == 400, extra.text


def _paths(response: Any) -> list[str]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "bad_request"
    return [d["path"] for d in body["details"]]


async def test_create_names_every_problem(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    body = {
        "blueprint_id": blueprint["id"],
        "schedule": "61 * * * *",
        "timezone": "Mars/Olympus",
        "input_data": {"nobody": 1},
    }
    paths = _paths(await service.client.post(SCHEDULES, json=body))
    assert paths == ["$.schedule", "$.timezone", "$.input_data.who"]
    for schedule in ("* * * *", "* * * * * *", "nonsense", "0 0 30 2 * extra", "0 0 31 2 *"):
        paths = _paths(await service.client.post(SCHEDULES, json={**body, "schedule": schedule}))
        assert "$.schedule" in paths
    unknown = {**body, "blueprint_id": "wf_01J00000000000000000000000"}
    assert _paths(await service.client.post(SCHEDULES, json=unknown)) == [
        "$.schedule",
        "$.timezone",
        "$.blueprint_id",
    ]
    fields = {**body, "cron": "x", "tz": "UTC"}
    assert _paths(await service.client.post(SCHEDULES, json=fields)) == ["$.cron", "$.tz"]
    folder = {**body, "schedule": YEARLY, "timezone": "America", "input_data": {"who": 1}}
    assert _paths(await service.client.post(SCHEDULES, json=folder)) == ["$.timezone"]
    wrong = {"blueprint_id": blueprint["id"], "schedule": "* * * * *", "overlap": "queue"}
    assert _paths(await service.client.post(SCHEDULES, json=wrong)) == ["$.overlap"]
    assert _paths(await service.client.post(SCHEDULES, json={"schedule": "* * * * *"})) == [
        "$.blueprint_id"
    ]
    assert (await service.client.get(SCHEDULES)).json()["schedules"] == []


async def test_other_project_blueprint_is_unknown(service: Service) -> None:
    other_key = await anyio.to_thread.run_sync(service.new_key)
    async with service.client_for(other_key) as other:
        theirs = await scheduled_blueprint(other)
        mine = await scheduled_blueprint(service.client)
        body = {"blueprint_id": theirs["id"], "schedule": YEARLY, "input_data": {"who": 1}}
        assert _paths(await service.client.post(SCHEDULES, json=body)) == ["$.blueprint_id"]
        made = await create_schedule(service.client, mine["id"], schedule=YEARLY)
        url = f"{SCHEDULES}/{made['id']}"
        for answer in (
            await other.get(url),
            await other.patch(url, json={"enabled": False}),
            await other.delete(url),
            await other.post(f"{url}/trigger"),
        ):
            assert answer.status_code == 404, answer.text
        assert (await other.get(SCHEDULES)).json()["schedules"] == []
        assert (await get_schedule(service.client, made["id"]))["enabled"] is True


async def test_patch_validates_like_create(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    made = await create_schedule(service.client, blueprint["id"], schedule=YEARLY)
    url = f"{SCHEDULES}/{made['id']}"
    bad = {"schedule": "* *", "timezone": "Nowhere/City", "input_data": {}}
    assert _paths(await service.client.patch(url, json=bad)) == [
        "$.schedule",
        "$.timezone",
        "$.input_data.who",
    ]
    moved = {"blueprint_id": blueprint["id"], "name": "x"}
    assert _paths(await service.client.patch(url, json=moved)) == ["$.blueprint_id", "$.name"]
    assert _paths(await service.client.patch(url, json={"enabled": "yes"})) == ["$.enabled"]
    assert await get_schedule(service.client, made["id"]) == made


async def test_archived_blueprint_cannot_be_scheduled_or_enabled(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    made = await create_schedule(service.client, blueprint["id"], schedule=YEARLY, enabled=False)
    archived = await service.client.delete(f"/infra/workflows/blueprints/{blueprint['id']}")
    assert archived.status_code == 200, archived.text
    body = {"blueprint_id": blueprint["id"], "schedule": YEARLY, "input_data": {"who": 1}}
    response = await service.client.post(SCHEDULES, json=body)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "conflict"
    # a bad body is still 400 first
    assert _paths(await service.client.post(SCHEDULES, json={**body, "timezone": "X/Y"})) == [
        "$.timezone"
    ]
    url = f"{SCHEDULES}/{made['id']}"
    enable = await service.client.patch(url, json={"enabled": True})
    assert enable.status_code == 409, enable.text
    assert (await service.client.patch(url, json={"overlap": "allow"})).status_code == 200
    fire = await service.client.post(f"{url}/trigger")
    assert fire.status_code == 409, fire.text
    assert (await service.client.delete(url)).status_code == 200


async def test_scopes(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    made = await create_schedule(service.client, blueprint["id"], schedule=YEARLY)
    url = f"{SCHEDULES}/{made['id']}"
    reader = await anyio.to_thread.run_sync(lambda: service.new_key("test", ["workflows:read"]))
    writer = await anyio.to_thread.run_sync(lambda: service.new_key("test", ["workflows:write"]))
    async with service.client_for(reader) as read_only, service.client_for(writer) as write_only:
        assert (await read_only.get(url)).status_code == 200
        assert (await read_only.get(SCHEDULES)).status_code == 200
        for answer in (
            await read_only.post(SCHEDULES, json={"blueprint_id": blueprint["id"]}),
            await read_only.patch(url, json={}),
            await read_only.delete(url),
            await read_only.post(f"{url}/trigger"),
        ):
            assert answer.status_code == 403, answer.text
            assert "workflows:write" in answer.json()["message"]
        assert (await write_only.get(url)).status_code == 403
        assert (await write_only.get(SCHEDULES)).status_code == 403
        assert (await write_only.patch(url, json={"overlap": "allow"})).status_code == 200
    async with service.client_for(None) as anonymous:
        assert (await anonymous.get(SCHEDULES)).status_code == 401


async def test_schedule_of_a_blueprint_without_inputs(service: Service) -> None:
    plain = await create_blueprint(service.client, [pull_step("a", "plain")])
    made = await create_schedule(service.client, plain["id"], schedule=YEARLY, input_data={})
    assert made["input_data"] == {}
    response = await service.client.post(
        SCHEDULES, json={"blueprint_id": plain["id"], "schedule": YEARLY}
    )
    assert response.status_code == 200, response.text
    assert response.json()["input_data"] == {}
