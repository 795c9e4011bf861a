"""The whole HTTP surface as one table: each route, the scope it needs and a valid request.

``tests/test_api_auth_matrix.py`` and ``tests/test_api_errors.py`` parametrize over it, and a
test fails when the app has a route the table does not list. Entries for routes that do not
exist (yet) are left out of the parametrization by :func:`present`.
"""

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import msgspec
from starlette.routing import Route

from flowyard.http.app import create_app
from flowyard.ids import new_id
from flowyard.settings import Settings
from flowyard.storage.intents import RevokeKey
from flowyard.storage.projects import ALL_SCOPES, CreatedKey, create_key_sync
from flowyard.storage.webhooks import insert_delivery
from flowyard.webhooks.model import Delivery, DeliveryStatus
from tests.conftest import Service
from tests.jobs_support import LATER, PULL, claim, create
from tests.store_support import write

Json = dict[str, Any]

ADMIN = "admin"
"""The pseudo-scope of ``/admin`` routes: only admin keys may call them."""

# Routes the table does not cover: no API key by design (/metrics: tests/test_metrics.py).
UNAUTHENTICATED = frozenset(
    {"/livez", "/readyz", "/healthz", "/metrics", "/infra/jobs/{job_id}/runs/{run_id}/callback"}
)
UNAUTHENTICATED_PREFIXES = ("/docs", "/openapi", "/redoc", "/dashboard", "/static")

BLUEPRINT: Json = {
    "name": "surface",
    "steps": [{"id": "a", "job_trigger": {"trigger": {"type": "pull", "queue": "wf"}}}],
}

_names = itertools.count(1)


@dataclass
class Owner:
    """A fresh project on the shared server, with an all-scopes key and its client."""

    service: Service
    project: str
    project_id: str
    key: str
    client: httpx.AsyncClient

    async def key_for(self, scopes: list[str] | None = None, *, admin: bool = False) -> CreatedKey:
        """Another key of this project."""
        return await make_key(self.service, self.project, scopes, admin=admin)


async def make_key(
    service: Service, project: str, scopes: list[str] | None = None, *, admin: bool = False
) -> CreatedKey:
    """A key written straight into the SQLite file, off the event loop (see ``new_key``)."""
    chosen = list(ALL_SCOPES) if scopes is None else scopes
    return await anyio.to_thread.run_sync(
        lambda: create_key_sync(service.db, project, chosen, admin=admin)
    )


async def revoked_key(service: Service, project: str, scopes: list[str] | None = None) -> str:
    """A key that was revoked before it was ever used."""
    created = await make_key(service, project, scopes)

    await anyio.to_thread.run_sync(write, service.db, RevokeKey(created.record.id, 1))
    return created.key


@asynccontextmanager
async def new_owner(service: Service, label: str = "owner") -> AsyncIterator[Owner]:
    """A brand-new project (nothing in it) and a client with every scope."""
    project = f"{label}-{next(_names)}"
    created = await make_key(service, project)
    async with service.client_for(created.key) as client:
        yield Owner(service, project, created.record.project_id, created.key, client)


def client_with(service: Service, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30)


# ------------------------------------------------------------------ valid requests per route


@dataclass(frozen=True)
class Prepared:
    """Path parameters and body for one valid call (``body`` None: send none)."""

    params: dict[str, str] = field(default_factory=dict)
    body: Any = None


Prepare = Callable[[Owner], Awaitable[Prepared]]


async def _ok(response: httpx.Response) -> Json:
    assert response.status_code < 300, response.text
    body: Json = response.json()
    return body


async def nothing(owner: Owner) -> Prepared:
    return Prepared()


def body_of(body: Any) -> Prepare:
    async def prepare(owner: Owner) -> Prepared:
        return Prepared(body=body)

    return prepare


async def later_job(owner: Owner) -> Prepared:
    return Prepared({"job_id": (await create(owner.client, LATER))["id"]})


async def pull_job(owner: Owner) -> Prepared:
    return Prepared({"job_id": (await create(owner.client, PULL))["id"]})


