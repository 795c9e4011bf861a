"""Every list pages the same way (DESIGN §2): ``?limit`` 1..100, opaque cursors, newest first.

Paging with a small limit while other tasks keep adding (and changing) items never skips or
repeats an item that existed when paging began; a bad ``limit`` or cursor is a 400.
"""

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.api_surface import BLUEPRINT, Owner, assert_error, make_key, new_owner, present_paths
from tests.conftest import Service, running_service
from tests.jobs_support import LATER, PULL, claim, create

Json = dict[str, Any]
Add = Callable[[], Awaitable[None]]

_names = itertools.count(1)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    path: Path = tmp_path_factory.mktemp("pagination")
    async with running_service(path) as service:
        yield service


async def ok(response: httpx.Response) -> Json:
    assert response.status_code < 300, response.text
    body: Json = response.json()
    return body


# ------------------------------------------------------------------------------- the lists


@dataclass
class Opened:
    """A list ready to page: its URL (with filters), who may read it, and how to grow it."""

    url: str
    client: httpx.AsyncClient
    add: Add
    max_adds: int = 1000


@dataclass(frozen=True)
class Listing:
    """One list of the API: its route, its field, its order and how to fill it."""

    route: str
    field: str
    order: str  # "newest" (by insertion, newest first), "oldest" or "name"
    open: Callable[[Owner, "Clients"], Awaitable[Opened]]
    key: str = "id"

    def __str__(self) -> str:
        return self.route


@dataclass
class Clients:
    """An admin client, for the /admin lists."""

    admin: httpx.AsyncClient


async def blueprint_id(owner: Owner) -> str:
    return str(
        (await ok(await owner.client.post("/infra/workflows/blueprints", json=BLUEPRINT)))["id"]
    )


async def open_jobs(owner: Owner, clients: Clients) -> Opened:
    made: list[str] = []

    async def add() -> None:
        made.append((await create(owner.client, LATER))["id"])
        if len(made) % 3 == 0:  # existing items change too: a cancel rewrites the job's row
            await ok(await owner.client.delete(f"/infra/jobs/{made[len(made) // 2]}"))

    return Opened("/infra/jobs", owner.client, add)


async def open_runs(owner: Owner, clients: Clients) -> Opened:
    queue = f"runs-{next(_names)}"
    body = {"trigger": {"type": "pull", "queue": queue}, "max_attempts": 20, "backoff": "fixed"}
    job_id = (await create(owner.client, body))["id"]

    async def add() -> None:  # one failed attempt: one more run
        response = await owner.client.post(
            "/infra/jobs/claim", json={"queue": queue, "wait_seconds": 5}
        )
        [job] = await ok(response)  # type: ignore[misc]
        ack = {"status": "failed", "error": "again", "claim_token": job["claim_token"]}
        await ok(await owner.client.post(f"/infra/jobs/{job_id}/ack", json=ack))

    return Opened(f"/infra/jobs/{job_id}/runs", owner.client, add, max_adds=19)


async def open_queues(owner: Owner, clients: Clients) -> Opened:
    async def add() -> None:
        # Names that sort before, between and after the others.
        name = f"{'azm'[next(_names) % 3]}-{next(_names):05d}"
        await ok(await owner.client.put(f"/infra/queues/{name}", json={"concurrency": 2}))

    return Opened("/infra/queues", owner.client, add)


async def open_blueprints(owner: Owner, clients: Clients) -> Opened:
    async def add() -> None:
        await blueprint_id(owner)

    return Opened("/infra/workflows/blueprints", owner.client, add)


async def open_executions(owner: Owner, clients: Clients) -> Opened:
    bp_id = await blueprint_id(owner)
    path = f"/infra/workflows/blueprints/{bp_id}/trigger"
    made: list[str] = []

    async def add() -> None:
        made.append((await ok(await owner.client.post(path, json={})))["execution_id"])
        if len(made) % 3 == 0:  # existing executions change too
            await ok(await owner.client.post(f"/infra/workflows/executions/{made[0]}/pause"))
            await ok(await owner.client.post(f"/infra/workflows/executions/{made[0]}/resume"))

    return Opened("/infra/workflows/executions", owner.client, add)


