"""The crash windows of for_each sub_workflow steps, each made exactly: the service is
stopped, the store is left as a crash inside the window would leave it, and the service
starts again on it.

- the parent committed its items' starts, their children were never made: the restart makes
  them (once each, with the input each item renders);
- an item child's end was committed, its parent's was not: the restart gives the item the
  child's outcome;
- the parent's cancel was committed, its item children's were not: the restart cancels them.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from flowyard.storage import workflows as store
from flowyard.storage.port import Store
from flowyard.storage.store_keys import with_store
from flowyard.storage.stores import store_for
from flowyard.workflows.state import (
    ExecutionState,
    ExecutionStatus,
    ItemState,
    ItemStatus,
    MapProgress,
    StepStatus,
)
from tests.conftest import fresh_db
from tests.test_map_children_e2e import child_map, children, items
from tests.test_sub_workflows_restart import cancelled, completed, rewrite, with_step
from tests.workflow_support import (
    create_blueprint,
    execution,
    pull_step,
    step_of,
    trigger,
    wait_execution,
    wait_status,
    workers,
)

replace = msgspec.structs.replace


async def put_items(db: str, execution_id: str, step_id: str, found: list[ItemState]) -> None:
    """Store these items of the execution's step, with no server running."""

    async def work(opened: Store) -> None:
        await opened.commit(store.put_items(execution_id, step_id, found))

    with anyio.fail_after(10):
        await with_store(store_for(db), work)


async def test_item_starts_lost_in_a_crash_are_made_once_on_restart(
    tmp_path: Path, service_with: Callable[..., Any]
) -> None:
    db = fresh_db(tmp_path)
    async with service_with(db=db) as service:
        client = service.client
        child_bp = await create_blueprint(
            client,
            [pull_step("work", "mr-child", {"n": "{{input.n}}", "i": "{{input.i}}"})],
            name="child",
        )
        gate = pull_step("gate", "mr-gate")
        each = child_map("each", child_bp["id"], depends_on=["gate"])
        parent_bp = await create_blueprint(client, [gate, each], name="parent")
        parent_id = (await trigger(client, parent_bp["id"], {"xs": [5, 6, 7]}))["execution_id"]

    def started_without_children(state: ExecutionState) -> ExecutionState:
        now = state.started_at + 5
        state = with_step(state, "gate", status=StepStatus.COMPLETED, output=1, completed_at=now)
        progress = MapProgress(total=3, queued=2, next=2)
        return with_step(
            state, "each", status=StepStatus.RUNNING, attempt=1, started_at=now, items=progress
        )

    queued = [
        ItemState(index=i, value=x, status=ItemStatus.QUEUED, attempt=1)
        for i, x in enumerate([5, 6])
    ]
    await rewrite(db, parent_id, started_without_children)
    await put_items(db, parent_id, "each", [*queued, ItemState(index=2, value=7)])
    async with service_with(db=db) as service:
        client = service.client
        listed = await items(client, parent_id, "each")
        assert [i["status"] for i in listed] == ["running", "running", "pending"]
        kids = {c["id"]: c for c in await children(client, parent_id)}
        assert len(kids) == 2
        for item in listed[:2]:
            kid = kids[item["child_execution_id"]]
            assert kid["input_data"] == {"n": item["index"] + 5, "i": item["index"]}
            assert kid["idempotency_key"] == f"sub_workflow:{parent_id}:each[{item['index']}]:1"
        async with workers(client, {"mr-child": lambda job: job["payload"]["n"]}):
            final = await wait_status(client, parent_id, "completed")
        assert step_of(final, "each")["output"] == [{"work": 5}, {"work": 6}, {"work": 7}]
        assert len(await children(client, parent_id)) == 3


async def test_item_child_ends_lost_in_a_crash_reach_the_parent_on_restart(
    tmp_path: Path, service_with: Callable[..., Any]
) -> None:
    db = fresh_db(tmp_path)
    async with service_with(db=db) as service:
        client = service.client
        child_bp = await create_blueprint(client, [pull_step("work", "mr-end")], name="child")
        parent_bp = await create_blueprint(
            client, [child_map("each", child_bp["id"])], name="parent"
        )
        parent_id = (await trigger(client, parent_bp["id"], {"xs": [1, 2]}))["execution_id"]
        await wait_execution(
            client, parent_id, lambda s: step_of(s, "each")["items"]["running"] == 2
        )
        ok_child, bad_child = [
            i["child_execution_id"] for i in await items(client, parent_id, "each")
        ]

    await rewrite(db, ok_child, completed)
    await rewrite(db, bad_child, cancelled)
    async with service_with(db=db) as service:
        client = service.client
        final = await wait_status(client, parent_id, "failed")
        listed = await items(client, parent_id, "each")
        assert [i["status"] for i in listed] == ["completed", "failed"]
        assert listed[0]["output"] == {"work": 7}
        assert listed[1]["error"] == {
            "code": "sub_workflow_failed",
            "message": f"child execution {bad_child} ended cancelled",
        }
        assert step_of(final, "each")["error"]["code"] == "sub_workflow_failed"


async def test_item_children_of_a_parent_cancelled_in_a_crash_are_cancelled_on_restart(
    tmp_path: Path, service_with: Callable[..., Any]
) -> None:
    db = fresh_db(tmp_path)
    async with service_with(db=db) as service:
        client = service.client
        child_bp = await create_blueprint(client, [pull_step("work", "mr-orphan")], name="child")
        parent_bp = await create_blueprint(
            client, [child_map("each", child_bp["id"])], name="parent"
        )
        parent_id = (await trigger(client, parent_bp["id"], {"xs": [1, 2, 3]}))["execution_id"]
        await wait_execution(
            client, parent_id, lambda s: step_of(s, "each")["items"]["running"] == 2
        )
        kids = [c["id"] for c in await children(client, parent_id)]
    assert len(kids) == 2

    def cancelled(state: ExecutionState) -> ExecutionState:
        at = state.started_at + 5
        state = with_step(state, "each", status=StepStatus.CANCELLED, completed_at=at)
        return replace(state, status=ExecutionStatus.CANCELLED, cancelled_at=at)

    await rewrite(db, parent_id, cancelled)
    async with service_with(db=db) as service:
        client = service.client
        for kid in kids:
            assert (await execution(client, kid))["status"] == "cancelled"
        assert (await execution(client, parent_id))["status"] == "cancelled"
