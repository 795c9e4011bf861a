"""Unknown fields in a request body are 400, each one named (DESIGN §2): on every route with a
body, at any depth of a blueprint, a job or a trigger, and nothing of the call is created."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowyard.http.body import MAX_DETAILS
from flowyard.http.schemas import BatchBody
from flowyard.http.unknown_fields import unknown_fields
from flowyard.workflows.blueprint import BlueprintSpec
from tests.api_surface import (
    ADMIN,
    BLUEPRINT,
    WITH_BODY,
    Call,
    Owner,
    assert_error,
    new_owner,
    snapshot,
)
from tests.conftest import Handler, Service, running_service
from tests.jobs_support import LATER, PULL, create

Json = dict[str, Any]
STEP: Json = {"id": "a", "job_trigger": {"trigger": {"type": "pull", "queue": "wf"}}}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    path: Path = tmp_path_factory.mktemp("unknown-fields")
    async with running_service(path) as service:
        yield service


def paths(response: httpx.Response) -> list[str]:
    """The ``details`` paths of a 400 answer."""
    body = assert_error(response, 400, "bad_request")
    return [detail["path"] for detail in body["details"]]


def unknown(response: httpx.Response) -> list[str]:
    """The paths a 400 names as unknown fields."""
    body = assert_error(response, 400, "bad_request")
    return [d["path"] for d in body["details"] if d["message"] == "unknown field"]


# ---------------------------------------------------------------- every route with a body


@pytest.mark.parametrize("call", WITH_BODY, ids=[call.id for call in WITH_BODY])
async def test_every_unknown_top_level_field_is_named_and_nothing_changes(
    shared: Service, call: Call
) -> None:
    async with new_owner(shared) as owner:
        created = await owner.key_for(admin=call.scope == ADMIN)
        async with shared.client_for(created.key) as client:
            prepared = await call.prepare(owner)
            before = await snapshot(owner)
            body = {**(prepared.body or {}), "bogus": 1, "Other Field": {"x": [1]}}
            response = await client.request(call.method, call.url(prepared), json=body)
            assert unknown(response) == ["$.bogus", '$["Other Field"]']
            assert "$.bogus" in response.json()["message"]
            assert await snapshot(owner) == before
            # The same body without them is accepted: only the unknown fields were wrong.
            response = await client.request(call.method, call.url(prepared), json=prepared.body)
            assert response.status_code == call.success, response.text


# ------------------------------------------------------------------------ blueprints


async def _refused_blueprint(owner: Owner, blueprint: Json) -> httpx.Response:
    before = await snapshot(owner)
    response = await owner.client.post("/infra/workflows/blueprints", json=blueprint)
    assert await snapshot(owner) == before
    return response


@pytest.mark.parametrize(
    "field, value",
    [
        ("if", "input.amount > 10"),
        ("loop", "{{input.items}}"),
        ("dependsOn", ["b"]),
    ],
)
async def test_an_unknown_step_field_is_400(shared: Service, field: str, value: Any) -> None:
    async with new_owner(shared) as owner:
        steps = [{**STEP, field: value}]
        response = await _refused_blueprint(owner, {**BLUEPRINT, "steps": steps})
        assert paths(response) == [f"$.steps[0].{field}"]


async def test_every_unknown_field_of_a_blueprint_is_named_at_every_depth(
    shared: Service,
) -> None:
    async with new_owner(shared) as owner:
        blueprint = {
            "name": "many",
            "colour": "blue",
            "steps": [
                {**STEP, "if": "x", "loop": "y"},
                {
                    "id": "b",
                    "depends_on": ["a"],
                    "job_trigger": {
                        "trigger": {"type": "queue", "queue": "q", "concurrency": 2},
                        "handler": "http://example.com/h",
                        "retries": 5,
                    },
                },
            ],
        }
        response = await _refused_blueprint(owner, blueprint)
        assert paths(response) == [
            "$.colour",
            "$.steps[0].if",
            "$.steps[0].loop",
            "$.steps[1].job_trigger.trigger.concurrency",
            "$.steps[1].job_trigger.retries",
        ]
        assert "(and 4 more problems)" in response.json()["message"]


async def test_a_flood_of_unknown_fields_names_the_first_hundred_and_counts_the_rest(
    shared: Service,
) -> None:
    async with new_owner(shared) as owner:
        body = {"name": "flood", "steps": [STEP], **{f"f{i}": i for i in range(20_000)}}
        response = await _refused_blueprint(owner, body)
        assert paths(response) == [f"$.f{i}" for i in range(MAX_DETAILS)]
        assert response.json()["message"] == "$.f0: unknown field (and 19999 more problems)"


async def test_unknown_fields_come_with_the_type_error_that_stopped_decoding(
    shared: Service,
) -> None:
    async with new_owner(shared) as owner:
        steps = [{**STEP, "id": 7, "if": "x"}]
        response = await _refused_blueprint(owner, {**BLUEPRINT, "steps": steps})
        body = assert_error(response, 400, "bad_request")
        assert {"path": "$.steps[0].if", "message": "unknown field"} in body["details"]
        assert any(d["path"] == "$.steps[0].id" for d in body["details"])


async def test_a_payload_template_and_input_data_are_free_json(shared: Service) -> None:
    async with new_owner(shared) as owner:
        steps = [{**STEP, "payload_template": {"anything": {"when": "{{input.when}}"}}}]
        created = await owner.client.post(
            "/infra/workflows/blueprints", json={**BLUEPRINT, "steps": steps}
        )
        assert created.status_code == 200, created.text
        url = f"/infra/workflows/blueprints/{created.json()['id']}/trigger"
        response = await owner.client.post(url, json={"input_data": {"when": {"any": 1}}})
        assert response.status_code == 200, response.text
        response = await owner.client.post(url, json={"input_data": {"when": 1}, "input": {}})
        assert paths(response) == ["$.input"]


# ------------------------------------------------------------------------------- jobs


async def test_unknown_fields_of_a_job_and_its_trigger_are_named(shared: Service) -> None:
    async with new_owner(shared) as owner:
        before = await snapshot(owner)
        job = {**PULL, "trigger": {**PULL["trigger"], "visibility": 5}, "retry": 1}
        assert paths(await owner.client.post("/infra/jobs", json=job)) == [
            "$.trigger.visibility",
            "$.retry",
        ]
        batch = {"jobs": [PULL, {**PULL, "trigger": {"type": "delayed", "delay": 5}}]}
        response = await owner.client.post("/infra/jobs/batch", json=batch)
        assert unknown(response) == ["$.jobs[1].trigger.delay"]
        assert await snapshot(owner) == before


async def test_unknown_fields_of_a_patch_trigger_are_named(shared: Service) -> None:
    async with new_owner(shared) as owner:
        job = await create(owner.client, LATER)
        before = await snapshot(owner)
        patch = {"enabled": False, "trigger": {"delay_seconds": 5, "cron": "* * * * *"}}
        response = await owner.client.patch(f"/infra/jobs/{job['id']}", json=patch)
        assert paths(response) == ["$.trigger.cron"]
        assert await snapshot(owner) == before


async def test_a_callback_with_unknown_fields_is_400_and_the_run_still_waits(
    shared: Service, handler: Handler
) -> None:
    url = handler.script("/later", (202, {}, 0))
    async with new_owner(shared) as owner:
        job = await create(owner.client, {"trigger": {"type": "immediate"}, "handler": url})
        [delivery] = await handler.wait_for("/later")
        callback = delivery.headers["x-flowyard-callback-url"]
        async with httpx.AsyncClient(timeout=30) as anonymous:
            body = {"status": "completed", "result": 1, "output": 2, "job_id": job["id"]}
            assert paths(await anonymous.post(callback, json=body)) == ["$.output", "$.job_id"]
            running = await owner.client.get(f"/infra/jobs/{job['id']}")
            assert running.json()["status"] == "running"
            done = await anonymous.post(callback, json={"status": "completed", "result": 1})
            assert done.status_code == 200, done.text


# ------------------------------------------------------------------------------ the walker


def test_valid_bodies_and_bodies_that_are_not_json_have_no_unknown_fields() -> None:
    assert (
        unknown_fields(b'{"jobs": [{"trigger": {"type": "pull", "queue": "q"}}]}', BatchBody) == []
    )
    assert unknown_fields(b"{", BatchBody) == []
    assert unknown_fields(b"[1, 2]", BatchBody) == []


def test_an_unknown_trigger_type_is_left_to_the_decoder() -> None:
    body = b'{"jobs": [{"trigger": {"type": "cron", "every": 5}, "x": 1}]}'
    assert unknown_fields(body, BatchBody) == [{"path": "$.jobs[0].x", "message": "unknown field"}]


def test_fields_of_mistyped_containers_are_not_guessed() -> None:
    body = b'{"name": "n", "steps": {"id": "a", "when": 1}, "extra": null}'
    assert unknown_fields(body, BlueprintSpec) == [{"path": "$.extra", "message": "unknown field"}]
