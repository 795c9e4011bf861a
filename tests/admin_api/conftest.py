"""One server per module for the admin API tests, an admin client, and fresh projects."""

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flowyard.storage.projects import create_key_sync
from tests.conftest import Service, running_service

_names = itertools.count(1)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    path: Path = tmp_path_factory.mktemp("admin")
    async with running_service(path) as service:
        yield service


@pytest.fixture(scope="module")
async def admin(shared: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A client with an admin key (of its own project, ``ops``)."""
    created = await anyio.to_thread.run_sync(
        lambda: create_key_sync(shared.db, "ops", ["*"], admin=True)
    )
    async with shared.client_for(created.key) as client:
        yield client


@dataclass
class Tenant:
    """A project made through the admin API, with a key of every scope and its client."""

    id: str
    name: str
    key_id: str
    key: str
    client: httpx.AsyncClient


@pytest.fixture
def tenant(
    shared: Service, admin: httpx.AsyncClient
) -> Callable[..., AbstractAsyncContextManager[Tenant]]:
    """``async with tenant() as t``: a brand-new project and a client for it."""

    @asynccontextmanager
    async def make(label: str = "tenant") -> AsyncIterator[Tenant]:
        name = f"{label}-{next(_names)}"
        project = ok(await admin.post("/admin/projects", json={"name": name}))
        key = ok(await admin.post("/admin/keys", json={"project_id": project["id"]}))
        async with shared.client_for(key["key"]) as client:
            yield Tenant(project["id"], name, key["id"], key["key"], client)

    return make


def ok(response: httpx.Response) -> Any:
    """The JSON body of a 200."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


async def walk(client: httpx.AsyncClient, path: str, items: str, limit: int) -> list[Any]:
    """Every item of a list, page by page; checks each page's size."""
    found: list[Any] = []
    cursor: str | None = None
    separator = "&" if "?" in path else "?"
    with anyio.fail_after(30):
        while True:
            query = f"{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            page = ok(await client.get(path + query))
            assert len(page[items]) <= limit
            found += page[items]
            cursor = page["next_cursor"]
            if cursor is None:
                return found
            assert len(page[items]) == limit
