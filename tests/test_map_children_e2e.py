"""for_each sub_workflow steps end to end over real HTTP: one child execution per item,
outputs in item order, a failed child caught, cancel reaching the item children, and a resume
that starts new children for the failed and withdrawn items only; the stored events replay
into the stored execution and items each time."""

from typing import Any

import httpx

from tests.conftest import Service
from tests.test_workflows_maps import assert_replays
from tests.workflow_support import (
    WorkFailed,
    claim_one,
    create_blueprint,
    events,
    execution,
    pull_step,
    step_of,
    trigger,
    wait_execution,
    wait_status,
    workers,
)

Json = dict[str, Any]


def child_map(step_id: str, blueprint_id: str, concurrency: int = 2, **fields: Any) -> Json:
    """A step running a child of ``blueprint_id`` per element of ``input.xs``."""
    return {
        "id": step_id,
        "sub_workflow": {
            "blueprint_id": blueprint_id,
            "input": {"n": "{{item}}", "i": "{{item_index}}"},
        },
        "for_each": "{{input.xs}}",
        "max_concurrency": concurrency,
        **fields,
    }


async def leaf(client: httpx.AsyncClient, queue: str) -> Json:
    """A one-step blueprint whose job waits on ``queue`` with the input's ``n`` and ``i``."""
    template = {"n": "{{input.n}}", "i": "{{input.i}}"}
    return await create_blueprint(client, [pull_step("work", queue, template)], name="leaf")


async def items(client: httpx.AsyncClient, execution_id: str, step_id: str) -> list[Json]:
    response = await client.get(f"/infra/workflows/executions/{execution_id}/steps/{step_id}/items")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def children(client: httpx.AsyncClient, parent_id: str) -> list[Json]:
    response = await client.get(
        f"/infra/workflows/executions?parent_execution_id={parent_id}&limit=100"
    )
    assert response.status_code == 200, response.text
    return list(response.json()["executions"])


def running_items(count: int) -> Any:
    return lambda s: (step_of(s, "each")["items"] or {}).get("running") == count


async def test_children_complete_with_outputs_in_item_order(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "mc-done")
    parent_bp = await create_blueprint(
        client,
        [
            child_map("each", child_bp["id"]),
            pull_step("sum", "mc-sum", {"all": "{{steps.each.output}}"}, ["each"]),
        ],
        name="parent",
    )
    xs = [3, 1, 4, 1, 5]
    parent_id = (await trigger(client, parent_bp["id"], {"xs": xs}))["execution_id"]
    state = await wait_execution(client, parent_id, running_items(2))
    assert step_of(state, "each")["child_execution_id"] is None
    live = await children(client, parent_id)
    assert len(live) == 2  # max_concurrency: the others wait
    listed = await items(client, parent_id, "each")
    by_index = {i["index"]: i for i in listed}
    for index in (0, 1):
        child = await execution(client, by_index[index]["child_execution_id"])
        assert child["parent"] == {
            "execution_id": parent_id,
            "step_id": "each",
            "item_index": index,
        }
        assert child["input_data"] == {"n": xs[index], "i": index}
        assert by_index[index]["job_id"] is None and by_index[index]["status"] == "running"
    assert [i["status"] for i in listed[2:]] == ["pending"] * 3

    async with workers(
        client,
        {
            "mc-done": lambda job: job["payload"]["n"] * 10,
            "mc-sum": lambda job: job["payload"],
        },
    ):
        final = await wait_status(client, parent_id, "completed")
    outputs = [{"work": n * 10} for n in xs]
    assert step_of(final, "each")["output"] == outputs
    assert final["result"]["sum"] == {"all": outputs}
    listed = await items(client, parent_id, "each")
    assert [i["output"] for i in listed] == outputs
    ids = [i["child_execution_id"] for i in listed]
    assert len(set(ids)) == len(xs)
    assert {c["id"] for c in await children(client, parent_id)} == set(ids)
    for index, child_id in enumerate(ids):
        child = await execution(client, child_id)
        assert child["status"] == "completed" and child["result"] == outputs[index]
        assert child["parent"]["item_index"] == index
    started = [e for e in await events(client, parent_id) if e["type"] == "item_started"]
    assert sorted(e["data"]["child_execution_id"] for e in started) == sorted(ids)
    await assert_replays(service, parent_id)


