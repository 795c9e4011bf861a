"""``/admin/projects``: who may call the admin API, projects, their rate limits and balances."""

import re
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from tests.admin_api.conftest import Tenant, ok, walk
from tests.conftest import Service
from tests.jobs_support import PULL, assert_invalid, error_of, ms, new_key, now_ms
from tests.store_support import read

PROJECT_ID = re.compile(r"^proj_[0-9A-HJKMNP-TV-Z]{26}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UNKNOWN_PROJECT = "proj_01JZZZZZZZZZZZZZZZZZZZZZZZ"
UNKNOWN_KEY = "key_01JZZZZZZZZZZZZZZZZZZZZZZZ"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")

MakeTenant = Callable[..., AbstractAsyncContextManager[Tenant]]

# (method, path, body) of every admin route; {project} and {key} are filled in.
CALLS: list[tuple[str, str, Any]] = [
    ("POST", "/admin/projects", {"name": "refused"}),
    ("GET", "/admin/projects", None),
    ("GET", "/admin/projects/{project}", None),
    ("PATCH", "/admin/projects/{project}", {"rate_limit_rps": 1}),
    ("GET", "/admin/keys", None),
    ("POST", "/admin/keys", {"project_id": "{project}", "name": "refused"}),
    ("DELETE", "/admin/keys/{key}", None),
    ("GET", "/admin/jobs", None),
    ("GET", "/admin/executions", None),
    ("GET", "/admin/stats", None),
    ("GET", "/admin/cluster", None),
]


def stored(db: str, sql: str, *params: Any) -> Any:
    return read(db, sql, *params)


# ------------------------------------------------------------------------------ who may call


@pytest.mark.parametrize(("method", "path", "body"), CALLS, ids=[f"{m} {p}" for m, p, _ in CALLS])
async def test_admin_routes_need_an_admin_key(
    shared: Service, tenant: MakeTenant, method: str, path: str, body: Any
) -> None:
    async with tenant() as t:
        url = path.format(project=t.id, key=t.key_id)
        if isinstance(body, dict) and body.get("project_id"):
            body = {**body, "project_id": t.id}
        star = await new_key(shared, t.name, ["*"])
        for headers in [
            {},
            {"Authorization": "Bearer sk_live_" + "x" * 40},
            {"X-API-Key": "sk_live_" + "y" * 40},
        ]:
            async with httpx.AsyncClient(base_url=shared.url, headers=headers) as client:
                error_of(await client.request(method, url, json=body), 401, "unauthorized")
        for key in (t.key, star):  # every scope, even "*", is not admin
            async with shared.client_for(key) as client:
                refused = error_of(await client.request(method, url, json=body), 403, "forbidden")
                assert "admin" in refused["message"]
        # Nothing changed: the tenant's key still works, no project was made, no limit set.
        assert (await t.client.get("/infra/jobs")).status_code == 200
        assert stored(shared.db, "SELECT 1 FROM projects WHERE name = 'refused'") == []
        assert stored(shared.db, "SELECT 1 FROM api_keys WHERE name = 'refused'") == []
        assert stored(shared.db, "SELECT rate_limit_rps FROM projects WHERE id = ?", t.id) == [
            (None,)
        ]


async def test_admin_routes_are_free_and_not_rate_limited(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t:
        own = ok(await admin.get("/admin/projects?limit=100"))["projects"]
        [ops] = [project for project in own if project["name"] == "ops"]
        ok(await admin.patch(f"/admin/projects/{ops['id']}", json={"rate_limit_rps": 1}))
        ok(await admin.patch(f"/admin/projects/{ops['id']}", json={"token_balance": 0}))
        try:
            for _ in range(10):
                answer = await admin.get(f"/admin/projects/{t.id}")
                assert answer.status_code == 200, answer.text
                assert not any(name in answer.headers for name in RATE_HEADERS)
        finally:
            body = {"rate_limit_rps": None, "token_balance": None}
            ok(await admin.patch(f"/admin/projects/{ops['id']}", json=body))


# ------------------------------------------------------------------------------ projects


async def test_create_read_and_list_a_project(shared: Service, admin: httpx.AsyncClient) -> None:
    before = now_ms()
    created = ok(await admin.post("/admin/projects", json={"name": "acme corp"}))
    assert set(created) == {"id", "name", "rate_limit_rps", "token_balance", "created_at"}
    assert PROJECT_ID.match(created["id"]), created
    assert created["name"] == "acme corp"
    assert created["rate_limit_rps"] is None and created["token_balance"] is None
    assert before <= ms(created["created_at"]) <= now_ms()
    assert ok(await admin.get(f"/admin/projects/{created['id']}")) == created
    listed = ok(await admin.get("/admin/projects"))
    assert listed["projects"][0] == created  # newest first
    assert set(listed) == {"projects", "next_cursor"}
    # The name is taken now: 409, and nothing else was made.
    taken = error_of(
        await admin.post("/admin/projects", json={"name": "acme corp"}), 409, "conflict"
    )
    assert "acme corp" in taken["message"]
    names = stored(shared.db, "SELECT name FROM projects WHERE name = 'acme corp'")
    assert names == [("acme corp",)]
    # A project made by the CLI shows up too, and the API's project takes CLI keys.
    await new_key(shared, "made-by-cli")
    newest = ok(await admin.get("/admin/projects?limit=1"))["projects"][0]
    assert newest["name"] == "made-by-cli"


async def test_create_project_validates_the_name(shared: Service, admin: httpx.AsyncClient) -> None:
    before = stored(shared.db, "SELECT COUNT(*) FROM projects")
    for body in [{}, {"name": ""}, {"name": "x" * 257}, {"name": 7}, {"name": None}]:
        assert_invalid(await admin.post("/admin/projects", json=body), "$.name")
    error_of(await admin.post("/admin/projects", content=b"{nope"), 400, "bad_request")
    error_of(await admin.post("/admin/projects"), 400, "bad_request")
    sent_as_text = await admin.post(
        "/admin/projects", content=b'{"name": "t"}', headers={"content-type": "text/plain"}
    )
    error_of(sent_as_text, 415, "unsupported_media_type")
    assert stored(shared.db, "SELECT COUNT(*) FROM projects") == before
    longest = ok(await admin.post("/admin/projects", json={"name": "n" * 256}))
    assert longest["name"] == "n" * 256


async def test_unknown_project_is_404(admin: httpx.AsyncClient) -> None:
    error_of(await admin.get(f"/admin/projects/{UNKNOWN_PROJECT}"), 404, "not_found")
    patch = await admin.patch(f"/admin/projects/{UNKNOWN_PROJECT}", json={"rate_limit_rps": 5})
    error_of(patch, 404, "not_found")
    # 404 comes before the body is looked at.
    bad = await admin.patch(f"/admin/projects/{UNKNOWN_PROJECT}", json={"rate_limit_rps": -1})
    error_of(bad, 404, "not_found")


async def test_projects_page_newest_first(admin: httpx.AsyncClient) -> None:
    made = [ok(await admin.post("/admin/projects", json={"name": f"paged-{i}"})) for i in range(5)]
    first = ok(await admin.get("/admin/projects?limit=2"))
    assert [p["id"] for p in first["projects"]] == [made[4]["id"], made[3]["id"]]
    assert first["next_cursor"]
    second = ok(await admin.get(f"/admin/projects?limit=2&cursor={first['next_cursor']}"))
    assert [p["id"] for p in second["projects"]] == [made[2]["id"], made[1]["id"]]
    everything = await walk(admin, "/admin/projects", "projects", 3)
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids))
    assert ids[:5] == [p["id"] for p in reversed(made)]
    assert ok(await admin.get("/admin/projects?limit=100"))["projects"] == everything
    for query in ["limit=0", "limit=101", "limit=x", "cursor=nonsense", "cursor=" + "A" * 600]:
        error_of(await admin.get(f"/admin/projects?{query}"), 400, "bad_request")


