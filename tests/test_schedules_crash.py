"""kill -9 around a schedule's fire: a slot never starts two executions.

``flowyard serve`` runs as a real child process. Its schedule's ``next_fire_at`` is set back
to a slot that has passed while it is down (what a crash between the trigger's commit and the
schedule's leaves), so each start fires that slot at once; the server is killed at different
moments around the fire, again and again. However many times the slot was fired, the
idempotency key ``schedule:<id>:<fire time>`` holds it to one execution.
"""

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from flowyard.storage.schedules import put_schedule
from flowyard.workflows.schedules import Schedule
from tests import store_support
from tests.conftest import ServerProcess, fresh_db
from tests.http_support import api
from tests.schedule_support import (
    create_schedule,
    executions_of,
    get_schedule,
    key_time,
    ms,
    scheduled_blueprint,
    wait_schedule,
)

StartServer = Callable[..., ServerProcess]
YEARLY = "0 0 1 1 *"


async def start(server_process: StartServer, db: str) -> ServerProcess:
    return await anyio.to_thread.run_sync(lambda: server_process(db))


def rewind(db: str, schedule_id: str, slot: int) -> None:
    """Set the stored schedule's next fire back to ``slot`` (the server is down)."""
    [(doc,)] = store_support.read(
        db, "SELECT doc FROM workflow_schedules WHERE id = ?", schedule_id
    )
    stored = msgspec.json.decode(bytes(doc), type=Schedule)
    back = msgspec.structs.replace(stored, next_fire_at=slot)
    store_support.write(db, put_schedule(back))


async def test_kill9_around_a_fire_never_fires_a_slot_twice(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = fresh_db(tmp_path)
    key = await anyio.to_thread.run_sync(lambda: create_key_sync(db, "sched", list(ALL_SCOPES)).key)
    server = await start(server_process, db)
    async with api(server.url, key) as client:
        blueprint = await scheduled_blueprint(client)
        # overlap "allow": a second fire of the slot would not be held back by the first's
        # execution still running; only the key stands in its way.
        schedule = await create_schedule(client, blueprint["id"], schedule=YEARLY, overlap="allow")
    server.kill9()
    this_year = datetime(datetime.now(UTC).year, 1, 1, tzinfo=UTC)
    slot = int(this_year.timestamp() * 1000)
    for round_ in range(6):
        await anyio.to_thread.run_sync(rewind, db, schedule["id"], slot)
        server = await start(server_process, db)  # the slot fires as it becomes ready
        await anyio.sleep(round_ * 0.02)
        server.kill9()
    await anyio.to_thread.run_sync(rewind, db, schedule["id"], slot)
    server = await start(server_process, db)
    async with api(server.url, key) as client:
        fired = await wait_schedule(client, schedule["id"], lambda s: ms(s["next_fire_at"]) > slot)
        assert ms(fired["last_fire_at"]) == slot
        assert fired["next_fire_at"] == schedule["next_fire_at"]  # next year's
        runs = await executions_of(client, blueprint["id"])
        keys = Counter(r["idempotency_key"] for r in runs)
        assert keys == {f"schedule:{schedule['id']}:{key_time(slot)}": 1}
        assert fired["last_execution_id"] == runs[0]["id"]
        assert (await get_schedule(client, schedule["id"]))["enabled"] is True
    assert server.terminate() == 0
