"""sub_workflow steps end to end over real HTTP: a child's result becomes its step's output,
its failure is the step's (and catchable), cancel reaches children, nesting stops at depth 5,
and a blueprint naming a blueprint it cannot start is a 400."""

from typing import Any

import httpx

from tests.accounts_support import admin_client
from tests.conftest import Service
from tests.workflow_support import (
    WorkFailed,
    claim_one,
    create_blueprint,
    events,
    execution,
    pull_step,
    step_of,
    trigger,
    wait_status,
    wait_step,
    workers,
)

Json = dict[str, Any]


def sub_step(step_id: str, blueprint_id: str, template: Any = None, **fields: Any) -> Json:
    """A blueprint step that runs a child execution of ``blueprint_id``."""
    sub: Json = {"blueprint_id": blueprint_id}
    if template is not None:
        sub["input"] = template
    return {"id": step_id, "sub_workflow": sub, **fields}


async def leaf(client: httpx.AsyncClient, queue: str, name: str = "leaf") -> Json:
    """A one-step blueprint whose job waits on ``queue`` with the input's ``n``."""
    return await create_blueprint(
        client, [pull_step("work", queue, {"n": "{{input.n}}"})], name=name
    )


async def children(client: httpx.AsyncClient, parent_id: str) -> list[Json]:
    response = await client.get(f"/infra/workflows/executions?parent_execution_id={parent_id}")
    assert response.status_code == 200, response.text
    return list(response.json()["executions"])


async def test_child_result_is_the_step_output(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "sw-done")
    parent_bp = await create_blueprint(
        client,
        [
            sub_step("child", child_bp["id"], {"n": "{{input.n}}"}),
            pull_step("after", "sw-after", {"got": "{{steps.child.output.work}}"}, ["child"]),
        ],
        name="parent",
    )
    parent_id = (await trigger(client, parent_bp["id"], {"n": 7}))["execution_id"]
    state = await wait_step(client, parent_id, "child", "running")
    child_id = step_of(state, "child")["child_execution_id"]
    assert child_id is not None and child_id.startswith("wfexec_")
    assert state["parent"] is None
    child = await execution(client, child_id)
    assert child["parent"] == {"execution_id": parent_id, "step_id": "child"}
    assert child["input_data"] == {"n": 7}
    assert child["blueprint_id"] == child_bp["id"]
    assert [c["id"] for c in await children(client, parent_id)] == [child_id]
    assert await children(client, child_id) == []

    async with workers(
        client,
        {
            "sw-done": lambda job: {"doubled": job["payload"]["n"] * 2},
            "sw-after": lambda job: job["payload"],
        },
    ):
        final = await wait_status(client, parent_id, "completed")
    child = await execution(client, child_id)
    assert child["status"] == "completed"
    assert step_of(final, "child")["output"] == {"work": {"doubled": 14}}
    assert step_of(final, "child")["output"] == child["result"]
    assert step_of(final, "child")["job_id"] is None
    assert final["result"]["after"] == {"got": {"doubled": 14}}
    log = await events(client, parent_id)
    named = [e for e in log if e["step_id"] == "child"]
    assert [e["type"] for e in named] == ["child_starting", "child_started", "step_completed"]
    assert named[1]["data"]["child_execution_id"] == child_id
    assert named[2]["data"]["child_execution_id"] == child_id


async def test_child_failure_is_caught(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "sw-fail")
    parent_bp = await create_blueprint(
        client,
        [
            sub_step("child", child_bp["id"], {"n": 1}, catch="undo"),
            pull_step(
                "undo",
                "sw-undo",
                {"code": "{{failure.code}}", "error": "{{failure.error}}"},
            ),
        ],
        name="parent",
    )
    parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]

    def fail(job: Json) -> Any:
        raise WorkFailed("card declined", retryable=False)

    async with workers(client, {"sw-fail": fail, "sw-undo": lambda job: job["payload"]}):
        final = await wait_status(client, parent_id, "compensated")
    step = step_of(final, "child")
    child = await execution(client, step["child_execution_id"])
    assert child["status"] == "failed"
    assert step["status"] == "failed" and step["caught_by"] == "undo"
    assert step["error"] == {"code": "sub_workflow_failed", "message": "card declined"}
    assert final["result"]["undo"] == {"code": "sub_workflow_failed", "error": "card declined"}