async def patch_job(owner: Owner) -> Prepared:
    return Prepared((await later_job(owner)).params, {"enabled": False})


async def failed_job(owner: Owner) -> Prepared:
    await create(owner.client, {**PULL, "max_attempts": 1})
    job = await claim(owner.client)
    body = {"status": "failed", "error": "boom", "claim_token": job["claim_token"]}
    await _ok(await owner.client.post(f"/infra/jobs/{job['id']}/ack", json=body))
    return Prepared({"job_id": job["id"]})


async def ack_body(owner: Owner) -> Prepared:
    await create(owner.client, PULL)
    job = await claim(owner.client)
    return Prepared(
        {"job_id": job["id"]}, {"status": "completed", "claim_token": job["claim_token"]}
    )


async def heartbeat_body(owner: Owner) -> Prepared:
    await create(owner.client, PULL)
    job = await claim(owner.client)
    return Prepared({"job_id": job["id"]}, {"claim_token": job["claim_token"]})


async def queue_body(owner: Owner) -> Prepared:
    await create(owner.client, PULL)
    return Prepared({"name": "q"}, {"concurrency": 3})


def empty_body(prepare: Prepare) -> Prepare:
    """``prepare`` with an empty object as the body: a route that takes no fields."""

    async def prepare_empty(owner: Owner) -> Prepared:
        return Prepared((await prepare(owner)).params, {})

    return prepare_empty


async def blueprint(owner: Owner) -> Prepared:
    created = await _ok(await owner.client.post("/infra/workflows/blueprints", json=BLUEPRINT))
    return Prepared({"id": created["id"]})


async def trigger_body(owner: Owner) -> Prepared:
    return Prepared((await blueprint(owner)).params, {"input_data": {}})


async def execution(owner: Owner) -> Prepared:
    bp_id = (await blueprint(owner)).params["id"]
    path = f"/infra/workflows/blueprints/{bp_id}/trigger"
    triggered = await _ok(await owner.client.post(path, json={"input_data": {}}))
    return Prepared({"id": triggered["execution_id"]})


async def execution_step(owner: Owner) -> Prepared:
    return Prepared({**(await execution(owner)).params, "step_id": "a"})


async def paused_execution(owner: Owner) -> Prepared:
    prepared = await execution(owner)
    path = f"/infra/workflows/executions/{prepared.params['id']}/pause"
    await _ok(await owner.client.post(path))
    return Prepared(prepared.params, {})


async def signal_body(owner: Owner) -> Prepared:
    prepared = await execution(owner)
    return Prepared(prepared.params, {"name": "go", "data": {"n": 1}})


async def own_project(owner: Owner) -> Prepared:
    return Prepared({"id": owner.project_id})


async def patch_project(owner: Owner) -> Prepared:
    return Prepared({"id": owner.project_id}, {"rate_limit_rps": None})


async def new_project(owner: Owner) -> Prepared:
    return Prepared(body={"name": f"admin-made-{next(_names)}"})


async def new_admin_key(owner: Owner) -> Prepared:
    body = {"project_id": owner.project_id, "name": "made", "scopes": ["jobs:read"]}
    return Prepared(body=body)


async def spare_key(owner: Owner) -> Prepared:
    return Prepared({"id": (await owner.key_for(["jobs:read"])).record.id})


async def schedule_body(owner: Owner) -> Prepared:
    """A schedule of a new blueprint that fires once a year (never while a test runs)."""
    bp_id = (await blueprint(owner)).params["id"]
    return Prepared(body={"blueprint_id": bp_id, "schedule": "0 0 1 1 *"})


async def schedule(owner: Owner) -> Prepared:
    body = (await schedule_body(owner)).body
    created = await _ok(await owner.client.post("/infra/workflows/schedules", json=body))
    return Prepared({"id": created["id"]})


async def patch_schedule(owner: Owner) -> Prepared:
    return Prepared((await schedule(owner)).params, {"enabled": False})


WEBHOOK: Json = {"name": "surface", "url": "http://127.0.0.1:9/hook", "topics": ["jobs.*"]}


