"""Times in an execution's event data are RFC 3339 like every other time of the API, for events
written before this was so as well (the log itself keeps epoch milliseconds)."""

import re

import anyio
import msgspec

from tests.conftest import Service
from tests.store_support import read
from tests.workflow_support import events, execution, pull_step, start, wait_status

RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def stored_data(db: str, execution_id: str, kind: str) -> list[dict[str, object]]:
    """The ``data`` of every stored event of ``kind``, as the log holds it."""
    rows = read(db, "SELECT doc FROM events WHERE execution_id = ? ORDER BY seq", execution_id)
    docs = [msgspec.json.decode(row[0]) for row in rows]
    return [doc.get("data", {}) for doc in docs if doc["type"] == kind]


async def test_deadline_at_in_resumed_and_timed_out_events_is_rfc3339(service: Service) -> None:
    client = service.client
    execution_id = await start(client, [pull_step("a", "times")], max_duration_sec=1)
    paused = await client.post(f"/infra/workflows/executions/{execution_id}/pause")
    assert paused.status_code == 200, paused.text
    resumed = await client.post(f"/infra/workflows/executions/{execution_id}/resume", json={})
    assert resumed.status_code == 200, resumed.text
    window = (await execution(client, execution_id))["deadline_at"]
    assert re.match(RFC3339, window)

    state = await wait_status(client, execution_id, "failed", timeout=10)
    assert state["error"]["code"] == "timed_out"
    by_type = {event["type"]: event["data"] for event in await events(client, execution_id)}
    assert by_type["resumed"]["deadline_at"] == window
    assert by_type["timed_out"] == {"deadline_at": state["deadline_at"]}
    assert state["deadline_at"] == window
    # The log keeps the milliseconds it always kept: older logs read the same way.
    with anyio.fail_after(10):
        stored = await anyio.to_thread.run_sync(stored_data, service.db, execution_id, "timed_out")
    assert isinstance(stored[0]["deadline_at"], int)
