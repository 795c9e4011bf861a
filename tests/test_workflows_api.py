"""The workflow API surface over real HTTP: blueprints, triggers, listings, events, auth."""

import re
from typing import Any

import anyio

from tests.conftest import Service
from tests.jobs_support import assert_invalid, error_of, new_key
from tests.workflow_support import (
    ack,
    claim_one,
    create_blueprint,
    events,
    execution,
    pull_step,
    queue_jobs,
    trigger,
    wait_status,
)

WF_ID = re.compile(r"^wf_[0-9A-HJKMNP-TV-Z]{26}$")
EXEC_ID = re.compile(r"^wfexec_[0-9A-HJKMNP-TV-Z]{26}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
BLUEPRINTS = "/infra/workflows/blueprints"
EXECUTIONS = "/infra/workflows/executions"


def order_steps(queue_prefix: str = "") -> list[dict[str, Any]]:
    return [
        pull_step("charge", f"{queue_prefix}payments", {"order_id": "{{input.order_id}}"}),
        pull_step(
            "ship",
            f"{queue_prefix}shipping",
            {"order_id": "{{input.order_id}}", "charge_id": "{{steps.charge.output.charge_id}}"},
            depends_on=["charge"],
        ),
    ]


async def blueprint_ids(service: Service, query: str = "") -> list[str]:
    response = await service.client.get(f"{BLUEPRINTS}?limit=100{query}")
    assert response.status_code == 200, response.text
    return [b["id"] for b in response.json()["blueprints"]]


# ------------------------------------------------------------------------ blueprints


async def test_create_blueprint_returns_it_with_an_id(service: Service) -> None:
    body = {
        "name": "order-fulfillment",
        "description": "charge then ship",
        "steps": order_steps(),
    }
    response = await service.client.post(BLUEPRINTS, json=body)
    assert response.status_code == 200, response.text
    blueprint = response.json()
    assert WF_ID.match(blueprint["id"]), blueprint["id"]
    assert blueprint["name"] == "order-fulfillment"
    assert blueprint["description"] == "charge then ship"
    assert blueprint["max_duration_sec"] == 86400
    assert TIMESTAMP.match(blueprint["created_at"])
    assert [s["id"] for s in blueprint["steps"]] == ["charge", "ship"]
    ship = blueprint["steps"][1]
    assert ship["depends_on"] == ["charge"]
    assert ship["payload_template"]["charge_id"] == "{{steps.charge.output.charge_id}}"
    assert ship["job_trigger"]["trigger"] == {"type": "pull", "queue": "shipping"}

    got = await service.client.get(f"{BLUEPRINTS}/{blueprint['id']}")
    assert got.status_code == 200, got.text
    assert got.json() == blueprint


async def test_blueprint_cycle_is_named(service: Service) -> None:
    steps = [
        pull_step("a", "q", depends_on=["b"]),
        pull_step("b", "q", depends_on=["a"]),
        pull_step("c", "q"),
    ]
    response = await service.client.post(BLUEPRINTS, json={"name": "cyclic", "steps": steps})
    body = error_of(response, 400, "bad_request")
    cycles = [d for d in body["details"] if "cycle" in d["message"]]
    assert len(cycles) == 1, body
    message = cycles[0]["message"]
    assert "a -> b -> a" in message or "b -> a -> b" in message, message
    assert "c" not in message.split(":", 1)[1], message
    assert cycles[0]["path"] in ("$.steps[0].depends_on[0]", "$.steps[1].depends_on[0]")
    assert await blueprint_ids(service) == []  # nothing stored


async def test_blueprint_unknown_dependency_and_scheduled_trigger(service: Service) -> None:
    steps = [
        pull_step("a", "q"),
        pull_step("b", "q", depends_on=["a", "nope"]),
    ]
    response = await service.client.post(BLUEPRINTS, json={"name": "x", "steps": steps})
    assert_invalid(response, "$.steps[1].depends_on[1]")
    assert "nope" in str(response.json()["details"])

    scheduled = {
        "id": "tick",
        "job_trigger": {
            "trigger": {"type": "scheduled", "schedule": "* * * * *"},
            "handler": "http://127.0.0.1:9/hook",
        },
    }
    response = await service.client.post(BLUEPRINTS, json={"name": "x", "steps": [scheduled]})
    assert_invalid(response, "$.steps[0].job_trigger.trigger.type")

    response = await service.client.post(BLUEPRINTS, json={"name": "x", "steps": []})
    error_of(response, 400, "bad_request")
    assert await blueprint_ids(service) == []


async def test_blueprint_list_pages_newest_first(service: Service) -> None:
    created = [
        (await create_blueprint(service.client, [pull_step("s", "q")], name=f"bp{i}"))["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    pages = []
    cursor = None
    for _ in range(5):
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        response = await service.client.get(f"{BLUEPRINTS}{query}")
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(len(body["blueprints"]))
        for item in body["blueprints"]:
            assert set(item) == {"id", "name", "description", "created_at", "archived_at"}
        seen += [b["id"] for b in body["blueprints"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [2, 2, 1]
    assert seen == list(reversed(created))  # newest first, no repeats, none missing
    bad = await service.client.get(f"{BLUEPRINTS}?cursor=not-a-cursor")
    error_of(bad, 400, "bad_request")


async def test_other_projects_objects_are_not_found(service: Service) -> None:
    blueprint = await create_blueprint(service.client, order_steps())
    started = await trigger(service.client, blueprint["id"], {"order_id": "o1"})
    other = await new_key(service, "someone-else")
    async with service.client_for(other) as stranger:
        bp_path = f"{BLUEPRINTS}/{blueprint['id']}"
        exec_path = f"{EXECUTIONS}/{started['execution_id']}"
        error_of(await stranger.get(bp_path), 404, "not_found")
        error_of(await stranger.post(f"{bp_path}/trigger", json={}), 404, "not_found")
        error_of(await stranger.get(exec_path), 404, "not_found")
        error_of(await stranger.get(f"{exec_path}/events"), 404, "not_found")
        for action in ("cancel", "pause", "resume"):
            error_of(await stranger.post(f"{exec_path}/{action}", json={}), 404, "not_found")
        listed = await stranger.get(EXECUTIONS)
        assert listed.json()["executions"] == []
        listed = await stranger.get(BLUEPRINTS)
        assert listed.json()["blueprints"] == []
    # The stranger changed nothing.
    assert (await execution(service.client, started["execution_id"]))["status"] == "running"
    error_of(await service.client.get(f"{BLUEPRINTS}/wf_nope"), 404, "not_found")


async def test_scopes_are_enforced(service: Service) -> None:
    blueprint = await create_blueprint(service.client, order_steps())
    body = {"name": "x", "steps": order_steps()}
    read_only = await new_key(service, "test", ["workflows:read"])
    async with service.client_for(read_only) as reader:
        response = await reader.post(BLUEPRINTS, json=body)
        assert "workflows:write" in error_of(response, 403, "forbidden")["message"]
        response = await reader.post(f"{BLUEPRINTS}/{blueprint['id']}/trigger", json={})
        assert "workflows:write" in error_of(response, 403, "forbidden")["message"]
        assert (await reader.get(f"{BLUEPRINTS}/{blueprint['id']}")).status_code == 200
    write_only = await new_key(service, "test", ["workflows:write"])
    async with service.client_for(write_only) as writer:
        response = await writer.get(BLUEPRINTS)
        assert "workflows:read" in error_of(response, 403, "forbidden")["message"]
        assert (await writer.post(BLUEPRINTS, json=body)).status_code == 200
    jobs_only = await new_key(service, "test", ["jobs:read", "jobs:write"])
    async with service.client_for(jobs_only) as jobs_client:
        error_of(await jobs_client.get(BLUEPRINTS), 403, "forbidden")
    async with service.client_for(None) as anonymous:
        error_of(await anonymous.get(BLUEPRINTS), 401, "unauthorized")
    assert len(await blueprint_ids(service)) == 2  # the original and the writer's


# ------------------------------------------------------------------------ triggers


async def test_idempotent_trigger(service: Service) -> None:
    blueprint = await create_blueprint(service.client, order_steps())
    path = f"{BLUEPRINTS}/{blueprint['id']}/trigger"
    body = {"input_data": {"order_id": "o1"}, "idempotency_key": "order-o1"}
    first = await service.client.post(path, json=body)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    started = first.json()
    assert EXEC_ID.match(started["execution_id"])
    assert started["blueprint_id"] == blueprint["id"]
    assert started["status"] == "running"
    assert TIMESTAMP.match(started["started_at"])

    again = await service.client.post(path, json=body)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["execution_id"] == started["execution_id"]

    changed = {"input_data": {"order_id": "o2"}, "idempotency_key": "order-o1"}
    error_of(await service.client.post(path, json=changed), 409, "conflict")

    listed = await service.client.get(f"{EXECUTIONS}?blueprint_id={blueprint['id']}")
    assert [e["id"] for e in listed.json()["executions"]] == [started["execution_id"]]
    assert len(await queue_jobs(service.client, "payments")) == 1  # one charge job only

    state = await execution(service.client, started["execution_id"])
    assert state["idempotency_key"] == "order-o1"
    other = await trigger(service.client, blueprint["id"], {"order_id": "o3"})
    assert other["execution_id"] != started["execution_id"]  # no key: a new one


async def test_concurrent_triggers_with_one_key_start_one_execution(service: Service) -> None:
    blueprint = await create_blueprint(service.client, order_steps("cc-"))
    path = f"{BLUEPRINTS}/{blueprint['id']}/trigger"
    body = {"input_data": {"order_id": "o1"}, "idempotency_key": "same"}
    answers: list[Any] = []

    async def fire() -> None:
        answers.append(await service.client.post(path, json=body))

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(fire)
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert len({a.json()["execution_id"] for a in answers}) == 1
    replayed = [a.headers.get("idempotent-replayed") for a in answers]
    assert sorted(replayed, key=str) == [None] + ["true"] * 5
    assert len(await queue_jobs(service.client, "cc-payments")) == 1


async def test_trigger_with_missing_input_paths_is_400(service: Service) -> None:
    steps = [
        pull_step("a", "q", {"order": "{{input.order_id}}", "who": "{{input.customer.name}}"}),
    ]
    blueprint = await create_blueprint(service.client, steps)
    path = f"{BLUEPRINTS}/{blueprint['id']}/trigger"
    response = await service.client.post(path, json={"input_data": {"customer": {}}})
    body = error_of(response, 400, "bad_request")
    paths = {d["path"] for d in body["details"]}
    assert paths == {"$.input_data.order_id", "$.input_data.customer.name"}, body
    listed = await service.client.get(EXECUTIONS)
    assert listed.json()["executions"] == []
    assert await queue_jobs(service.client, "q") == []


# ------------------------------------------------------------------------ executions


async def test_execution_list_filters(service: Service) -> None:
    one = await create_blueprint(service.client, [pull_step("s", "one")])
    two = await create_blueprint(service.client, [pull_step("s", "two")])
    a1 = (await trigger(service.client, one["id"]))["execution_id"]
    a2 = (await trigger(service.client, one["id"]))["execution_id"]
    b1 = (await trigger(service.client, two["id"]))["execution_id"]
    job = await claim_one(service.client, "one")
    assert job["workflow"] == {"execution_id": a1, "step_id": "s"}
    await ack(service.client, job, {"done": True})
    await wait_status(service.client, a1, "completed")

    async def listed(query: str) -> list[str]:
        response = await service.client.get(f"{EXECUTIONS}?{query}")
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["executions"]]

    assert await listed("") == [b1, a2, a1]
    assert await listed(f"blueprint_id={one['id']}") == [a2, a1]
    assert await listed(f"blueprint_id={two['id']}") == [b1]
    assert await listed("status=completed") == [a1]
    assert await listed("status=running") == [b1, a2]
    assert await listed(f"status=running&blueprint_id={one['id']}") == [a2]
    assert await listed("status=failed") == []
    error_of(await service.client.get(f"{EXECUTIONS}?status=bogus"), 400, "bad_request")
    page = await service.client.get(f"{EXECUTIONS}?limit=2")
    assert [e["id"] for e in page.json()["executions"]] == [b1, a2]
    cursor = page.json()["next_cursor"]
    rest = await service.client.get(f"{EXECUTIONS}?limit=2&cursor={cursor}")
    assert [e["id"] for e in rest.json()["executions"]] == [a1]
    assert rest.json()["next_cursor"] is None


async def test_events_are_oldest_first(service: Service) -> None:
    blueprint = await create_blueprint(service.client, order_steps())
    execution_id = (await trigger(service.client, blueprint["id"], {"order_id": "o1"}))[
        "execution_id"
    ]
    for queue, result in (("payments", {"charge_id": "ch_1"}), ("shipping", {"ok": 1})):
        job = await claim_one(service.client, queue)
        await ack(service.client, job, result)
    await wait_status(service.client, execution_id, "completed")
    log = await events(service.client, execution_id)
    seqs = [e["seq"] for e in log]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert all(TIMESTAMP.match(e["at"]) for e in log)
    kinds = [(e["type"], e["step_id"]) for e in log]
    assert kinds[0] == ("triggered", None)
    assert kinds[-1] == ("completed", None)
    for step_id in ("charge", "ship"):
        mine = [k for k, s in kinds if s == step_id]
        assert mine == ["step_queued", "step_started", "step_completed"], kinds
    # ship is queued only after charge completed.
    assert kinds.index(("step_completed", "charge")) < kinds.index(("step_queued", "ship"))
    completed = next(e for e in log if e["type"] == "step_completed" and e["step_id"] == "ship")
    assert completed["data"]["output"] == {"ok": 1}

    page = await service.client.get(f"{EXECUTIONS}/{execution_id}/events?limit=2")
    assert [e["seq"] for e in page.json()["events"]] == seqs[:2]
    cursor = page.json()["next_cursor"]
    rest = await service.client.get(f"{EXECUTIONS}/{execution_id}/events?limit=2&cursor={cursor}")
    assert [e["seq"] for e in rest.json()["events"]] == seqs[2:4]
