"""Workflow schedules firing at their cron time, on a clock the test moves: the slot's
idempotency key, ``overlap`` skip and allow, disabled schedules, missed fires collapsed into
one after a restart, an archived blueprint, and no tokens at fire time."""

from pathlib import Path
from typing import Any

import anyio

from flowyard.actors.schedules import ScheduleDue
from flowyard.errors import Unavailable
from flowyard.storage.intents import PutSchedule
from flowyard.storage.sqlite import RETRY_MS
from tests.conftest import Service, fresh_db, running_service
from tests.fake_clock import FakeClock
from tests.schedule_support import (
    SCHEDULES,
    create_schedule,
    executions_of,
    get_schedule,
    key_time,
    ms,
    scheduled_blueprint,
    wait_schedule,
)
from tests.workflow_support import ack, claim_one, execution, wait_status


async def _armed(service: Service, schedule: dict[str, Any]) -> int:
    """The schedule's next fire, as armed in the timer service."""
    due = ms(schedule["next_fire_at"])
    timers = service.supervisor.jobs.timers
    assert timers.due(ScheduleDue(schedule["id"], due)) == due
    return due


async def _fired(service: Service, schedule_id: str, after: int) -> dict[str, Any]:
    """The schedule once its next fire moved past ``after``."""
    return await wait_schedule(
        service.client, schedule_id, lambda s: ms(s["next_fire_at"] or "1970-01-01Z") > after
    )


async def test_fires_at_the_minute_with_the_slot_key(service_with: Any) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"])
        due = await _armed(service, schedule)
        assert due % 60_000 == 0 and 0 < due - ms(schedule["created_at"]) <= 60_000
        clock.advance(ms=due - clock.now_ms() - 1)
        await anyio.wait_all_tasks_blocked()
        assert await executions_of(service.client, blueprint["id"]) == []  # not a ms early
        clock.advance(ms=1)
        fired = await _fired(service, schedule["id"], due)
        assert ms(fired["next_fire_at"]) == due + 60_000
        assert ms(fired["last_fire_at"]) == due
        [started] = await executions_of(service.client, blueprint["id"])
        assert fired["last_execution_id"] == started["id"]
        assert started["idempotency_key"] == f"schedule:{schedule['id']}:{key_time(due)}"
        assert started["input_data"] == {"who": "world"}
        assert fired["updated_at"] == schedule["updated_at"]  # fires are not client changes
        job = await claim_one(service.client, "sched")
        assert job["payload"] == {"hello": "world"}


async def test_overlap_skip_waits_for_the_previous_execution(service_with: Any) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"])
        due = await _armed(service, schedule)
        clock.advance(ms=due - clock.now_ms())
        first = await _fired(service, schedule["id"], due)
        # The first execution runs on (nobody takes its job): the next minute is skipped.
        clock.advance(seconds=60)
        skipped = await _fired(service, schedule["id"], due + 60_000)
        assert ms(skipped["next_fire_at"]) == due + 120_000
        assert skipped["last_execution_id"] == first["last_execution_id"]
        assert skipped["last_fire_at"] == first["last_fire_at"]
        assert len(await executions_of(service.client, blueprint["id"])) == 1
        # Paused counts as still going.
        paused = await service.client.post(
            f"/infra/workflows/executions/{first['last_execution_id']}/pause"
        )
        assert paused.status_code == 200, paused.text
        clock.advance(seconds=60)
        await _fired(service, schedule["id"], due + 120_000)
        assert len(await executions_of(service.client, blueprint["id"])) == 1
        # Once it ended, the next minute fires.
        await service.client.post(
            f"/infra/workflows/executions/{first['last_execution_id']}/resume"
        )
        job = await claim_one(service.client, "sched")
        await ack(service.client, job, {"ok": True})
        await wait_status(service.client, first["last_execution_id"], "completed")
        clock.advance(seconds=60)
        again = await _fired(service, schedule["id"], due + 180_000)
        assert again["last_execution_id"] != first["last_execution_id"]
        assert ms(again["last_fire_at"]) == due + 180_000
        assert len(await executions_of(service.client, blueprint["id"])) == 2


async def test_overlap_allow_fires_while_the_previous_runs(service_with: Any) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"], overlap="allow")
        due = await _armed(service, schedule)
        clock.advance(ms=due - clock.now_ms())
        first = await _fired(service, schedule["id"], due)
        clock.advance(seconds=60)
        second = await _fired(service, schedule["id"], due + 60_000)
        assert second["last_execution_id"] != first["last_execution_id"]
        runs = await executions_of(service.client, blueprint["id"])
        assert [r["status"] for r in runs] == ["running", "running"]
        assert [r["idempotency_key"].rsplit(":", 3)[-3:] for r in runs] == [
            key_time(due).split(":"),
            key_time(due + 60_000).split(":"),
        ]


async def test_disabled_schedules_do_not_fire(service_with: Any) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"])
        due = await _armed(service, schedule)
        off = await service.client.patch(f"{SCHEDULES}/{schedule['id']}", json={"enabled": False})
        assert off.status_code == 200, off.text
        assert service.supervisor.jobs.timers.due(ScheduleDue(schedule["id"], due)) is None
        clock.advance(seconds=180)
        await anyio.wait_all_tasks_blocked()
        assert await executions_of(service.client, blueprint["id"]) == []
        # Enabled again, it fires at the next minute from now, not for the ones it missed.
        on = await service.client.patch(f"{SCHEDULES}/{schedule['id']}", json={"enabled": True})
        due = await _armed(service, on.json())
        assert due > clock.now_ms()
        clock.advance(ms=due - clock.now_ms())
        fired = await _fired(service, schedule["id"], due)
        assert ms(fired["last_fire_at"]) == due
        assert len(await executions_of(service.client, blueprint["id"])) == 1


