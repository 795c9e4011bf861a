"""A forwarding node in this process and a fake cluster around it, for the tests of
``cluster/forward.py``."""

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import ByteStream

from flowyard.actors.supervisor import Supervisor
from flowyard.cluster import hop
from flowyard.cluster.forward import Forwarder
from flowyard.cluster.view import ClusterState
from flowyard.errors import Unavailable
from flowyard.http.app import create_app
from flowyard.settings import Settings
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess, free_port, fresh_db, serve_app, serve_tcp
from tests.jobs_support import PULL

UNKNOWN_JOB = "job_01JBZZZZZZZZZZZZZZZZZZZZZZ"


class FakeCluster:
    """A cluster whose every shard is owned by ``owner`` (None: this node; "": nobody)."""

    def __init__(self, owner: str | None) -> None:
        self.node_id = "front"
        self.url = "http://front"
        self.total = 64
        self.owner = owner
        self.asked: list[int] = []

    def mine(self, shard: int) -> bool:
        return self.owner is None

    def owner_url(self, shard: int) -> str | None:
        self.asked.append(shard)
        if self.owner == "":
            raise Unavailable(f"shard {shard} has no live owner; retry")
        return self.owner

    def pick_shard(self) -> int:
        return 0

    def peers(self) -> list[str]:
        return [self.owner] if self.owner else []

    async def state(self) -> ClusterState:
        return ClusterState([], {"total": self.total, "unowned": 0})


@dataclass
class Owner:
    """The owner process, its project's key and an admin key."""

    server: ServerProcess
    key: str
    project_id: str
    admin: str

    def client(self, url: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.AsyncClient(base_url=url or self.server.url, headers=headers, timeout=30)


@dataclass
class Front:
    """The forwarding node."""

    url: str
    supervisor: Supervisor
    cluster: FakeCluster
    forwarder: Forwarder
    key: str
    """A key of a project in the node's own database."""

    def signed(self, method: str, target: str, age_ms: int = 0) -> str:
        secret = self.supervisor.jobs.push.server_secret
        value = hop.sign(secret, "front", now_ms() - age_ms, method, target.encode())
        return f"x-flowyard-forwarded: {value.decode()}"


@dataclass
class Counting:
    """A TCP relay in front of the owner that counts the connections it is given."""

    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


def start_owner(tmp_path: Path, server_process: Callable[..., ServerProcess]) -> Owner:
    """A real ``flowyard serve`` with a project's key and an admin key."""
    db = fresh_db(tmp_path, "owner.db")
    created = create_key_sync(db, "test", list(ALL_SCOPES))
    admin = create_key_sync(db, "ops", list(ALL_SCOPES), admin=True)
    server = server_process(db)
    return Owner(server, created.key, created.record.project_id, admin.key)


@asynccontextmanager
async def front_node(
    tmp_path: Path, owner_url: str | None, name: str = "front"
) -> AsyncIterator[Front]:
    """A node whose cluster says ``owner_url`` owns every shard, on a real socket."""
    db = fresh_db(tmp_path, f"{name}.db")
    key = create_key_sync(db, "test", list(ALL_SCOPES)).key
    settings = Settings(db=db, port=free_port())
    supervisor = Supervisor(settings)
    cluster = FakeCluster(owner_url)
    supervisor.cluster = cluster
    app: Any = create_app(settings, supervisor)
    async with serve_app(app) as url:
        with anyio.fail_after(10):
            await supervisor.ready.wait()
        yield Front(url, supervisor, cluster, app.context.forwarder, key)


@asynccontextmanager
async def counting_relay(target: str) -> AsyncIterator[Counting]:
    """Relay bytes to ``target`` (``http://host:port``), counting connections."""
    host, _, port = target.removeprefix("http://").rpartition(":")
    counting = Counting()

    async def handle(client: ByteStream) -> None:
        counting.connections += 1
        async with client, await anyio.connect_tcp(host, int(port)) as upstream:

            async def up() -> None:
                async for chunk in client:
                    counting.requests.append(chunk)
                    await upstream.send(chunk)
                await upstream.send_eof()

            async with anyio.create_task_group() as tg:
                tg.start_soon(up)
                async for chunk in upstream:
                    await client.send(chunk)
                tg.cancel_scope.cancel()

    async with serve_tcp(handle) as relay_port:
        counting.url = f"http://127.0.0.1:{relay_port}"
        yield counting


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def pull_job(owner: Owner) -> dict[str, Any]:
    async with owner.client() as client:
        created = await client.post("/infra/jobs", json={**PULL, "name": "far"})
    assert created.status_code == 202, created.text
    job: dict[str, Any] = created.json()
    return job
