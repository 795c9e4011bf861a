"""for_each steps end to end over real HTTP: items run by real pull workers, at most
max_concurrency at once, outputs in item order, failures, withdrawals, resume, the item list."""

from typing import Any

import httpx
import msgspec

from flowyard.storage import workflows as store
from flowyard.workflows.replay import initial, replay
from tests.conftest import Service
from tests.workflow_support import (
    WorkFailed,
    ack,
    claim,
    claim_one,
    create_blueprint,
    events,
    execution,
    get_job,
    pull_step,
    queue_jobs,
    start,
    step_of,
    trigger,
    wait_execution,
    wait_status,
    wait_step,
    workers,
)

Json = dict[str, Any]


def map_step(step_id: str, queue: str, over: str = "{{input.xs}}", **more: Any) -> Json:
    template = more.pop("template", {"x": "{{item}}", "i": "{{item_index}}"})
    fields = {"for_each": over}
    if "max_concurrency" in more:
        fields["max_concurrency"] = more.pop("max_concurrency")
    return {**pull_step(step_id, queue, template, **more), **fields}


async def items(client: httpx.AsyncClient, execution_id: str, step_id: str, **query: Any) -> Json:
    response = await client.get(
        f"/infra/workflows/executions/{execution_id}/steps/{step_id}/items", params=query
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def all_items(client: httpx.AsyncClient, execution_id: str, step_id: str) -> list[Json]:
    found: list[Json] = []
    cursor = None
    while True:
        page = await items(
            client, execution_id, step_id, limit=3, **({"cursor": cursor} if cursor else {})
        )
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def test_a_map_runs_every_item_at_most_max_concurrency_at_once(service: Service) -> None:
    client = service.client
    steps = [
        map_step(
            "m", "map-q", max_concurrency=3, template={"x": "{{item.n}}", "i": "{{item_index}}"}
        ),
        pull_step("sum", "map-sum", {"all": "{{steps.m.output}}"}, depends_on=["m"]),
    ]
    xs = [{"n": n} for n in range(7)]
    execution_id = await start(client, steps, {"xs": xs})
    state = await wait_step(client, execution_id, "m", "running")
    assert step_of(state, "m")["items"] == {
        "total": 7,
        "completed": 0,
        "failed": 0,
        "running": 0,
        "queued": 3,
        "cancelled": 0,
    }
    seen: list[Json] = []
    while len(seen) < 7:
        batch = await claim(client, "map-q", wait=5, count=10)
        assert 1 <= len(batch) <= 3  # never more than max_concurrency out
        seen += batch
        for job in reversed(batch):  # finishing out of order keeps the item order
            await ack(client, job, {"double": job["payload"]["x"] * 2})
    assert [j["payload"] for j in seen] == [{"x": n, "i": n} for n in range(7)]
    assert [j["workflow"]["item_index"] for j in seen] == list(range(7))
    assert all(j["workflow"]["step_id"] == "m" for j in seen)

    summing = await claim_one(client, "map-sum")
    assert summing["payload"] == {"all": [{"double": 2 * n} for n in range(7)]}
    await ack(client, summing, "ok")
    state = await wait_status(client, execution_id, "completed")
    m = step_of(state, "m")
    assert m["output"] == [{"double": 2 * n} for n in range(7)] == state["result"]["m"]
    assert m["job_id"] is None
    assert m["items"] == {
        "total": 7,
        "completed": 7,
        "failed": 0,
        "running": 0,
        "queued": 0,
        "cancelled": 0,
    }
    listed = await all_items(client, execution_id, "m")
    assert [i["index"] for i in listed] == list(range(7))
    assert [i["job_id"] for i in listed] == [j["id"] for j in seen]
    assert all(i["status"] == "completed" and i["error"] is None for i in listed)
    assert [i["output"] for i in listed] == m["output"]
    assert all(i["attempt"] == 1 and i["completed_at"] for i in listed)
    kinds = [e["type"] for e in await events(client, execution_id) if e["step_id"] == "m"]
    assert kinds[0] == "map_started" and kinds[-1] == "step_completed"
    assert kinds.count("item_queued") == kinds.count("item_started") == 7
    assert kinds.count("item_completed") == 7
    await assert_replays(service, execution_id)


async def test_an_empty_array_completes_at_once_and_a_non_array_fails(service: Service) -> None:
    client = service.client
    steps = [
        map_step("m", "map-empty"),
        pull_step("after", "map-after", {"o": "{{steps.m.output}}"}, depends_on=["m"]),
    ]
    blueprint = await create_blueprint(client, steps)
    empty = (await trigger(client, blueprint["id"], {"xs": []}))["execution_id"]
    job = await claim_one(client, "map-after")
    assert job["payload"] == {"o": []}
    state = await execution(client, empty)
    assert step_of(state, "m")["status"] == "completed" and step_of(state, "m")["output"] == []
    assert (await items(client, empty, "m")) == {"items": [], "next_cursor": None}

    scalar = (await trigger(client, blueprint["id"], {"xs": {"not": "a list"}}))["execution_id"]
    state = await wait_status(client, scalar, "failed")
    assert step_of(state, "m")["error"] == {
        "code": "template_error",
        "message": "for_each {{input.xs}} is a dict, not an array",
    }
    too_many = (await trigger(client, blueprint["id"], {"xs": list(range(1001))}))["execution_id"]
    state = await wait_status(client, too_many, "failed")
    assert step_of(state, "m")["error"]["message"] == (
        "for_each {{input.xs}} has 1001 items (at most 1000)"
    )
    # the for_each path is an input path the trigger must bring
    response = await client.post(f"/infra/workflows/blueprints/{blueprint['id']}/trigger", json={})
    assert response.status_code == 400
    assert response.json()["details"] == [{"path": "$.input_data.xs", "message": "missing"}]


async def test_blueprints_with_misplaced_items_are_400(service: Service) -> None:
    client = service.client
    bad = [
        (pull_step("a", "q", {"x": "{{item}}"}), "$.steps[0].payload_template.x"),
        ({**pull_step("a", "q"), "max_concurrency": 2}, "$.steps[0].max_concurrency"),
        (map_step("a", "q", over="input.xs"), "$.steps[0].for_each"),
        (
            {"id": "w", "wait_for_signal": {"name": "go"}, "for_each": "{{input.xs}}"},
            "$.steps[0].for_each",
        ),
    ]
    for body, path in bad:
        response = await client.post(
            "/infra/workflows/blueprints", json={"name": "bad", "steps": [body]}
        )
        assert response.status_code == 400, response.text
        assert [d["path"] for d in response.json()["details"]] == [path]
    response = await client.post(
        "/infra/workflows/blueprints",
        json={"name": "bad", "steps": [map_step("a", "q", max_concurrency=101)]},
    )
    assert response.status_code == 400


async def test_a_failed_item_withdraws_the_rest_fails_the_step_and_resume_reruns_it(
    service: Service,
) -> None:
    client = service.client
    steps = [
        map_step("m", "map-fail", max_concurrency=2, catch="handle", max_attempts=1),
        pull_step(
            "handle", "map-handle", {"i": "{{failure.item_index}}", "e": "{{failure.error}}"}
        ),
    ]
    execution_id = await start(client, steps, {"xs": ["a", "b", "c", "d", "e"]})
    first, second = await claim(client, "map-fail", count=2)
    assert [first["payload"]["i"], second["payload"]["i"]] == [0, 1]
    await ack(client, first, "A")  # item 2 is queued in its place
    await wait_execution(client, execution_id, lambda s: step_of(s, "m")["items"]["queued"] == 1)
    queued_item = [j for j in await queue_jobs(client, "map-fail") if j["status"] == "pending"]
    assert [j["workflow"]["item_index"] for j in queued_item] == [2]
    await ack(client, second, error="bad b", retryable=False)

    state = await wait_step(client, execution_id, "m", "failed")
    m = step_of(state, "m")
    assert m["error"] == {"code": "job_failed", "message": "bad b"}
    assert m["caught_by"] == "handle"
    assert m["items"] == {
        "total": 5,
        "completed": 1,
        "failed": 1,
        "running": 0,
        "queued": 0,
        "cancelled": 3,
    }
    assert (await get_job(client, queued_item[0]["id"]))["status"] == "cancelled"
    listed = await all_items(client, execution_id, "m")
    assert [i["status"] for i in listed] == [
        "completed",
        "failed",
        "cancelled",
        "cancelled",
        "cancelled",
    ]
    assert listed[1]["error"] == {"code": "job_failed", "message": "bad b"}
    assert listed[3]["job_id"] is None  # never started
    handling = await claim_one(client, "map-handle")
    assert handling["payload"] == {"i": 1, "e": "bad b"}

    # while the catch branch runs, a resume of the map re-runs only what did not complete
    response = await client.post(
        f"/infra/workflows/executions/{execution_id}/resume", json={"step_id": "m"}
    )
    assert response.status_code == 200, response.text
    async with workers(client, {"map-fail": lambda job: job["payload"]["x"].upper()}):
        state = await wait_step(client, execution_id, "m", "completed")
    await ack(client, handling, "handled")
    await wait_status(client, execution_id, "completed")
    assert step_of(state, "m")["output"] == ["A", "B", "C", "D", "E"]
    listed = await all_items(client, execution_id, "m")
    assert [i["attempt"] for i in listed] == [1, 2, 2, 1, 1]  # item 0 kept its output
    jobs = await queue_jobs(client, "map-fail")
    per_item: dict[int, int] = {}
    for job in jobs:
        per_item[job["workflow"]["item_index"]] = per_item.get(job["workflow"]["item_index"], 0) + 1
    assert per_item == {0: 1, 1: 2, 2: 2, 3: 1, 4: 1}
    await assert_replays(service, execution_id)


async def assert_replays(service: Service, execution_id: str) -> None:
    """The stored events rebuild the stored execution and its stored items."""
    db = service.supervisor.db
    state = await store.get_execution(db, execution_id)
    assert state is not None
    log, cursor = [], None
    while True:
        page, cursor = await store.list_events(db, execution_id, cursor=cursor, limit=100)
        log += [event for _, event in page]
        if cursor is None:
            break
    rebuilt: dict[str, list[Any]] = {}
    replayed = replay(initial(state), log, rebuilt)
    assert msgspec.to_builtins(replayed) == msgspec.to_builtins(state)
    stored = await store.execution_items(db, state)
    assert msgspec.to_builtins(rebuilt) == msgspec.to_builtins(stored)


async def test_cancel_withdraws_queued_items_and_running_ones_are_recorded(
    service: Service,
) -> None:
    client = service.client
    execution_id = await start(
        client, [map_step("m", "map-cancel", max_concurrency=2)], {"xs": [1, 2, 3]}
    )
    running = await claim_one(client, "map-cancel", count=1)
    response = await client.post(f"/infra/workflows/executions/{execution_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    state = await execution(client, execution_id)
    assert step_of(state, "m")["status"] == "running"
    assert step_of(state, "m")["items"]["running"] == 1
    await ack(client, running, "kept")
    state = await wait_step(client, execution_id, "m", "cancelled")
    listed = await all_items(client, execution_id, "m")
    assert [(i["status"], i["output"]) for i in listed] == [
        ("completed", "kept"),
        ("cancelled", None),
        ("cancelled", None),
    ]
    withdrawn = [j for j in await queue_jobs(client, "map-cancel") if j["id"] != running["id"]]
    assert [j["status"] for j in withdrawn] == ["cancelled"]


async def test_the_item_list_answers_404_for_unknown_executions_and_steps(service: Service) -> None:
    client = service.client
    execution_id = await start(client, [pull_step("plain", "map-plain")])
    base = f"/infra/workflows/executions/{execution_id}/steps"
    assert (await client.get(f"{base}/nope/items")).status_code == 404
    missing = "/infra/workflows/executions/wfexec_missing/steps/plain/items"
    assert (await client.get(missing)).status_code == 404
    # a step without for_each has no items
    assert (await items(client, execution_id, "plain")) == {"items": [], "next_cursor": None}
    other = service.client_for(service.new_key("elsewhere"))
    async with other:
        assert (await other.get(f"{base}/plain/items")).status_code == 404


async def test_failing_workers_fail_items_like_steps(service: Service) -> None:
    client = service.client
    steps = [map_step("m", "map-w", max_attempts=1)]
    execution_id = await start(client, steps, {"xs": [1, 2]})

    def work(job: Json) -> Any:
        if job["payload"]["i"] == 1:
            raise WorkFailed("nope", retryable=False)
        return job["payload"]["x"]

    async with workers(client, {"map-w": work}):
        state = await wait_status(client, execution_id, "failed")
    assert state["error"] == {"code": "job_failed", "message": "nope"}


async def test_a_map_of_1000_items_keeps_only_counts_in_the_execution(service: Service) -> None:
    client = service.client
    steps = [map_step("m", "map-big", max_concurrency=100, template={"v": "{{item}}"})]
    xs = [f"item-{n:04d}-" + "x" * 90 for n in range(1000)]  # about 100 KB of items
    execution_id = await start(client, steps, {"xs": xs})
    await wait_step(client, execution_id, "m", "running")
    response = await client.get(f"/infra/workflows/executions/{execution_id}")
    # the input is in it once; the items (and their values) are not
    assert len(response.content) < len(str(xs)) + 5_000
    async with workers(client, {"map-big": lambda job: len(job["payload"]["v"])}):
        state = await wait_status(client, execution_id, "completed", timeout=180)
    assert step_of(state, "m")["output"] == [100] * 1000
    assert step_of(state, "m")["items"]["completed"] == 1000
    page = await items(client, execution_id, "m", limit=100)
    assert [i["index"] for i in page["items"]] == list(range(100)) and page["next_cursor"]


async def test_pause_holds_new_items_and_the_deadline_withdraws_queued_ones(
    service: Service,
) -> None:
    client = service.client
    steps = [map_step("m", "map-pause", max_concurrency=1)]
    blueprint = await create_blueprint(client, steps, max_duration_sec=3)
    execution_id = (await trigger(client, blueprint["id"], {"xs": [0, 1, 2]}))["execution_id"]
    job = await claim_one(client, "map-pause")
    base = f"/infra/workflows/executions/{execution_id}"
    assert (await client.post(f"{base}/pause")).status_code == 200
    await ack(client, job, "zero")
    state = await wait_execution(
        client, execution_id, lambda s: step_of(s, "m")["items"]["completed"] == 1
    )
    assert state["status"] == "paused" and step_of(state, "m")["status"] == "running"
    assert await claim(client, "map-pause", wait=0.2) == []  # nothing new while paused
    assert (await client.post(f"{base}/resume", json={})).status_code == 200
    queued = await wait_execution(
        client, execution_id, lambda s: step_of(s, "m")["items"]["queued"] == 1
    )
    assert queued["status"] == "running"
    # nobody claims item 1: past max_duration_sec it is withdrawn and the map is cancelled
    state = await wait_status(client, execution_id, "failed", timeout=10)
    assert state["error"]["code"] == "timed_out"
    assert step_of(state, "m")["status"] == "cancelled"
    listed = await all_items(client, execution_id, "m")
    assert [i["status"] for i in listed] == ["completed", "cancelled", "cancelled"]
    assert (await get_job(client, listed[1]["job_id"]))["status"] == "cancelled"


def test_a_job_stored_before_items_existed_still_decodes() -> None:
    from flowyard.jobs.model import WorkflowRef

    old = msgspec.json.decode(
        b'{"execution_id": "e", "step_id": "s", "attempt": 2}', type=WorkflowRef
    )
    assert (old.item, old.attempt) == (None, 2)