async def test_deleted_schedules_do_not_fire(service_with: Any) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"])
        due = await _armed(service, schedule)
        assert (await service.client.delete(f"{SCHEDULES}/{schedule['id']}")).status_code == 200
        assert service.supervisor.jobs.timers.due(ScheduleDue(schedule["id"], due)) is None
        clock.advance(seconds=120)
        await anyio.wait_all_tasks_blocked()
        assert await executions_of(service.client, blueprint["id"]) == []


async def test_missed_fires_collapse_into_one_after_a_restart(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    clock = FakeClock()
    async with running_service(tmp_path, clock, db=db) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"], overlap="allow")
        due = ms(schedule["next_fire_at"])
    # Down for ten minutes and a half: ten slots passed.
    later = FakeClock(due + 9 * 60_000 + 30_000)
    async with running_service(tmp_path, later, db=db) as service:
        fired = await _fired(service, schedule["id"], due)
        latest = due + 9 * 60_000
        assert ms(fired["last_fire_at"]) == latest
        assert ms(fired["next_fire_at"]) == latest + 60_000
        [started] = await executions_of(service.client, blueprint["id"])
        assert started["idempotency_key"] == f"schedule:{schedule['id']}:{key_time(latest)}"
        await anyio.sleep(0.05)
        assert len(await executions_of(service.client, blueprint["id"])) == 1
        later.advance(seconds=30)
        await _fired(service, schedule["id"], latest + 60_000)
        assert len(await executions_of(service.client, blueprint["id"])) == 2


async def test_archived_blueprint_disables_its_schedule_at_the_next_fire(
    service_with: Any,
) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"])
        due = await _armed(service, schedule)
        archived = await service.client.delete(f"/infra/workflows/blueprints/{blueprint['id']}")
        assert archived.status_code == 200
        clock.advance(ms=due - clock.now_ms())
        off = await wait_schedule(service.client, schedule["id"], lambda s: not s["enabled"])
        assert off["next_fire_at"] is None and off["last_fire_at"] is None
        assert await executions_of(service.client, blueprint["id"]) == []
        assert (await service.client.get("/readyz")).status_code == 200


async def test_no_tokens_at_fire_time_skips_the_fire(service_with: Any) -> None:
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"])
        due = await _armed(service, schedule)
        admin = await anyio.to_thread.run_sync(lambda: service.new_key("ops", admin=True))
        async with service.client_for(admin) as ops:
            empty = await ops.patch(
                f"/admin/projects/{service.project_id}", json={"token_balance": 0}
            )
            assert empty.status_code == 200, empty.text
            clock.advance(ms=due - clock.now_ms())
            # Reads cost tokens too: the schedule as the server holds it.
            held = service.supervisor.schedules.schedules
            with anyio.fail_after(10):
                while held[schedule["id"]].next_fire_at == due:
                    await anyio.sleep(0.01)
            moved = held[schedule["id"]]
            assert moved.last_fire_at is None and moved.enabled
            assert moved.next_fire_at == due + 60_000
            refill = await ops.patch(
                f"/admin/projects/{service.project_id}", json={"token_balance": None}
            )
            assert refill.status_code == 200, refill.text
        assert await executions_of(service.client, blueprint["id"]) == []
        clock.advance(seconds=60)
        fired = await _fired(service, schedule["id"], due + 60_000)
        assert ms(fired["last_fire_at"]) == due + 60_000
        state = await execution(service.client, fired["last_execution_id"])
        assert state["status"] == "running"
        assert (await get_schedule(service.client, schedule["id"]))["enabled"] is True


async def test_a_fire_refused_by_storage_is_made_again_with_the_same_key(
    service_with: Any, monkeypatch: Any
) -> None:
    """The trigger commits but the schedule's own write is refused: the slot is fired again a
    moment later, and its key answers the execution the first try started."""
    clock = FakeClock()
    async with service_with(clock=clock) as service:
        blueprint = await scheduled_blueprint(service.client)
        schedule = await create_schedule(service.client, blueprint["id"], overlap="allow")
        due = await _armed(service, schedule)
        db = service.supervisor.db
        commit = db.commit
        refused: list[int] = []

        async def failing(intents: list[Any]) -> None:
            if any(isinstance(i, PutSchedule) for i in intents) and not refused:
                refused.append(clock.now_ms())
                raise Unavailable("the disk is full")
            await commit(intents)

        monkeypatch.setattr(db, "commit", failing)
        clock.advance(ms=due - clock.now_ms())
        with anyio.fail_after(10):
            while not refused:
                await anyio.sleep(0.01)
        [first] = await executions_of(service.client, blueprint["id"])
        retry = ScheduleDue(schedule["id"], due)
        with anyio.fail_after(10):
            while service.supervisor.jobs.timers.due(retry) != due + RETRY_MS:
                await anyio.sleep(0.01)
        clock.advance(ms=RETRY_MS)
        fired = await _fired(service, schedule["id"], due)
        assert fired["last_execution_id"] == first["id"]
        assert ms(fired["last_fire_at"]) == due
        assert [e["id"] for e in await executions_of(service.client, blueprint["id"])] == [
            first["id"]
        ]
