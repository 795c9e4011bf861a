"""Who may call every route (DESIGN §2): keys, revocation, scopes, admin keys, projects.

One server for the module; each test works in projects of its own. The table of routes is
``tests/api_surface.py``; a test below fails when the app grows a route the table lacks.
"""

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowyard.storage.projects import ALL_SCOPES
from tests.api_surface import (
    ADMIN,
    CALLS,
    IDS,
    NON_ADMIN,
    PRESENT,
    Call,
    Prepared,
    app_routes,
    assert_error,
    client_with,
    make_key,
    new_owner,
    revoked_key,
    send,
    snapshot,
)
from tests.conftest import Service, running_service
from tests.jobs_support import PULL, create

PARAM_NAMES = re.compile(r"\{(\w+)\}")
UNKNOWN_IDS = {"job_id": "job_01JZZZZZZZZZZZZZZZZZZZZZZZ", "id": "wf_01JZZZZZZZZZZZZZZZZZZZZZZZ"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    path: Path = tmp_path_factory.mktemp("auth-matrix")
    async with running_service(path) as service:
        yield service


def unknown(prepared: Prepared) -> dict[str, str]:
    """The same path parameters, naming objects that do not exist."""
    return {name: UNKNOWN_IDS.get(name, "no-such-thing") for name in prepared.params}


def test_every_route_is_in_the_table() -> None:
    listed = {(call.method, call.path) for call in CALLS}
    missing = sorted(app_routes() - listed)
    assert not missing, f"routes without an auth-matrix entry: {missing}"


def test_the_table_has_no_duplicates() -> None:
    assert len({call.id for call in CALLS}) == len(CALLS)


@pytest.mark.parametrize("call", PRESENT, ids=IDS)
async def test_no_key_a_bad_key_or_a_revoked_key_is_401(shared: Service, call: Call) -> None:
    async with new_owner(shared) as owner:
        prepared = await call.prepare(owner)
        before = await snapshot(owner)
        revoked = await revoked_key(shared, owner.project)
        bad_headers = [
            {},
            {"Authorization": ""},
            {"Authorization": "Bearer"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Token " + owner.key},  # a real key under the wrong scheme
            {"Authorization": "Bearer sk_live_" + "x" * 40},
            {"Authorization": "Bearer " + owner.key[:-1]},  # a real key, one character short
            {"Authorization": "Bearer not a key at all"},
            {"X-API-Key": ""},
            {"X-API-Key": "sk_live_" + "y" * 40},
            {"X-API-Key": owner.key.upper()},
            {"Authorization": f"Bearer {revoked}"},
            {"X-API-Key": revoked},
        ]
        for headers in bad_headers:
            async with client_with(shared, headers) as client:
                for override in ({}, unknown(prepared)):
                    response = await send(client, call, prepared, **override)
                    assert_error(response, 401, "unauthorized")
        assert await snapshot(owner) == before


@pytest.mark.parametrize("call", PRESENT, ids=IDS)
async def test_a_key_without_the_scope_is_403_naming_it(shared: Service, call: Call) -> None:
    if call.scope is None:
        pytest.skip("any valid key may call it")
    async with new_owner(shared) as owner:
        prepared = await call.prepare(owner)
        before = await snapshot(owner)
        if call.scope == ADMIN:
            lacking = [await make_key(shared, owner.project, ["*"])]
        else:
            others = [scope for scope in ALL_SCOPES if scope != call.scope]
            lacking = [
                await make_key(shared, owner.project, others),
                await make_key(shared, owner.project, []),
            ]
        for created in lacking:
            for headers in ({"Authorization": f"Bearer {created.key}"}, {"X-API-Key": created.key}):
                async with client_with(shared, headers) as client:
                    for override in ({}, unknown(prepared)):
                        response = await send(client, call, prepared, **override)
                        body = assert_error(response, 403, "forbidden")
                        assert call.scope in body["message"], body
        assert await snapshot(owner) == before


@pytest.mark.parametrize("call", PRESENT, ids=IDS)
@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
async def test_a_key_with_just_the_scope_succeeds_with_either_header(
    shared: Service, call: Call, header: str
) -> None:
    async with new_owner(shared) as owner:
        prepared = await call.prepare(owner)
        if call.scope == ADMIN:
            created = await make_key(shared, owner.project, [], admin=True)
        else:
            created = await make_key(shared, owner.project, [call.scope] if call.scope else [])
        value = f"Bearer {created.key}" if header == "Authorization" else created.key
        async with client_with(shared, {header: value}) as client:
            response = await send(client, call, prepared)
        assert response.status_code == call.success, response.text
        assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("call", NON_ADMIN, ids=[call.id for call in NON_ADMIN])
async def test_another_projects_key_sees_404_or_its_own_project(
    shared: Service, call: Call
) -> None:
    async with new_owner(shared) as owner, new_owner(shared, "stranger") as stranger:
        prepared = await call.prepare(owner)
        await create(owner.client, PULL)  # something a stranger's claim must not get
        before = await snapshot(owner)
        response = await send(stranger.client, call, prepared)
        if call.names_object:
            body = assert_error(response, 404, "not_found")
            assert owner.project_id not in body["message"]
        elif call.body_names_object:
            body = assert_error(response, 400, "bad_request")
            assert owner.project_id not in response.text
        else:
            assert response.status_code == call.success, response.text
            # The stranger's own view: nothing of the owner's project shows through.
            assert owner.project_id not in response.text
            for owned in _ids(before):
                assert owned not in response.text, (owned, response.text)
            if "project_id" in response.json():
                assert response.json()["project_id"] == stranger.project_id
        assert await snapshot(owner) == before


def _ids(found: dict[str, object]) -> list[str]:
    """Every object id and secret in a snapshot."""
    ids: list[str] = []
    for value in found.values():
        if isinstance(value, dict):
            for items in value.values():
                if isinstance(items, list):
                    ids += [item["id"] for item in items if isinstance(item, dict) and "id" in item]
            if "signing_secret" in value:
                ids.append(str(value["signing_secret"]))
    return ids


async def test_a_key_revoked_through_the_admin_api_is_refused_at_once_everywhere(
    shared: Service,
) -> None:
    async with new_owner(shared) as owner:
        victim = await make_key(shared, owner.project)
        admin = await make_key(shared, "matrix-admin", [], admin=True)
        async with shared.client_for(victim.key) as client, shared.client_for(admin.key) as root:
            assert (await client.get("/infra/jobs")).status_code == 200  # now cached as valid
            revoked = await root.delete(f"/admin/keys/{victim.record.id}")
            assert revoked.status_code == 200, revoked.text
            for call in PRESENT:
                params = unknown(Prepared(dict.fromkeys(PARAM_NAMES.findall(call.path), "")))
                response = await client.request(call.method, call.path.format(**params))
                assert_error(response, 401, "unauthorized")