async def open_events(owner: Owner, clients: Clients) -> Opened:
    queue = f"events-{next(_names)}"
    steps = [
        {"id": f"s{i}", "job_trigger": {"trigger": {"type": "pull", "queue": queue}}}
        for i in range(30)
    ]
    body = {"name": "many", "steps": steps}
    bp = await ok(await owner.client.post("/infra/workflows/blueprints", json=body))
    path = f"/infra/workflows/blueprints/{bp['id']}/trigger"
    execution_id = (await ok(await owner.client.post(path, json={})))["execution_id"]

    async def add() -> None:  # a step starts and completes: two more events
        job = await claim(owner.client, queue)
        ack = {"status": "completed", "result": {}, "claim_token": job["claim_token"]}
        await ok(await owner.client.post(f"/infra/jobs/{job['id']}/ack", json=ack))

    return Opened(f"/infra/workflows/executions/{execution_id}/events", owner.client, add, 29)


async def open_admin_jobs(owner: Owner, clients: Clients) -> Opened:
    async def add() -> None:
        await create(owner.client, PULL)

    return Opened(f"/admin/jobs?project_id={owner.project_id}", clients.admin, add)


async def open_admin_executions(owner: Owner, clients: Clients) -> Opened:
    bp_id = await blueprint_id(owner)

    async def add() -> None:
        await ok(await owner.client.post(f"/infra/workflows/blueprints/{bp_id}/trigger", json={}))

    return Opened(f"/admin/executions?project_id={owner.project_id}", clients.admin, add)


async def open_admin_projects(owner: Owner, clients: Clients) -> Opened:
    made: list[str] = []

    async def add() -> None:
        body = {"name": f"listed-{next(_names)}"}  # owners are "paged-N" (api_surface)
        made.append((await ok(await clients.admin.post("/admin/projects", json=body)))["id"])
        if len(made) % 3 == 0:  # existing projects change too
            patch = {"rate_limit_rps": None, "token_balance": None}
            await ok(await clients.admin.patch(f"/admin/projects/{made[0]}", json=patch))

    return Opened("/admin/projects", clients.admin, add)


async def open_admin_keys(owner: Owner, clients: Clients) -> Opened:
    made: list[str] = []

    async def add() -> None:
        body = {"project_id": owner.project_id, "name": "k", "scopes": ["jobs:read"]}
        made.append((await ok(await clients.admin.post("/admin/keys", json=body)))["id"])
        if len(made) % 3 == 0:  # existing keys change too: a revocation
            await ok(await clients.admin.delete(f"/admin/keys/{made[len(made) // 2]}"))

    return Opened(f"/admin/keys?project_id={owner.project_id}", clients.admin, add)


ALL_LISTINGS = [
    Listing("/infra/jobs", "jobs", "newest", open_jobs),
    Listing("/infra/jobs/{job_id}/runs", "runs", "newest", open_runs),
    Listing("/infra/queues", "queues", "name", open_queues, key="name"),
    Listing("/infra/workflows/blueprints", "blueprints", "newest", open_blueprints),
    Listing("/infra/workflows/executions", "executions", "newest", open_executions),
    Listing("/infra/workflows/executions/{id}/events", "events", "oldest", open_events, "seq"),
    Listing("/admin/jobs", "jobs", "newest", open_admin_jobs),
    Listing("/admin/executions", "executions", "newest", open_admin_executions),
    Listing("/admin/projects", "projects", "newest", open_admin_projects),
    Listing("/admin/keys", "keys", "newest", open_admin_keys),
]
LISTINGS = [listing for listing in ALL_LISTINGS if listing.route in present_paths("GET")]
IDS = [listing.route for listing in LISTINGS]