async def test_cancel_reaches_children_and_grandchildren(service: Service) -> None:
    client = service.client
    inner = await leaf(client, "sw-held")
    middle = await create_blueprint(client, [sub_step("inner", inner["id"], {"n": 1})], name="m")
    outer = await create_blueprint(client, [sub_step("middle", middle["id"])], name="outer")
    outer_id = (await trigger(client, outer["id"]))["execution_id"]
    state = await wait_step(client, outer_id, "middle", "running")
    middle_id = step_of(state, "middle")["child_execution_id"]
    middle_state = await wait_step(client, middle_id, "inner", "running")
    inner_id = step_of(middle_state, "inner")["child_execution_id"]
    held = await claim_one(client, "sw-held")  # the leaf's job is running

    response = await client.post(f"/infra/workflows/executions/{outer_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    outer_state = await execution(client, outer_id)
    assert step_of(outer_state, "middle")["status"] == "cancelled"
    assert (await execution(client, middle_id))["status"] == "cancelled"
    assert (await execution(client, inner_id))["status"] == "cancelled"
    inner_state = await execution(client, inner_id)
    assert step_of(inner_state, "work")["status"] == "running"  # a running job finishes
    assert held["workflow"]["execution_id"] == inner_id


async def chain(client: httpx.AsyncClient, depth: int) -> Json:
    """A blueprint whose executions nest children down to ``depth``, the deepest running a
    job."""
    blueprint = await leaf(client, "sw-deep")
    for level in range(depth):
        blueprint = await create_blueprint(
            client, [sub_step("down", blueprint["id"], {"n": "{{input.n}}"})], name=f"l{level}"
        )
    return blueprint


async def descend(client: httpx.AsyncClient, execution_id: str) -> list[Json]:
    """The execution and its children, following the ``down`` steps."""
    found = [await execution(client, execution_id)]
    while "down" in {s["step_id"] for s in found[-1]["steps"]}:
        child_id = step_of(found[-1], "down")["child_execution_id"]
        if child_id is None:
            break
        found.append(await execution(client, child_id))
    return found


async def test_depth_five_runs_and_six_fails(service: Service) -> None:
    client = service.client
    deepest_allowed = await chain(client, 5)  # the top is depth 0, the job runs at depth 5
    top = (await trigger(client, deepest_allowed["id"], {"n": 3}))["execution_id"]
    async with workers(client, {"sw-deep": lambda job: job["payload"]["n"]}):
        final = await wait_status(client, top, "completed")
    nested = await descend(client, top)
    assert len(nested) == 6
    assert all(e["status"] == "completed" for e in nested)
    assert nested[-1]["result"] == {"work": 3}

    too_deep = await create_blueprint(
        client, [sub_step("down", deepest_allowed["id"], {"n": "{{input.n}}"})], name="l6"
    )
    top = (await trigger(client, too_deep["id"], {"n": 3}))["execution_id"]
    final = await wait_status(client, top, "failed")
    nested = await descend(client, top)
    assert len(nested) == 6  # depths 0..5: the one at depth 5 started no child
    assert all(e["status"] == "failed" for e in nested)
    assert step_of(nested[-1], "down")["error"]["code"] == "sub_workflow_depth"
    message = step_of(nested[-1], "down")["error"]["message"]
    assert final["error"] == {"code": "sub_workflow_failed", "message": message}
    assert "deeper than 5" in message


async def test_blueprint_create_checks_the_child_blueprint(service: Service) -> None:
    client = service.client
    mine = await leaf(client, "sw-x")
    async with service.client_for(service.new_key("elsewhere")) as other:
        theirs = await leaf(other, "sw-x")
    archived = await leaf(client, "sw-x", name="old")
    response = await client.delete(f"/infra/workflows/blueprints/{archived['id']}")
    assert response.status_code == 200
    body = {
        "name": "bad",
        "steps": [
            sub_step("ok", mine["id"], {"n": 1}),
            sub_step("missing", "wf_01HZZZZZZZZZZZZZZZZZZZZZZZ"),
            sub_step("foreign", theirs["id"]),
            sub_step("old", archived["id"]),
        ],
    }
    response = await client.post("/infra/workflows/blueprints", json=body)
    assert response.status_code == 400, response.text
    details = response.json()["details"]
    assert [d["path"] for d in details] == [
        "$.steps[1].sub_workflow.blueprint_id",
        "$.steps[2].sub_workflow.blueprint_id",
        "$.steps[3].sub_workflow.blueprint_id",
    ]
    assert "archived" in details[2]["message"]
    listed = (await client.get("/infra/workflows/blueprints?name=bad")).json()["blueprints"]
    assert listed == []


async def test_a_child_that_cannot_start_fails_the_step(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "sw-never")
    parent_bp = await create_blueprint(
        client,
        [
            sub_step("short", child_bp["id"], {"m": 1}),
            pull_step("gate", "sw-gate"),
            sub_step("late", child_bp["id"], {"n": 1}, depends_on=["gate"]),
        ],
        name="parent",
    )
    parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]
    state = await wait_step(client, parent_id, "short", "failed")
    error = step_of(state, "short")["error"]
    assert error["code"] == "sub_workflow_not_started"
    assert "input.n" in error["message"]
    assert step_of(state, "short")["child_execution_id"] is None
    assert await children(client, parent_id) == []

    response = await client.delete(f"/infra/workflows/blueprints/{child_bp['id']}")
    assert response.status_code == 200
    async with workers(client, {"sw-gate": lambda job: "open"}):
        final = await wait_status(client, parent_id, "failed")
    error = step_of(final, "late")["error"]
    assert error["code"] == "sub_workflow_not_started"
    assert "archived" in error["message"]


