"""``/admin/jobs``, ``/admin/executions`` and ``/admin/stats``: every project's work."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import msgspec

from flowyard.http.operations import OPERATIONS
from tests.admin_api.conftest import Tenant, ok, walk
from tests.jobs_support import LATER, PULL, claim, create, error_of
from tests.workflow_support import (
    ack,
    claim_one,
    create_blueprint,
    pull_step,
    trigger,
    wait_status,
)

MakeTenant = Callable[..., AbstractAsyncContextManager[Tenant]]
JOB_STATUSES = ["pending", "running", "completed", "failed", "cancelled", "scheduled"]
EXECUTION_STATUSES = ["running", "paused", "completed", "failed", "compensated", "cancelled"]


async def fill(t: Tenant) -> dict[str, Any]:
    """Jobs and executions in known states: what ``t`` holds, by kind."""
    client = t.client
    later = await create(client, LATER)
    cancelled = await create(client, LATER)
    ok(await client.delete(f"/infra/jobs/{cancelled['id']}"))
    await create(client, PULL)
    running = await claim(client)  # the pull job
    await create(client, {"trigger": {"type": "pull", "queue": "other"}})
    blueprint = await create_blueprint(client, [pull_step("a", f"wf-{t.id}")])
    done = await trigger(client, blueprint["id"])
    step = await claim_one(client, f"wf-{t.id}")
    await ack(client, step, {"ok": True})
    await wait_status(client, done["execution_id"], "completed")
    live = await trigger(client, blueprint["id"])
    paused = await trigger(client, blueprint["id"])
    ok(await client.post(f"/infra/workflows/executions/{paused['execution_id']}/pause"))
    return {
        "later": later,
        "running": running,
        "blueprint": blueprint,
        "executions": [done["execution_id"], live["execution_id"], paused["execution_id"]],
    }


async def test_admin_jobs_lists_every_project_with_filters(
    admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as a, tenant() as b:
        await fill(a)
        await fill(b)
        own = ok(await a.client.get("/infra/jobs?limit=100"))["jobs"]
        listed = ok(await admin.get(f"/admin/jobs?project_id={a.id}&limit=100"))
        assert listed["next_cursor"] is None
        # The same items as the project's own list, newest first, with the project named.
        assert listed["jobs"] == [{**job, "project_id": a.id} for job in own]
        both = await walk(admin, "/admin/jobs", "jobs", 3)
        mine = [job for job in both if job["project_id"] in (a.id, b.id)]
        assert {job["project_id"] for job in mine} == {a.id, b.id}
        assert len(mine) == 2 * len(own)
        seen = [job["id"] for job in both]
        assert len(seen) == len(set(seen))
        for query, expected in [
            ("status=running", {"running"}),
            ("status=cancelled", {"cancelled"}),
            ("status=completed", {"completed"}),
        ]:
            jobs = ok(await admin.get(f"/admin/jobs?project_id={a.id}&{query}"))["jobs"]
            assert jobs and {job["status"] for job in jobs} == expected, query
        pulls = ok(await admin.get(f"/admin/jobs?project_id={b.id}&trigger_type=pull"))["jobs"]
        assert len(pulls) == 2 + 3  # two pull jobs and three workflow steps
        other = ok(await admin.get(f"/admin/jobs?project_id={b.id}&queue=other"))["jobs"]
        assert [job["trigger"]["queue"] for job in other] == ["other"]
        delayed = ok(await admin.get("/admin/jobs?trigger_type=delayed&limit=100"))["jobs"]
        assert {a.id, b.id} <= {job["project_id"] for job in delayed}
        for query in ["status=done", "trigger_type=soon", "limit=0", "cursor=zz", "queue="]:
            error_of(await admin.get(f"/admin/jobs?{query}"), 400, "bad_request")
        unknown = ok(await admin.get("/admin/jobs?project_id=proj_nobody"))
        assert unknown == {"jobs": [], "next_cursor": None}


async def test_admin_executions_lists_every_project_with_filters(
    admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    async with tenant() as a, tenant() as b:
        filled = await fill(a)
        await fill(b)
        own = ok(await a.client.get("/infra/workflows/executions?limit=100"))["executions"]
        listed = ok(await admin.get(f"/admin/executions?project_id={a.id}"))
        assert listed == {"executions": own, "next_cursor": None}
        assert [e["id"] for e in own] == list(reversed(filled["executions"]))
        paged = await walk(admin, f"/admin/executions?project_id={a.id}", "executions", 2)
        assert paged == own
        by_status = ok(await admin.get(f"/admin/executions?project_id={a.id}&status=paused"))
        assert [e["id"] for e in by_status["executions"]] == [filled["executions"][2]]
        path = f"/admin/executions?blueprint_id={filled['blueprint']['id']}"
        assert ok(await admin.get(path))["executions"] == own
        everyone = await walk(admin, "/admin/executions", "executions", 100)
        assert {e["project_id"] for e in everyone} >= {a.id, b.id}
        for query in ["status=done", "limit=101", "cursor=!!", "blueprint_id="]:
            error_of(await admin.get(f"/admin/executions?{query}"), 400, "bad_request")


async def test_admin_stats_counts_by_status(admin: httpx.AsyncClient, tenant: MakeTenant) -> None:
    async with tenant() as a, tenant() as empty:
        await fill(a)
        stats = ok(await admin.get(f"/admin/stats?project_id={a.id}"))
        assert stats == {
            "projects": [
                {
                    "project_id": a.id,
                    "executions": {
                        **dict.fromkeys(EXECUTION_STATUSES, 0),
                        "completed": 1,
                        "running": 1,
                        "paused": 1,
                    },
                    "jobs": {
                        **dict.fromkeys(JOB_STATUSES, 0),
                        # later; other queue, and the running and paused executions' steps
                        "pending": 4,
                        "running": 1,
                        "completed": 1,
                        "cancelled": 1,
                    },
                }
            ]
        }
        everyone = ok(await admin.get("/admin/stats"))["projects"]
        by_id = {item["project_id"]: item for item in everyone}
        assert by_id[a.id] == stats["projects"][0]
        assert by_id[empty.id] == {
            "project_id": empty.id,
            "executions": dict.fromkeys(EXECUTION_STATUSES, 0),
            "jobs": dict.fromkeys(JOB_STATUSES, 0),
        }
        ids = [item["project_id"] for item in everyone]
        assert ids.index(empty.id) < ids.index(a.id)  # newest project first
        assert ok(await admin.get("/admin/stats?project_id=proj_nobody")) == {"projects": []}
        error_of(await admin.get(f"/admin/stats?project_id={'p' * 300}"), 400, "bad_request")


async def test_answers_decode_into_the_documented_types(
    admin: httpx.AsyncClient, tenant: MakeTenant
) -> None:
    documented = {(op.method, op.path): op.response for op in OPERATIONS}

    async def call(method: str, path: str, body: Any = None, **params: str) -> Any:
        response = await admin.request(method, path.format(**params), json=body)
        assert response.status_code == 200, response.text
        return msgspec.json.decode(response.content, type=documented[method, path], strict=True)

    async with tenant() as t:
        await fill(t)
        project = await call("POST", "/admin/projects", {"name": f"typed-{t.id}"})
        await call("GET", "/admin/projects")
        await call("GET", "/admin/projects/{id}", id=project.id)
        body = {"rate_limit_rps": 3.5, "token_balance": "2"}
        await call("PATCH", "/admin/projects/{id}", body, id=project.id)
        key = await call("POST", "/admin/keys", {"project_id": project.id})
        await call("GET", "/admin/keys")
        await call("DELETE", "/admin/keys/{id}", id=key.id)
        await call("GET", "/admin/jobs")
        await call("GET", "/admin/executions")
        await call("GET", "/admin/stats")
