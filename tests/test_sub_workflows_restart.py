"""The crash windows of sub_workflow steps, each made exactly: the service is stopped, the
store is left as a crash inside the window would leave it, and the service starts again on it.

- the parent committed its step's start, the child was never made: the restart starts it
  (once, with the input the step renders);
- the child's end was committed, its parent's was not: the restart gives the parent the
  child's outcome;
- the parent's cancel was committed, its child's was not: the restart cancels the child.
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
from flowyard.workflows.state import ExecutionState, ExecutionStatus, StepStatus
from tests.conftest import fresh_db
from tests.test_sub_workflows_e2e import children, sub_step
from tests.workflow_support import (
    create_blueprint,
    execution,
    pull_step,
    step_of,
    trigger,
    wait_status,
    wait_step,
    workers,
)

replace = msgspec.structs.replace
Edit = Callable[[ExecutionState], ExecutionState]


async def rewrite(db: str, execution_id: str, edit: Edit) -> None:
    """Store ``edit(execution)`` in place of the execution, with no server running."""

    async def work(opened: Store) -> None:
        state = await store.get_execution(opened, execution_id)
        assert state is not None
        await opened.commit([store.put_execution(edit(state))])

    with anyio.fail_after(10):
        await with_store(store_for(db), work)


def with_step(state: ExecutionState, step_id: str, **changes: Any) -> ExecutionState:
    steps = dict(state.steps)
    steps[step_id] = replace(steps[step_id], **changes)
    return replace(state, steps=steps)


def completed(state: ExecutionState) -> ExecutionState:
    """A child whose ``work`` step completed with 7, as its final commit leaves it."""
    at = state.started_at + 5
    state = with_step(state, "work", status=StepStatus.COMPLETED, output=7, completed_at=at)
    return replace(state, status=ExecutionStatus.COMPLETED, completed_at=at)


def cancelled(state: ExecutionState) -> ExecutionState:
    """A child cancelled while its ``work`` step was out."""
    at = state.started_at + 5
    state = with_step(state, "work", status=StepStatus.CANCELLED, completed_at=at)
    return replace(state, status=ExecutionStatus.CANCELLED, cancelled_at=at)


async def test_a_start_lost_in_a_crash_is_made_once_on_restart(
    tmp_path: Path, service_with: Callable[..., Any]
) -> None:
    db = fresh_db(tmp_path)
    async with service_with(db=db) as service:
        client = service.client
        child_bp = await create_blueprint(
            client, [pull_step("work", "rs-child", {"n": "{{input.n}}"})], name="child"
        )
        parent_bp = await create_blueprint(
            client,
            [
                pull_step("gate", "rs-gate"),
                sub_step(
                    "run", child_bp["id"], {"n": "{{steps.gate.output.n}}"}, depends_on=["gate"]
                ),
            ],
            name="parent",
        )
        parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]
        started = (await execution(client, parent_id))["started_at"]
    assert started

    def started_without_child(state: ExecutionState) -> ExecutionState:
        now = state.started_at + 5
        state = with_step(
            state, "gate", status=StepStatus.COMPLETED, output={"n": 41}, completed_at=now
        )
        return with_step(state, "run", status=StepStatus.RUNNING, attempt=1, started_at=now)

    await rewrite(db, parent_id, started_without_child)
    async with service_with(db=db) as service:
        client = service.client
        state = await execution(client, parent_id)
        run = step_of(state, "run")
        assert run["status"] == "running" and run["attempt"] == 1
        [child] = await children(client, parent_id)
        assert run["child_execution_id"] == child["id"]
        assert child["input_data"] == {"n": 41}
        assert child["idempotency_key"] == f"sub_workflow:{parent_id}:run:1"
        async with workers(client, {"rs-child": lambda job: job["payload"]["n"] + 1}):
            final = await wait_status(client, parent_id, "completed")
        assert step_of(final, "run")["output"] == {"work": 42}
        assert len(await children(client, parent_id)) == 1


async def test_a_child_end_lost_in_a_crash_reaches_the_parent_on_restart(
    tmp_path: Path, service_with: Callable[..., Any]
) -> None:
    db = fresh_db(tmp_path)
    async with service_with(db=db) as service:
        client = service.client
        child_bp = await create_blueprint(client, [pull_step("work", "rs-end")], name="child")
        parent_bp = await create_blueprint(
            client,
            [sub_step("ok", child_bp["id"]), sub_step("bad", child_bp["id"])],
            name="parent",
        )
        parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]
        state = await execution(client, parent_id)
        ok_child = step_of(state, "ok")["child_execution_id"]
        bad_child = step_of(state, "bad")["child_execution_id"]

    await rewrite(db, ok_child, completed)
    await rewrite(db, bad_child, cancelled)
    async with service_with(db=db) as service:
        client = service.client
        final = await wait_status(client, parent_id, "failed")
        assert step_of(final, "ok")["status"] == "completed"
        assert step_of(final, "ok")["output"] == {"work": 7}
        assert step_of(final, "bad")["error"] == {
            "code": "sub_workflow_failed",
            "message": f"child execution {bad_child} ended cancelled",
        }


async def test_a_child_whose_parent_was_cancelled_in_a_crash_is_cancelled_on_restart(
    tmp_path: Path, service_with: Callable[..., Any]
) -> None:
    db = fresh_db(tmp_path)
    async with service_with(db=db) as service:
        client = service.client
        child_bp = await create_blueprint(client, [pull_step("work", "rs-orphan")], name="child")
        parent_bp = await create_blueprint(client, [sub_step("run", child_bp["id"])], name="parent")
        parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]
        state = await wait_step(client, parent_id, "run", "running")
        child_id = step_of(state, "run")["child_execution_id"]

    def cancelled(state: ExecutionState) -> ExecutionState:
        at = state.started_at + 5
        state = with_step(state, "run", status=StepStatus.CANCELLED, completed_at=at)
        return replace(state, status=ExecutionStatus.CANCELLED, cancelled_at=at)

    await rewrite(db, parent_id, cancelled)
    async with service_with(db=db) as service:
        client = service.client
        assert (await execution(client, child_id))["status"] == "cancelled"
        assert (await execution(client, parent_id))["status"] == "cancelled"