async def test_override_and_resume_of_a_sub_workflow_step(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "sw-retry")
    parent_bp = await create_blueprint(
        client,
        [sub_step("a", child_bp["id"], {"n": 1}), sub_step("b", child_bp["id"], {"n": 2})],
        name="parent",
    )
    parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]
    state = await wait_step(client, parent_id, "b", "running")
    first_b = step_of(state, "b")["child_execution_id"]

    # override_output completes a running step and cancels its child
    response = await client.post(
        f"/infra/workflows/executions/{parent_id}/resume",
        json={"step_id": "b", "override_output": {"manual": True}},
    )
    assert response.status_code == 200, response.text
    state = await execution(client, parent_id)
    assert step_of(state, "b")["status"] == "completed"
    assert step_of(state, "b")["output"] == {"manual": True}
    assert (await execution(client, first_b))["status"] == "cancelled"

    # a failed child fails the step; resuming the step starts a new child (attempt 2)
    first_a = step_of(state, "a")["child_execution_id"]
    job = await claim_one(client, "sw-retry")
    assert job["workflow"]["execution_id"] == first_a
    response = await client.post(
        f"/infra/jobs/{job['id']}/ack",
        json={
            "claim_token": job["claim_token"],
            "status": "failed",
            "error": "no",
            "retryable": False,
        },
    )
    assert response.status_code == 200, response.text
    state = await wait_status(client, parent_id, "failed")
    assert step_of(state, "a")["error"]["code"] == "sub_workflow_failed"
    response = await client.post(
        f"/infra/workflows/executions/{parent_id}/resume", json={"step_id": "a"}
    )
    assert response.status_code == 200, response.text
    state = await execution(client, parent_id)
    second_a = step_of(state, "a")["child_execution_id"]
    assert second_a not in (None, first_a)
    assert step_of(state, "a")["attempt"] == 2
    async with workers(client, {"sw-retry": lambda job: "fine"}):
        final = await wait_status(client, parent_id, "completed")
    assert step_of(final, "a")["output"] == {"work": "fine"}
    assert {c["id"] for c in await children(client, parent_id)} == {first_a, second_a, first_b}


async def test_pause_of_the_parent_leaves_children_running(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "sw-pause")
    parent_bp = await create_blueprint(
        client,
        [
            sub_step("child", child_bp["id"], {"n": 5}),
            pull_step("next", "sw-next", None, ["child"]),
        ],
        name="parent",
    )
    parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]
    await wait_step(client, parent_id, "child", "running")
    response = await client.post(f"/infra/workflows/executions/{parent_id}/pause")
    assert response.status_code == 200, response.text
    async with workers(client, {"sw-pause": lambda job: "ok"}):
        state = await wait_step(client, parent_id, "child", "completed")
    assert state["status"] == "paused"
    assert step_of(state, "next")["status"] == "pending"  # dependents wait for the resume
    response = await client.post(f"/infra/workflows/executions/{parent_id}/resume")
    assert response.status_code == 200, response.text
    async with workers(client, {"sw-next": lambda job: "done"}):
        await wait_status(client, parent_id, "completed")


async def test_a_child_the_balance_cannot_pay_for_fails_the_step(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "sw-tokens")
    parent_bp = await create_blueprint(
        client, [sub_step("child", child_bp["id"], {"n": 1})], name="parent"
    )
    async with await admin_client(service) as admin:
        # exactly the parent's trigger: nothing is left for the child's
        response = await admin.patch(
            f"/admin/projects/{service.project_id}", json={"token_balance": "0.0000053"}
        )
        assert response.status_code == 200, response.text
        parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]
        # the child's start was refused within the trigger; reads cost tokens too
        unlimited = {"token_balance": None}
        assert (
            await admin.patch(f"/admin/projects/{service.project_id}", json=unlimited)
        ).is_success
    state = await wait_status(client, parent_id, "failed")
    error = step_of(state, "child")["error"]
    assert error["code"] == "sub_workflow_not_started"
    assert "tokens" in error["message"]
    assert step_of(state, "child")["child_execution_id"] is None
    assert await children(client, parent_id) == []
