"""``/admin/keys``: create, list (with ``last_used_at``), revoke (refused at once)."""

import hashlib
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest

from tests.admin_api.conftest import Tenant, ok, walk
from tests.conftest import Service
from tests.jobs_support import PULL, assert_invalid, error_of, ms, now_ms
from tests.store_support import read

KEY_ID = re.compile(r"^key_[0-9A-HJKMNP-TV-Z]{26}$")
SECRET = re.compile(r"^sk_live_[0-9A-Za-z]{32,}$")
ALL_SCOPES = [
    "jobs:read",
    "jobs:write",
    "workflows:read",
    "workflows:write",
    "webhooks:read",
    "webhooks:write",
]
RECORD = {
    "id",
    "project_id",
    "name",
    "scopes",
    "admin",
    "created_at",
    "last_used_at",
    "revoked_at",
}
UNKNOWN_PROJECT = "proj_01JZZZZZZZZZZZZZZZZZZZZZZZ"

MakeTenant = Callable[..., AbstractAsyncContextManager[Tenant]]


def stored_last_used(db: str, key_id: str) -> int | None:
    [(value,)] = read(db, "SELECT last_used_at FROM api_keys WHERE id = ?", key_id)
    return None if value is None else int(value)


async def keys_of(admin: httpx.AsyncClient, project_id: str) -> list[dict[str, Any]]:
    page = ok(await admin.get(f"/admin/keys?project_id={project_id}&limit=100"))
    assert page["next_cursor"] is None
    return list(page["keys"])


async def test_create_a_key_shows_it_once(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t:
        before = now_ms()
        body = {"project_id": t.id, "name": "reporting", "scopes": ["jobs:read"]}
        created = ok(await admin.post("/admin/keys", json=body))
        assert set(created) == {"id", "key", "project_id", "name", "scopes", "created_at"}
        assert KEY_ID.match(created["id"]) and SECRET.match(created["key"])
        assert created["project_id"] == t.id
        assert created["name"] == "reporting"
        assert created["scopes"] == ["jobs:read"]
        assert before <= ms(created["created_at"]) <= now_ms()
        # Only the hash is stored, and lists never show either.
        [(digest,)] = await anyio.to_thread.run_sync(
            read, shared.db, "SELECT key_hash FROM api_keys WHERE id = ?", created["id"]
        )
        assert digest == hashlib.sha256(created["key"].encode()).hexdigest()
        listed = await admin.get(f"/admin/keys?project_id={t.id}")
        assert created["key"] not in listed.text and digest not in listed.text
        [newest, first] = ok(listed)["keys"]
        assert set(newest) == RECORD
        assert newest == {
            **{k: created[k] for k in ("id", "project_id", "name", "scopes", "created_at")},
            "admin": False,
            "last_used_at": None,
            "revoked_at": None,
        }
        assert first["id"] == t.key_id
        # The key works at once, with its scopes.
        async with shared.client_for(created["key"]) as client:
            assert (await client.get("/infra/jobs")).status_code == 200
            refused = error_of(await client.post("/infra/jobs", json=PULL), 403, "forbidden")
            assert "jobs:write" in refused["message"]
            error_of(await client.get("/admin/projects"), 403, "forbidden")


async def test_key_defaults_and_admin_keys(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t:
        plain = ok(await admin.post("/admin/keys", json={"project_id": t.id}))
        assert plain["scopes"] == ALL_SCOPES
        assert plain["name"] == t.name  # like the CLI: the project's name
        repeated = {"project_id": t.id, "scopes": ["*", "jobs:read", "*"], "admin": True}
        made = ok(await admin.post("/admin/keys", json=repeated))
        assert made["scopes"] == ["*", "jobs:read"]
        [record] = [k for k in await keys_of(admin, t.id) if k["id"] == made["id"]]
        assert record["admin"] is True
        async with shared.client_for(made["key"]) as client:
            assert ok(await client.get(f"/admin/projects/{t.id}"))["id"] == t.id
            assert (await client.post("/infra/jobs", json=PULL)).status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "$.project_id"),
        ({"project_id": ""}, "$.project_id"),
        ({"project_id": 5}, "$.project_id"),
        ({"project_id": "{project}", "scopes": []}, "$.scopes"),
        ({"project_id": "{project}", "scopes": ["jobs:admin"]}, "$.scopes[0]"),
        ({"project_id": "{project}", "scopes": "jobs:read"}, "$.scopes"),
        ({"project_id": "{project}", "name": "x" * 257}, "$.name"),
        ({"project_id": "{project}", "admin": "yes"}, "$.admin"),
    ],
)
async def test_create_key_validates_the_body(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant, body: Any, field: str
) -> None:
    async with tenant() as t:
        if body.get("project_id") == "{project}":
            body = {**body, "project_id": t.id}
        assert_invalid(await admin.post("/admin/keys", json=body), field)
        assert [k["id"] for k in await keys_of(admin, t.id)] == [t.key_id]