async def test_a_failed_child_is_caught_with_its_item_index(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "mc-fail")
    parent_bp = await create_blueprint(
        client,
        [
            child_map("each", child_bp["id"], concurrency=1, catch="undo"),
            pull_step(
                "undo",
                "mc-undo",
                {"code": "{{failure.code}}", "i": "{{failure.item_index}}"},
            ),
        ],
        name="parent",
    )
    parent_id = (await trigger(client, parent_bp["id"], {"xs": [1, 2, 3, 4]}))["execution_id"]

    def work(job: Json) -> Any:
        if job["payload"]["i"] == 1:
            raise WorkFailed("card declined", retryable=False)
        return "ok"

    async with workers(client, {"mc-fail": work, "mc-undo": lambda job: job["payload"]}):
        final = await wait_status(client, parent_id, "compensated")
    step = step_of(final, "each")
    assert step["status"] == "failed" and step["caught_by"] == "undo"
    assert step["error"] == {"code": "sub_workflow_failed", "message": "card declined"}
    assert final["result"]["undo"] == {"code": "sub_workflow_failed", "i": 1}
    listed = await items(client, parent_id, "each")
    assert [i["status"] for i in listed] == ["completed", "failed", "cancelled", "cancelled"]
    assert listed[2]["child_execution_id"] is None  # withdrawn before its child started
    failed = await execution(client, listed[1]["child_execution_id"])
    assert failed["status"] == "failed"
    assert len(await children(client, parent_id)) == 2
    await assert_replays(service, parent_id)


async def test_cancelling_the_parent_cancels_the_item_children(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "mc-held")
    parent_bp = await create_blueprint(
        client, [child_map("each", child_bp["id"], concurrency=3)], name="parent"
    )
    parent_id = (await trigger(client, parent_bp["id"], {"xs": [1, 2, 3, 4, 5]}))["execution_id"]
    await wait_execution(client, parent_id, running_items(3))
    held = await claim_one(client, "mc-held")  # one child's job runs

    response = await client.post(f"/infra/workflows/executions/{parent_id}/cancel")
    assert response.status_code == 200, response.text
    state = await execution(client, parent_id)
    assert state["status"] == "cancelled"
    assert step_of(state, "each")["status"] == "cancelled"
    listed = await items(client, parent_id, "each")
    assert [i["status"] for i in listed] == ["cancelled"] * 5
    kids = await children(client, parent_id)
    assert len(kids) == 3
    for kid in kids:
        assert (await execution(client, kid["id"]))["status"] == "cancelled"
    assert held["workflow"]["execution_id"] in {k["id"] for k in kids}
    await assert_replays(service, parent_id)


async def test_a_resume_reruns_only_the_failed_and_withdrawn_items(service: Service) -> None:
    client = service.client
    child_bp = await leaf(client, "mc-retry")
    parent_bp = await create_blueprint(
        client, [child_map("each", child_bp["id"], concurrency=1)], name="parent"
    )
    parent_id = (await trigger(client, parent_bp["id"], {"xs": [7, 8, 9]}))["execution_id"]
    flaky = {"fail": True}

    def work(job: Json) -> Any:
        if job["payload"]["i"] == 1 and flaky["fail"]:
            raise WorkFailed("not yet", retryable=False)
        return job["payload"]["n"]

    async with workers(client, {"mc-retry": work}):
        state = await wait_status(client, parent_id, "failed")
    assert step_of(state, "each")["error"]["code"] == "sub_workflow_failed"
    before = await items(client, parent_id, "each")
    assert [i["status"] for i in before] == ["completed", "failed", "cancelled"]

    flaky["fail"] = False
    response = await client.post(
        f"/infra/workflows/executions/{parent_id}/resume", json={"step_id": "each"}
    )
    assert response.status_code == 200, response.text
    async with workers(client, {"mc-retry": work}):
        final = await wait_status(client, parent_id, "completed")
    assert step_of(final, "each")["output"] == [{"work": 7}, {"work": 8}, {"work": 9}]
    after = await items(client, parent_id, "each")
    assert after[0]["child_execution_id"] == before[0]["child_execution_id"]
    assert after[0]["attempt"] == 1
    assert after[1]["child_execution_id"] != before[1]["child_execution_id"]
    assert after[1]["attempt"] == 2
    assert after[2]["attempt"] == 1
    kids = await children(client, parent_id)
    assert len(kids) == 4  # three first children, one new for the failed item
    second = await execution(client, after[1]["child_execution_id"])
    assert second["parent"] == {"execution_id": parent_id, "step_id": "each", "item_index": 1}
    await assert_replays(service, parent_id)


async def test_a_child_failing_at_its_start_withdraws_the_starts_behind_it(
    service: Service,
) -> None:
    client = service.client
    broken = {**pull_step("work", "mc-never"), "when": "input.missing"}  # an evaluation error
    child_bp = await create_blueprint(client, [broken], name="broken")
    parent_bp = await create_blueprint(
        client, [child_map("each", child_bp["id"], concurrency=3)], name="parent"
    )
    parent_id = (await trigger(client, parent_bp["id"], {"xs": [1, 2, 3, 4]}))["execution_id"]
    final = await wait_status(client, parent_id, "failed")
    listed = await items(client, parent_id, "each")
    assert [i["status"] for i in listed] == ["failed", "cancelled", "cancelled", "cancelled"]
    assert listed[0]["error"]["code"] == "sub_workflow_failed"
    assert step_of(final, "each")["error"]["code"] == "sub_workflow_failed"
    [only] = await children(client, parent_id)  # the later starts of the commit never ran
    assert only["id"] == listed[0]["child_execution_id"]
    assert only["status"] == "failed"
    await assert_replays(service, parent_id)
