"""Archiving blueprints and finding them by name (DESIGN §4): ``DELETE`` archives, lists leave
archived blueprints out unless ``?archived=true``, a trigger of one is 409 while its executions
run on, ``?name=`` matches exactly; over HTTP, the SDK and the CLI, and on an older database."""

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from flowyard.client import AsyncClient
from flowyard.ids import new_id
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.api_surface import Owner, assert_error, snapshot
from tests.conftest import ServerProcess, Service, running_service
from tests.schema_support import older_database
from tests.workflow_support import (
    ack,
    claim_one,
    create_blueprint,
    execution,
    pull_step,
    trigger,
    wait_status,
)

BLUEPRINTS = "/infra/workflows/blueprints"
RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


async def listed(client: httpx.AsyncClient, query: str = "") -> list[str]:
    """The names of the listed blueprints, newest first."""
    response = await client.get(f"{BLUEPRINTS}?limit=100{query}")
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["blueprints"]]


async def test_delete_archives_and_a_second_delete_answers_the_same(service: Service) -> None:
    client = service.client
    blueprint = await create_blueprint(client, [pull_step("a", "q")], name="gone")
    assert blueprint["archived_at"] is None
    response = await client.delete(f"{BLUEPRINTS}/{blueprint['id']}")
    assert response.status_code == 200, response.text
    archived = response.json()
    assert archived == {**blueprint, "archived_at": archived["archived_at"]}
    assert re.match(RFC3339, archived["archived_at"])
    assert (await client.get(f"{BLUEPRINTS}/{blueprint['id']}")).json() == archived
    again = await client.delete(f"{BLUEPRINTS}/{blueprint['id']}")
    assert again.status_code == 200 and again.json() == archived


async def test_archived_blueprints_leave_lists_unless_asked_for(service: Service) -> None:
    client = service.client
    kept = await create_blueprint(client, [pull_step("a", "q")], name="kept")
    gone = await create_blueprint(client, [pull_step("a", "q")], name="gone")
    assert (await client.delete(f"{BLUEPRINTS}/{gone['id']}")).status_code == 200
    assert await listed(client) == ["kept"]
    assert await listed(client, "&archived=false") == ["kept"]
    assert await listed(client, "&archived=true") == ["gone", "kept"]
    response = await client.get(f"{BLUEPRINTS}?archived=true")
    items = {item["name"]: item for item in response.json()["blueprints"]}
    assert items["kept"]["archived_at"] is None
    assert items["gone"]["archived_at"] is not None
    assert items["kept"]["id"] == kept["id"]
    for bad in ("yes", "1", "TRUE", ""):
        assert_error(await client.get(f"{BLUEPRINTS}?archived={bad}"), 400, "bad_request")


async def test_an_archived_blueprint_cannot_be_triggered_and_its_executions_run_on(
    service: Service,
) -> None:
    client = service.client
    blueprint = await create_blueprint(
        client, [pull_step("a", "arch"), pull_step("b", "arch", depends_on=["a"])]
    )
    started = await trigger(client, blueprint["id"], idempotency_key="first")
    assert (await client.delete(f"{BLUEPRINTS}/{blueprint['id']}")).status_code == 200
    url = f"{BLUEPRINTS}/{blueprint['id']}/trigger"
    for body in ({}, {"input_data": {}, "idempotency_key": "first"}, {"idempotency_key": "new"}):
        before = await snapshot_of(service)
        assert_error(await client.post(url, json=body), 409, "conflict")
        assert await snapshot_of(service) == before
    # The execution started before the archive finishes normally.
    await ack(client, await claim_one(client, "arch"), {"n": 1})
    await ack(client, await claim_one(client, "arch"), {"n": 2})
    done = await wait_status(client, started["execution_id"], "completed")
    assert done["result"] == {"a": {"n": 1}, "b": {"n": 2}}
    assert (await execution(client, started["execution_id"]))["status"] == "completed"


async def snapshot_of(service: Service) -> Any:
    """What the service's own project holds (to prove a refused call changed nothing)."""
    owner = Owner(service, "test", service.project_id, service.key, service.client)
    return await snapshot(owner)


async def test_another_projects_blueprint_is_404_and_stays_live(service: Service) -> None:
    blueprint = await create_blueprint(service.client, [pull_step("a", "q")])
    async with service.client_for(service.new_key("other")) as other:
        assert_error(await other.delete(f"{BLUEPRINTS}/{blueprint['id']}"), 404, "not_found")
        assert_error(await other.delete(f"{BLUEPRINTS}/wf_nope"), 404, "not_found")
    async with service.client_for(service.new_key("test", ["workflows:read"])) as reader:
        assert_error(await reader.delete(f"{BLUEPRINTS}/{blueprint['id']}"), 403, "forbidden")
    assert (await service.client.get(f"{BLUEPRINTS}/{blueprint['id']}")).json()[
        "archived_at"
    ] is None