async def test_create_key_for_an_unknown_project_is_404(admin: httpx.AsyncClient) -> None:
    answer = await admin.post("/admin/keys", json={"project_id": UNKNOWN_PROJECT})
    error_of(answer, 404, "not_found")
    assert ok(await admin.get(f"/admin/keys?project_id={UNKNOWN_PROJECT}"))["keys"] == []


async def test_revoked_through_the_api_is_refused_at_once(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t:
        assert (await t.client.get("/infra/jobs")).status_code == 200  # cached as valid now
        before = now_ms()
        revoked = ok(await admin.delete(f"/admin/keys/{t.key_id}"))
        assert set(revoked) == RECORD
        assert revoked["id"] == t.key_id and revoked["project_id"] == t.id
        assert before <= ms(revoked["revoked_at"]) <= now_ms()
        error_of(await t.client.get("/infra/jobs"), 401, "unauthorized")
        error_of(await t.client.get("/core/tokens/balance"), 401, "unauthorized")
        # Revoking again changes nothing: the same record, the first revoked_at.
        assert ok(await admin.delete(f"/admin/keys/{t.key_id}")) == revoked
        [listed] = await keys_of(admin, t.id)
        assert listed == revoked
        # Another key of the same project still works.
        other = ok(await admin.post("/admin/keys", json={"project_id": t.id}))
        async with shared.client_for(other["key"]) as client:
            assert (await client.get("/infra/jobs")).status_code == 200


async def test_revoke_unknown_key_is_404(admin: httpx.AsyncClient) -> None:
    for key_id in ["key_01JZZZZZZZZZZZZZZZZZZZZZZZ", "nonsense"]:
        error_of(await admin.delete(f"/admin/keys/{key_id}"), 404, "not_found")


async def test_an_admin_may_revoke_its_own_key(shared: Service, admin: httpx.AsyncClient) -> None:
    made = ok(await admin.get("/admin/projects?limit=100"))["projects"]
    [ops] = [p for p in made if p["name"] == "ops"]
    body = {"project_id": ops["id"], "admin": True, "scopes": ["*"]}
    second = ok(await admin.post("/admin/keys", json=body))
    async with shared.client_for(second["key"]) as client:
        ok(await client.delete(f"/admin/keys/{second['id']}"))
        error_of(await client.get("/admin/projects"), 401, "unauthorized")
    assert (await admin.get("/admin/projects")).status_code == 200


async def test_last_used_at_follows_use(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t:
        [record] = await keys_of(admin, t.id)
        assert record["last_used_at"] is None
        before = now_ms()
        assert (await t.client.get("/infra/jobs")).status_code == 200
        [record] = await keys_of(admin, t.id)
        first = ms(record["last_used_at"])
        assert before <= first <= now_ms()
        # The first use is written behind at once, later ones at most once a minute.
        with anyio.fail_after(5):
            while await anyio.to_thread.run_sync(stored_last_used, shared.db, t.key_id) is None:
                await anyio.sleep(0.01)
        written = await anyio.to_thread.run_sync(stored_last_used, shared.db, t.key_id)
        assert written is not None and before <= written <= first
        await anyio.sleep(0.01)
        assert (await t.client.get("/infra/jobs")).status_code == 200
        [record] = await keys_of(admin, t.id)
        assert ms(record["last_used_at"]) > first  # fresh from memory
        # A key nobody used has none.
        async with tenant() as other:
            keys = await keys_of(admin, other.id)
            assert keys[0]["last_used_at"] is None


async def test_keys_page_newest_first_and_filter_by_project(
    admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t, tenant() as other:
        made = [
            ok(await admin.post("/admin/keys", json={"project_id": t.id, "name": f"k{i}"}))
            for i in range(4)
        ]
        expected = [k["id"] for k in reversed(made)] + [t.key_id]
        first = ok(await admin.get(f"/admin/keys?project_id={t.id}&limit=2"))
        assert [k["id"] for k in first["keys"]] == expected[:2]
        paged = await walk(admin, f"/admin/keys?project_id={t.id}", "keys", 2)
        assert [k["id"] for k in paged] == expected
        everyone = await walk(admin, "/admin/keys", "keys", 100)
        ids = [k["id"] for k in everyone]
        assert other.key_id in ids and set(expected) <= set(ids)
        assert ids.index(other.key_id) > ids.index(made[-1]["id"])  # older: made before
        assert len(ids) == len(set(ids))
        for query in ["limit=0", "limit=101", "cursor=bad", f"project_id={'p' * 300}"]:
            error_of(await admin.get(f"/admin/keys?{query}"), 400, "bad_request")