async def webhook(owner: Owner) -> Prepared:
    created = await _ok(await owner.client.post("/infra/webhooks", json=WEBHOOK))
    return Prepared({"webhook_id": created["id"]})


async def patch_webhook(owner: Owner) -> Prepared:
    return Prepared((await webhook(owner)).params, {"enabled": False})


async def failed_delivery(owner: Owner) -> Prepared:
    """A webhook with a delivery that used up its attempts (written straight to the file)."""
    params = (await webhook(owner)).params
    delivery = Delivery(
        id=new_id("whd"),
        webhook_id=params["webhook_id"],
        project_id=owner.project_id,
        event_id=new_id("evt"),
        topic="custom.thing",
        payload=msgspec.Raw(b"{}"),
        status=DeliveryStatus.FAILED,
        attempts=8,
        created_at=1,
        updated_at=1,
    )

    await anyio.to_thread.run_sync(write, owner.service.db, insert_delivery(delivery))
    return Prepared({**params, "delivery_id": delivery.id}, {})


async def delivery_of(owner: Owner) -> Prepared:
    return Prepared((await failed_delivery(owner)).params)


# ------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Call:
    """One route: what it needs and how to call it successfully.

    ``names_object`` is true when a path parameter names an object of the caller's project
    (another project's key gets 404); ``body_names_object`` when the body does (another
    project's key gets 400 naming the field); ``lists`` when the answer is the caller's own
    list.
    """

    method: str
    path: str
    scope: str | None
    prepare: Prepare = nothing
    success: int = 200
    names_object: bool = False
    body_names_object: bool = False
    lists: str | None = None
    takes_body: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, prepared: Prepared, **override: str) -> str:
        return self.path.format(**{**prepared.params, **override})


def _body(method: str, path: str, scope: str | None, prepare: Prepare, **kw: Any) -> Call:
    return Call(method, path, scope, prepare, takes_body=True, **kw)