async def test_name_filters_by_exact_name(service: Service) -> None:
    client = service.client
    for name in ("orders", "orders-v2", "Orders", "orders ", "orders"):
        await create_blueprint(client, [pull_step("a", "q")], name=name)
    assert await listed(client, "&name=orders") == ["orders", "orders"]
    assert await listed(client, "&name=Orders") == ["Orders"]
    assert await listed(client, "&name=orders%20") == ["orders "]
    assert await listed(client, "&name=order") == []
    first = await client.get(f"{BLUEPRINTS}?name=orders&limit=1")
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    second = await client.get(f"{BLUEPRINTS}?name=orders&limit=1&cursor={cursor}")
    assert [b["name"] for b in second.json()["blueprints"]] == ["orders"]
    assert second.json()["next_cursor"] is None
    assert_error(await client.get(f"{BLUEPRINTS}?name="), 400, "bad_request")
    assert_error(await client.get(f"{BLUEPRINTS}?name={'x' * 257}"), 400, "bad_request")


async def test_the_sdk_archives_and_filters(service: Service) -> None:
    async with AsyncClient(service.url, service.key) as api:
        spec = {"name": "sdk", "steps": [pull_step("a", "q")]}
        blueprint = await api.workflows.create_blueprint(spec)
        other = await api.workflows.create_blueprint({**spec, "name": "other"})
        archived = await api.workflows.archive_blueprint(blueprint.id)
        assert archived.archived_at is not None and archived.id == blueprint.id
        assert [b.id for b in (await api.workflows.list_blueprints()).items] == [other.id]
        page = await api.workflows.list_blueprints(name="sdk", archived=True)
        assert [(b.id, b.archived_at) for b in page.items] == [(blueprint.id, archived.archived_at)]
        assert (await api.workflows.list_blueprints(name="sdk")).items == []
        found = [b.id async for b in api.workflows.iter_blueprints(archived=True, limit=1)]
        assert found == [other.id, blueprint.id]


def _old_database(path: Path) -> tuple[str, str, str]:
    """A database at the schema before ``archived_at`` and ``name`` existed, with a key and
    one blueprint written as that version wrote them; (path, key, blueprint id)."""
    db = str(path / "old.db")
    with older_database(db, 3) as (conn, project, key):
        blueprint_id = new_id("wf")
        doc = {
            "id": blueprint_id,
            "project_id": project.id,
            "name": "legacy",
            "description": None,
            "steps": [pull_step("a", "old")],
            "max_duration_sec": 60,
            "created_at": 1_700_000_000_000,
        }
        conn.execute(
            "INSERT INTO blueprints (id, project_id, doc) VALUES (?, ?, ?)",
            (blueprint_id, project.id, msgspec.json.encode(doc)),
        )
    return db, key, blueprint_id


async def test_blueprints_of_an_older_database_are_live_and_found_by_name(
    tmp_path: Path,
) -> None:
    db, key, blueprint_id = _old_database(tmp_path)
    async with running_service(tmp_path, db=db) as service, service.client_for(key) as client:
        response = await client.get(f"{BLUEPRINTS}?name=legacy")
        [item] = response.json()["blueprints"]
        assert (item["id"], item["archived_at"]) == (blueprint_id, None)
        started = await trigger(client, blueprint_id)
        assert started["status"] == "running"
        assert (await client.delete(f"{BLUEPRINTS}/{blueprint_id}")).status_code == 200
        assert await listed(client, "&name=legacy") == []
        assert await listed(client, "&name=legacy&archived=true") == ["legacy"]


def test_the_cli_archives_and_lists_archived_blueprints(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "cli.db")
    key = create_key_sync(db, "cli", list(ALL_SCOPES)).key
    server = server_process(db)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"name": "cli", "steps": [pull_step("a", "q")]}
    created = httpx.post(f"{server.url}{BLUEPRINTS}", json=body, headers=headers, timeout=30)
    blueprint_id = created.json()["id"]
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLOWYARD_")}
    env |= {"FLOWYARD_URL": server.url, "FLOWYARD_API_KEY": key}

    def flowyard(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "flowyard", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)

    done = flowyard("blueprints", "archive", blueprint_id)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    fields = dict(line.split(None, 1) for line in lines[: lines.index("")])
    assert fields["id:"] == blueprint_id and re.match(RFC3339, fields["archived_at:"])
    assert blueprint_id not in flowyard("blueprints", "list").stdout
    listing = flowyard("blueprints", "list", "--archived").stdout.splitlines()
    table = [line.split() for line in listing]
    assert table[0] == ["id", "name", "description", "created_at", "archived_at"]
    assert table[1][0] == blueprint_id and table[1][-1] == fields["archived_at:"]
    named = flowyard("blueprints", "list", "--archived", "--name", "nope", "--json")
    assert named.returncode == 0 and msgspec.json.decode(named.stdout)["blueprints"] == []
    named = flowyard("blueprints", "list", "--archived", "--name", "cli", "--json")
    assert [b["id"] for b in msgspec.json.decode(named.stdout)["blueprints"]] == [blueprint_id]
    missing = flowyard("blueprints", "archive", "wf_missing")
    assert missing.returncode != 0 and "not found" in missing.stderr