@asynccontextmanager
async def opened(shared: Service, listing: Listing) -> AsyncIterator[Opened]:
    created = await make_key(shared, f"pagination-admin-{next(_names)}", [], admin=True)
    async with new_owner(shared, "paged") as owner, shared.client_for(created.key) as admin:
        yield await listing.open(owner, Clients(admin))


def with_query(url: str, **params: str | int) -> str:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def read_page(client: httpx.AsyncClient, url: str, **params: str | int) -> Json:
    return await ok(await client.get(with_query(url, **params)))


async def read_all(opened: Opened, field: str, limit: int = 100) -> list[Json]:
    """Every item, following cursors (nothing is added meanwhile)."""
    items: list[Json] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        body = await read_page(opened.client, opened.url, **params)
        items += body[field]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def assert_ordered(listing: Listing, items: list[Json]) -> None:
    keys = [item[listing.key] for item in items]
    if listing.order in ("name", "oldest"):  # ascending
        assert keys == sorted(keys), keys
    else:
        stamp = next(f for f in ("created_at", "started_at", "scheduled_at") if f in items[0])
        stamps = [item[stamp] for item in items]
        assert stamps == sorted(stamps, reverse=True), stamps


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("listing", LISTINGS, ids=IDS)
async def test_paging_while_items_are_added_never_skips_or_repeats(
    shared: Service, listing: Listing
) -> None:
    async with opened(shared, listing) as lst:
        for _ in range(7):
            await lst.add()
        existing = await read_all(lst, listing.field)
        assert len(existing) >= 7
        assert_ordered(listing, existing)
        existing_keys = [item[listing.key] for item in existing]

        adds = 0
        added = anyio.Event()
        first_page = anyio.Event()  # adds begin once the first page is read: for a newest-first
        paged: list[Json] = []  # list, what comes before it is on that page by right

        async def keep_adding() -> None:
            nonlocal adds, added
            await first_page.wait()
            while adds < lst.max_adds - 7:
                await lst.add()
                adds += 1
                added.set()
                added = anyio.Event()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_adding)
                cursor: str | None = None
                while True:
                    seen = adds
                    params: dict[str, str | int] = {"limit": 2}
                    if cursor:
                        params["cursor"] = cursor
                    body = await read_page(lst.client, lst.url, **params)
                    assert set(body) == {listing.field, "next_cursor"}, body
                    assert len(body[listing.field]) <= 2
                    paged += body[listing.field]
                    first_page.set()
                    cursor = body["next_cursor"]
                    if cursor is None:
                        break
                    assert len(body[listing.field]) == 2, body
                    if adds == seen and adds < lst.max_adds - 7:
                        await added.wait()  # at least one insertion between two pages
                tg.cancel_scope.cancel()
        assert adds > 0

        keys = [item[listing.key] for item in paged]
        assert len(keys) == len(set(keys)), f"repeated: {keys}"
        assert [k for k in keys if k in set(existing_keys)] == existing_keys, "skipped or moved"
        if listing.order == "newest":  # what came later is before the first page: never shown
            assert keys == existing_keys
        if listing.order == "oldest":  # what came later is after the last page
            assert keys[: len(existing_keys)] == existing_keys
        assert_ordered(listing, paged)


@pytest.mark.parametrize("listing", LISTINGS, ids=IDS)
async def test_limits_and_the_last_page(shared: Service, listing: Listing) -> None:
    async with opened(shared, listing) as lst:
        for _ in range(4):
            await lst.add()
        everything = await read_all(lst, listing.field)
        count = len(everything)
        first = await read_page(lst.client, lst.url, limit=1)
        assert len(first[listing.field]) == 1 and first["next_cursor"]
        whole = await read_page(lst.client, lst.url, limit=count)
        assert whole[listing.field] == everything
        assert whole["next_cursor"] is None  # exactly ``limit`` items left: no empty last page
        default = await read_page(lst.client, lst.url, limit=100)
        assert default["next_cursor"] is None
        for limit in ("0", "101", "-1", "1000", "abc", "1.5", "", "2e1", " 5", "%00"):
            response = await lst.client.get(with_query(lst.url, limit=limit))
            body = assert_error(response, 400, "bad_request")
            assert body["details"][0]["path"] == "$.limit", body