CALLS: list[Call] = [
    # jobs
    _body("POST", "/infra/jobs", "jobs:write", body_of(PULL), success=202),
    Call("GET", "/infra/jobs", "jobs:read", lists="jobs"),
    _body("POST", "/infra/jobs/batch", "jobs:write", body_of({"jobs": [PULL]}), success=202),
    Call("GET", "/infra/jobs/signing-secret", "jobs:write"),
    _body("POST", "/infra/jobs/signing-secret/rotate", "jobs:write", body_of({})),
    _body("POST", "/infra/jobs/claim", "jobs:write", body_of({"queue": "q"})),
    _body("POST", "/infra/jobs/exchange", "jobs:write", body_of({"claim": {"queue": "q"}})),
    Call("GET", "/infra/jobs/{job_id}", "jobs:read", later_job, names_object=True),
    _body("PATCH", "/infra/jobs/{job_id}", "jobs:write", patch_job, names_object=True),
    Call("DELETE", "/infra/jobs/{job_id}", "jobs:write", later_job, names_object=True),
    _body(
        "POST",
        "/infra/jobs/{job_id}/trigger",
        "jobs:write",
        empty_body(pull_job),
        success=202,
        names_object=True,
    ),
    _body(
        "POST",
        "/infra/jobs/{job_id}/retry",
        "jobs:write",
        empty_body(failed_job),
        names_object=True,
    ),
    Call(
        "GET", "/infra/jobs/{job_id}/runs", "jobs:read", later_job, names_object=True, lists="runs"
    ),
    _body("POST", "/infra/jobs/{job_id}/ack", "jobs:write", ack_body, names_object=True),
    _body(
        "POST", "/infra/jobs/{job_id}/heartbeat", "jobs:write", heartbeat_body, names_object=True
    ),
    # queues
    Call("GET", "/infra/queues", "jobs:read", lists="queues"),
    _body("PUT", "/infra/queues/{name}", "jobs:write", queue_body),
    # workflows
    _body("POST", "/infra/workflows/blueprints", "workflows:write", body_of(BLUEPRINT)),
    Call("GET", "/infra/workflows/blueprints", "workflows:read", lists="blueprints"),
    Call("GET", "/infra/workflows/blueprints/{id}", "workflows:read", blueprint, names_object=True),
    Call(
        "DELETE",
        "/infra/workflows/blueprints/{id}",
        "workflows:write",
        blueprint,
        names_object=True,
    ),
    _body(
        "POST",
        "/infra/workflows/blueprints/{id}/trigger",
        "workflows:write",
        trigger_body,
        names_object=True,
    ),
    Call("GET", "/infra/workflows/executions", "workflows:read", lists="executions"),
    Call("GET", "/infra/workflows/executions/{id}", "workflows:read", execution, names_object=True),
    Call(
        "GET",
        "/infra/workflows/executions/{id}/events",
        "workflows:read",
        execution,
        names_object=True,
        lists="events",
    ),
    Call(
        "GET",
        "/infra/workflows/executions/{id}/steps/{step_id}/items",
        "workflows:read",
        execution_step,
        names_object=True,
        lists="items",
    ),
    _body(
        "POST",
        "/infra/workflows/executions/{id}/cancel",
        "workflows:write",
        empty_body(execution),
        names_object=True,
    ),
    _body(
        "POST",
        "/infra/workflows/executions/{id}/pause",
        "workflows:write",
        empty_body(execution),
        names_object=True,
    ),
    _body(
        "POST",
        "/infra/workflows/executions/{id}/resume",
        "workflows:write",
        paused_execution,
        names_object=True,
    ),
    _body(
        "POST",
        "/infra/workflows/executions/{id}/signals",
        "workflows:write",
        signal_body,
        names_object=True,
    ),
    # workflow schedules
    _body(
        "POST",
        "/infra/workflows/schedules",
        "workflows:write",
        schedule_body,
        body_names_object=True,
    ),
    Call("GET", "/infra/workflows/schedules", "workflows:read", lists="schedules"),
    Call("GET", "/infra/workflows/schedules/{id}", "workflows:read", schedule, names_object=True),
    _body(
        "PATCH",
        "/infra/workflows/schedules/{id}",
        "workflows:write",
        patch_schedule,
        names_object=True,
    ),
    Call(
        "DELETE", "/infra/workflows/schedules/{id}", "workflows:write", schedule, names_object=True
    ),
    _body(
        "POST",
        "/infra/workflows/schedules/{id}/trigger",
        "workflows:write",
        empty_body(schedule),
        names_object=True,
    ),
    # webhooks
    _body("POST", "/infra/webhooks", "webhooks:write", body_of(WEBHOOK), success=201),
    Call("GET", "/infra/webhooks", "webhooks:read", lists="webhooks"),
    _body(
        "POST",
        "/infra/webhooks/publish",
        "webhooks:write",
        body_of({"topic": "orders.placed", "data": {"n": 1}}),
        success=202,
    ),
    Call("GET", "/infra/webhooks/{webhook_id}", "webhooks:read", webhook, names_object=True),
    _body(
        "PATCH", "/infra/webhooks/{webhook_id}", "webhooks:write", patch_webhook, names_object=True
    ),
    Call("DELETE", "/infra/webhooks/{webhook_id}", "webhooks:write", webhook, names_object=True),
    _body(
        "POST",
        "/infra/webhooks/{webhook_id}/test",
        "webhooks:write",
        empty_body(webhook),
        names_object=True,
    ),
    Call(
        "GET",
        "/infra/webhooks/{webhook_id}/deliveries",
        "webhooks:read",
        webhook,
        names_object=True,
        lists="deliveries",
    ),
    Call(
        "GET",
        "/infra/webhooks/{webhook_id}/deliveries/{delivery_id}",
        "webhooks:read",
        delivery_of,
        names_object=True,
    ),
    _body(
        "POST",
        "/infra/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
        "webhooks:write",
        failed_delivery,
        names_object=True,
    ),
    # tokens: any valid key
    Call("GET", "/core/tokens/balance", None),
    Call("GET", "/core/tokens/usage", None),
    Call("GET", "/core/whoami", None),
    # admin: admin keys only, across projects
    _body("POST", "/admin/projects", ADMIN, new_project),
    Call("GET", "/admin/projects", ADMIN),
    Call("GET", "/admin/projects/{id}", ADMIN, own_project),
    _body("PATCH", "/admin/projects/{id}", ADMIN, patch_project),
    Call("GET", "/admin/keys", ADMIN),
    _body("POST", "/admin/keys", ADMIN, new_admin_key),
    Call("DELETE", "/admin/keys/{id}", ADMIN, spare_key),
    Call("GET", "/admin/executions", ADMIN),
    Call("GET", "/admin/jobs", ADMIN),
    Call("GET", "/admin/stats", ADMIN),
    Call("GET", "/admin/cluster", ADMIN),
]