# ------------------------------------------------------------------------------ settings


async def test_patch_rate_limit_applies_at_once(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t:
        plain = await t.client.get("/infra/jobs")
        assert not any(name in plain.headers for name in RATE_HEADERS)
        patched = ok(await admin.patch(f"/admin/projects/{t.id}", json={"rate_limit_rps": 2}))
        assert patched["rate_limit_rps"] == 2 and patched["token_balance"] is None
        assert stored(shared.db, "SELECT rate_limit_rps FROM projects WHERE id = ?", t.id) == [
            (2.0,)
        ]
        limited = await t.client.get("/infra/jobs")
        assert limited.status_code == 200, limited.text
        assert limited.headers["x-ratelimit-limit"] == "2"
        assert limited.headers["x-ratelimit-remaining"] == "1"
        assert int(limited.headers["x-ratelimit-reset"]) >= int(time.time())
        answers = [await t.client.get("/infra/jobs") for _ in range(3)]
        refused = [a for a in answers if a.status_code == 429]
        assert refused, [a.status_code for a in answers]
        body = error_of(refused[0], 429, "rate_limited")
        assert body["message"]
        assert int(refused[0].headers["retry-after"]) >= 1
        assert all(name in refused[0].headers for name in RATE_HEADERS)
        # Another project is not limited.
        async with tenant() as other:
            free = await other.client.get("/infra/jobs")
            assert free.status_code == 200 and "x-ratelimit-limit" not in free.headers
        # null removes the limit, at once.
        removed = ok(await admin.patch(f"/admin/projects/{t.id}", json={"rate_limit_rps": None}))
        assert removed["rate_limit_rps"] is None
        again = await t.client.get("/infra/jobs")
        assert again.status_code == 200 and "x-ratelimit-limit" not in again.headers
        assert ok(await admin.get(f"/admin/projects/{t.id}"))["rate_limit_rps"] is None


async def test_patch_token_balance_applies_at_once(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t:
        assert ok(await t.client.get("/core/tokens/balance"))["total_balance"] is None
        path = f"/admin/projects/{t.id}"
        patched = ok(await admin.patch(path, json={"token_balance": "0.0000016"}))
        assert patched["token_balance"] == "0.0000016"
        assert stored(shared.db, "SELECT token_balance FROM projects WHERE id = ?", t.id) == [
            (1600,)
        ]
        balance = ok(await t.client.get("/core/tokens/balance"))
        assert balance == {"project_id": t.id, "total_balance": "0.0000016"}
        # A job costs 0.0000018: refused whole.
        error_of(await t.client.post("/infra/jobs", json=PULL), 402, "insufficient_tokens")
        assert ok(await t.client.get("/infra/jobs"))["jobs"] == []  # a read: 0.0000008 left
        assert ok(await admin.get(path))["token_balance"] == "0.0000008"
        # A JSON number works too, and the balance is exact.
        for sent, shown, nanos in [
            (5, "5", 5 * 10**9),
            (0.25, "0.25", 250_000_000),
            ("123456789.123456789", "123456789.123456789", 123456789123456789),
            ("0", "0", 0),
            ("1e-9", "0.000000001", 1),
        ]:
            patched = ok(await admin.patch(path, json={"token_balance": sent}))
            assert patched["token_balance"] == shown, sent
            assert ok(await t.client.get("/core/tokens/balance"))["total_balance"] == shown
            assert stored(shared.db, "SELECT token_balance FROM projects WHERE id = ?", t.id) == [
                (nanos,)
            ]
        # The exact decimal of the request is kept (not a float's rounding).
        raw = b'{"token_balance": 123456789.123456789}'
        answer = await admin.patch(path, content=raw, headers={"content-type": "application/json"})
        assert ok(answer)["token_balance"] == "123456789.123456789"
        # null: unlimited again.
        assert ok(await admin.patch(path, json={"token_balance": None}))["token_balance"] is None
        assert ok(await t.client.get("/core/tokens/balance"))["total_balance"] is None
        await t.client.post("/infra/jobs", json=PULL)  # no balance: nothing refused
        # Both settings at once, and an empty patch changes nothing.
        both = ok(await admin.patch(path, json={"token_balance": 3, "rate_limit_rps": 100.5}))
        assert (both["token_balance"], both["rate_limit_rps"]) == ("3", 100.5)
        assert ok(await admin.patch(path, json={})) == both


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"token_balance": -1}, "$.token_balance"),
        ({"token_balance": "-0.5"}, "$.token_balance"),
        ({"token_balance": "abc"}, "$.token_balance"),
        ({"token_balance": "NaN"}, "$.token_balance"),
        ({"token_balance": "Infinity"}, "$.token_balance"),
        ({"token_balance": True}, "$.token_balance"),
        ({"token_balance": {"amount": 1}}, "$.token_balance"),
        ({"token_balance": [1]}, "$.token_balance"),
        ({"token_balance": "0.0000000001"}, "$.token_balance"),
        ({"token_balance": 2 * 10**9}, "$.token_balance"),
        ({"rate_limit_rps": 0}, "$.rate_limit_rps"),
        ({"rate_limit_rps": -2}, "$.rate_limit_rps"),
        ({"rate_limit_rps": "5"}, "$.rate_limit_rps"),
        ({"rate_limit_rps": True}, "$.rate_limit_rps"),
        ({"rate_limit_rps": 10**7}, "$.rate_limit_rps"),
        ({"rate_limit_rps": 5, "token_balance": "x"}, "$.token_balance"),
    ],
)
async def test_patch_refuses_bad_values_and_changes_nothing(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant, body: Any, field: str
) -> None:
    async with tenant() as t:
        path = f"/admin/projects/{t.id}"
        assert_invalid(await admin.patch(path, json=body), field)
        assert ok(await admin.get(path))["rate_limit_rps"] is None
        assert ok(await t.client.get("/core/tokens/balance"))["total_balance"] is None
        assert "x-ratelimit-limit" not in (await t.client.get("/infra/jobs")).headers
        assert stored(
            shared.db, "SELECT token_balance, rate_limit_rps FROM projects WHERE id = ?", t.id
        ) == [(None, None)]


async def test_patch_needs_a_json_object(admin: httpx.AsyncClient, tenant: MakeTenant) -> None:
    async with tenant() as t:
        path = f"/admin/projects/{t.id}"
        error_of(await admin.patch(path), 400, "bad_request")
        error_of(await admin.patch(path, content=b"[1]"), 400, "bad_request")
        error_of(await admin.patch(path, content=b"{"), 400, "bad_request")


async def test_balance_set_by_the_admin_api_survives_the_write_behind(
    shared: Service, admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as t:
        path = f"/admin/projects/{t.id}"
        ok(await admin.patch(path, json={"token_balance": "1"}))
        for _ in range(3):
            ok(await t.client.get("/infra/jobs"))  # 3 reads, written behind within a second
        assert ok(await admin.get(path))["token_balance"] == "0.9999976"
        accounts = shared.supervisor.accounts
        await accounts.write_behind()  # what the server does once a second
        await accounts.refresh()
        assert ok(await admin.get(path))["token_balance"] == "0.9999976"
        assert stored(shared.db, "SELECT token_balance FROM projects WHERE id = ?", t.id) == [
            (999_997_600,)
        ]