async def test_a_list_pages_25_by_default(shared: Service) -> None:
    async with new_owner(shared) as owner:
        for _ in range(26):
            await create(owner.client, PULL)
        body = await ok(await owner.client.get("/infra/jobs"))
        assert len(body["jobs"]) == 25 and body["next_cursor"]
        rest = await ok(await owner.client.get(f"/infra/jobs?cursor={body['next_cursor']}"))
        assert len(rest["jobs"]) == 1 and rest["next_cursor"] is None


@pytest.mark.parametrize("listing", LISTINGS, ids=IDS)
async def test_an_empty_list_has_no_next_cursor(shared: Service, listing: Listing) -> None:
    async with opened(shared, listing) as lst:
        if "{" in listing.route or listing.route.startswith("/admin/projects"):
            return  # never empty: the parent exists / the owner's project is listed
        if listing.route == "/admin/keys":
            return  # the owner's own key is listed
        body = await read_page(lst.client, lst.url)
        assert body == {listing.field: [], "next_cursor": None}


def tampered(cursor: str) -> list[str]:
    middle = len(cursor) // 2
    return [
        cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :],
        cursor[:-1] + ("A" if cursor[-1] != "A" else "B"),
        cursor[:-1] + ("h" if cursor[-1] != "h" else "i"),
        cursor[:-2],
        cursor + "A",
        cursor + "%3D",
        cursor.upper() if cursor.upper() != cursor else cursor.lower(),
        cursor[::-1],
    ]


GARBAGE = ["garbage", "!!!", "%00", "%FF", "czo1", "czoxMg", "s:5", "A" * 600, "0", "-1", "null"]


@pytest.mark.parametrize("listing", LISTINGS, ids=IDS)
async def test_a_bad_cursor_is_400(shared: Service, listing: Listing) -> None:
    async with opened(shared, listing) as lst:
        for _ in range(3):
            await lst.add()
        cursor = (await read_page(lst.client, lst.url, limit=1))["next_cursor"]
        assert isinstance(cursor, str) and cursor
        for bad in [*GARBAGE, *tampered(cursor)]:
            if bad == cursor:
                continue
            response = await lst.client.get(with_query(lst.url, limit=1, cursor=bad))
            body = assert_error(response, 400, "bad_request")
            assert body["details"][0]["path"] == "$.cursor", body
        assert (await read_page(lst.client, lst.url, limit=1, cursor=cursor))[listing.field]


async def test_a_cursor_of_another_list_is_400(shared: Service) -> None:
    """Cursors of every list (and of another job's runs, another execution's events), swapped."""
    cursors: dict[str, tuple[Opened, str]] = {}
    others = [
        Listing("runs of another job", "runs", "newest", open_runs),
        Listing("events of another execution", "events", "oldest", open_events),
    ]
    async with AsyncExitStack() as stack:
        for listing in [*LISTINGS, *others]:
            lst = await stack.enter_async_context(opened(shared, listing))
            for _ in range(3):
                await lst.add()
            cursor = (await read_page(lst.client, lst.url, limit=1))["next_cursor"]
            cursors[listing.route] = (lst, cursor)
        for target, (lst, own) in cursors.items():
            for source, (_, foreign) in cursors.items():
                if source == target or _same_list(source, target):
                    continue
                response = await lst.client.get(with_query(lst.url, limit=1, cursor=foreign))
                assert_error(response, 400, "bad_request")
            response = await lst.client.get(with_query(lst.url, limit=1, cursor=own))
            assert response.status_code == 200, response.text


def _same_list(source: str, target: str) -> bool:
    """Admin and project views of one table share positions: their cursors are interchangeable."""
    tables = {
        "/infra/jobs": "jobs",
        "/admin/jobs": "jobs",
        "/infra/workflows/executions": "executions",
        "/admin/executions": "executions",
    }
    return source in tables and tables.get(source) == tables.get(target)