# Kept for the whole run: its supervisor holds streams that warn when collected unclosed.
_APP = create_app(Settings(db=":memory:"))


def app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app serves with an API key, HEAD aside."""
    found: set[tuple[str, str]] = set()
    for route in _APP.routes:
        path = getattr(route, "path", "")
        if path in UNAUTHENTICATED or path.startswith(UNAUTHENTICATED_PREFIXES):
            continue
        if not isinstance(route, Route):  # a mount or anything else: its routes are unknown
            found.add((type(route).__name__, path))
            continue
        found |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
    return found


_SERVED = app_routes()


def present(calls: list[Call]) -> list[Call]:
    """The calls whose route the app has today."""
    return [call for call in calls if (call.method, call.path) in _SERVED]


def present_paths(method: str) -> set[str]:
    """Every path the app serves with ``method``."""
    return {path for served, path in _SERVED if served == method}


def path_methods() -> dict[str, set[str]]:
    """Each served path and every method it accepts (HEAD aside)."""
    methods: dict[str, set[str]] = {}
    for method, path in _SERVED:
        methods.setdefault(path, set()).add(method)
    return methods


def served_methods(url_path: str) -> set[str]:
    """Every method some route accepts for this concrete path (HEAD aside)."""
    methods: set[str] = set()
    for route in _APP.routes:
        if isinstance(route, Route) and route.path_regex.match(url_path):
            methods |= set(route.methods or ()) - {"HEAD"}
    return methods


PRESENT = present(CALLS)
IDS = [call.id for call in PRESENT]
NON_ADMIN = [call for call in PRESENT if call.scope != ADMIN]
WITH_BODY = [call for call in PRESENT if call.takes_body]


async def snapshot(owner: Owner) -> Json:
    """What the owner's project holds, as its own lists show it (to prove nothing changed)."""
    client = owner.client
    found: Json = {}
    for name, path in [
        ("jobs", "/infra/jobs?limit=100"),
        ("queues", "/infra/queues?limit=100"),
        ("blueprints", "/infra/workflows/blueprints?limit=100"),
        ("executions", "/infra/workflows/executions?limit=100"),
        ("signing_secret", "/infra/jobs/signing-secret"),
    ]:
        found[name] = await _ok(await client.get(path))
    for queue in found["queues"]["queues"]:
        queue.pop("oldest_pending_age_seconds")  # grows with time
    for item in found["executions"]["executions"]:
        path = f"/infra/workflows/executions/{item['id']}/events?limit=100"
        found[f"events {item['id']}"] = await _ok(await client.get(path))
    for item in found["jobs"]["jobs"]:
        found[f"runs {item['id']}"] = await _ok(await client.get(f"/infra/jobs/{item['id']}/runs"))
    return found


def assert_error(response: httpx.Response, status: int, code: str) -> Json:
    """An error answer in the contract's shape: ``{code, message, details?}`` JSON."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: Json = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert set(body) <= {"code", "message", "details"}, body
    if "details" in body:
        assert isinstance(body["details"], list), body
        for item in body["details"]:
            assert isinstance(item["path"], str) and isinstance(item["message"], str), body
    assert "Traceback" not in response.text
    return body


async def send(
    client: httpx.AsyncClient, call: Call, prepared: Prepared, **override: str
) -> httpx.Response:
    """Make the call (with ``prepared``'s body, if any) on ``client``."""
    url = call.url(prepared, **override)
    if prepared.body is None:
        return await client.request(call.method, url)
    return await client.request(call.method, url, json=prepared.body)
