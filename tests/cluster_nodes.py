"""A cluster of real ``flowyard serve --node-url`` processes on one throwaway PostgreSQL
database, for the end-to-end tests of ``test_cluster.py`` (``cluster_support.py`` holds the
forwarding node of the unit tests).

Each node is a child process on its own free port of 127.0.0.1; the test starts them, waits
until the shards are shared out (``settled``), and kills, stops, resumes or terminates them
one by one. Ownership is read straight from ``cluster_shards``, so that the tests do not
depend on the API they check. Every node still running is killed when the block ends.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from bench import postgres

from flowyard.cluster.shards import shard_of, sharded_id
from tests.conftest import _CLUSTER, ServerProcess, free_port

asyncpg = pytest.importorskip("asyncpg")

TEST_SECONDS = 120.0
"""The longest a test of a cluster may take, start included."""
START_SECONDS = 60.0
"""A node's start on a busy machine: import, migrate, join, rehydrate."""


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (the test process's own with ``--store postgresql``);
    the test is skipped, saying why, where PostgreSQL is not installed."""
    if _CLUSTER:
        yield _CLUSTER[0]
        return
    try:
        with postgres.postgres_cluster() as url:
            yield url
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))


def cli(*args: str) -> str:
    """Run ``flowyard ARGS``; its standard output (the command must succeed)."""
    command = [sys.executable, "-m", "flowyard", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_key(db: str, project: str, *, admin: bool = False) -> str:
    """A new API key of ``project`` (an admin key with ``admin``), made with the CLI."""
    extra = ("--admin",) if admin else ()
    return cli("keys", "create", "--db", db, "--project", project, *extra).splitlines()[-1]


async def query(db: str, sql: str, *args: Any) -> list[Any]:
    """The rows of one statement on a connection of its own."""
    conn = await asyncpg.connect(db)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@dataclass
class Node(ServerProcess):
    """One ``flowyard serve --node-url`` process."""

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and sessions but does nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def client(self, key: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=httpx.Timeout(30))


class Nodes:
    """The nodes of one cluster on database ``db``."""

    def __init__(self, db: str, folder: Path, key: str, *args: str) -> None:
        self.db = db
        self.key = key  # a project's key, for the probes of ``settled``
        self.folder = folder
        self.args = args  # given to every node's ``flowyard serve``
        self.all: list[Node] = []

    def spawn(self, *args: str) -> Node:
        """Start one node; it is not serving yet (see :meth:`start`)."""
        port = free_port()
        log_path = self.folder / f"node-{port}-{os.urandom(3).hex()}.log"
        command = [
            *(sys.executable, "-m", "flowyard", "serve", "--db", self.db),
            *("--port", str(port), "--node-url", f"http://127.0.0.1:{port}"),
            *self.args,
            *args,
        ]
        with open(log_path, "wb") as log_file:  # the child keeps its own descriptor
            proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        node = Node(proc, f"http://127.0.0.1:{port}", log_path)
        self.all.append(node)
        return node

    async def start(self, count: int, *args: str) -> list[Node]:
        """Start ``count`` nodes at once; they are listening and ready when this returns."""
        nodes = [self.spawn(*args) for _ in range(count)]
        with anyio.fail_after(START_SECONDS):
            for node in nodes:
                await self.wait_listening(node)
        return nodes

    async def wait_listening(self, node: Node) -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if not node.running:
                    raise RuntimeError(f"node {node.url} exited:\n{node.log()}")
                if "flowyard listening on" in node.log():
                    try:
                        if (await http.get(f"{node.url}/readyz")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                await anyio.sleep(0.05)

    @property
    def live(self) -> list[Node]:
        return [node for node in self.all if node.running]

    async def owners(self) -> dict[int, str | None]:
        """Each shard's owner, as the URL of its node (None: unowned)."""
        rows = await query(
            self.db,
            "SELECT s.shard, n.url FROM cluster_shards s"
            " LEFT JOIN cluster_nodes n ON n.node_id = s.node_id ORDER BY s.shard",
        )
        return {row["shard"]: row["url"] for row in rows}

    async def shares(self) -> dict[str, list[int]]:
        """The shards each node owns, by URL."""
        found: dict[str, list[int]] = {}
        for shard, url in (await self.owners()).items():
            if url is not None:
                found.setdefault(url, []).append(shard)
        return found

    async def owned_by(self, nodes: list[Node], timeout: float = 10) -> dict[str, list[int]]:
        """Wait until the database shows the shards shared evenly among ``nodes``, every
        one owned once; the shares, by URL."""
        urls = {node.url for node in nodes}
        with anyio.fail_after(timeout):
            while True:
                owners = await self.owners()
                shares = await self.shares()
                counts = [len(shares.get(url, [])) for url in urls]
                if owners and set(owners.values()) == urls and max(counts) - min(counts) <= 1:
                    return shares
                await anyio.sleep(0.02)

    async def settled(
        self, nodes: list[Node] | None = None, timeout: float = 10
    ) -> dict[str, list[int]]:
        """Wait until the shards are shared evenly among ``nodes`` (the live ones), each of
        those answers ``/readyz`` 200 and knows every other shard's owner (a request about
        an object of any shard is answered, not 503); the shares, by URL."""
        nodes = self.live if nodes is None else nodes
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(timeout=5, headers=headers) as http:
            with anyio.fail_after(timeout):
                while True:
                    shares = await self.owned_by(nodes, timeout)
                    if await _all_ready(http, nodes) and shares == await self.shares():
                        break
                    await anyio.sleep(0.05)
                total = len(await self.owners())
                for node in nodes:
                    for shard in set(range(total)) - set(shares[node.url]):
                        await _answered(http, f"{node.url}/infra/jobs/{sharded_id('job', shard)}")
        return shares

    async def node_id(self, node: Node) -> str | None:
        """The node's id in ``cluster_nodes`` (None once its row is gone)."""
        rows = await query(self.db, "SELECT node_id FROM cluster_nodes WHERE url = $1", node.url)
        return rows[0]["node_id"] if rows else None

    async def owner_of(self, object_id: str) -> Node:
        """The node that owns the object's shard now."""
        owners = await self.owners()
        url = owners[shard_of(object_id, len(owners))]
        return next(node for node in self.all if node.url == url)

    async def not_owner_of(self, object_id: str) -> Node:
        """A live node that does not own the object's shard."""
        owner = await self.owner_of(object_id)
        return next(node for node in self.live if node is not owner)

    def close(self) -> None:
        for node in self.all:
            if node.running:
                node.resume()
                node.proc.kill()
                node.proc.wait(10)


async def _answered(http: httpx.AsyncClient, url: str) -> None:
    """Wait until a GET of an object nobody has is answered 404 (its owner is known)."""
    while True:
        response = await http.get(url)
        if response.status_code != 503:
            assert response.status_code == 404, response.text
            return
        await anyio.sleep(0.05)


async def _all_ready(http: httpx.AsyncClient, nodes: list[Node]) -> bool:
    for node in nodes:
        try:
            if (await http.get(f"{node.url}/readyz")).status_code != 200:
                return False
        except httpx.TransportError:
            return False
    return True


@asynccontextmanager
async def cluster_of(
    server: str, folder: Path, count: int, *args: str
) -> AsyncIterator[tuple[Nodes, str]]:
    """``count`` nodes on a fresh database of PostgreSQL ``server``, settled; with a key of
    project ``cl``. Every node still running is killed at the end."""
    db = str(postgres.create_database(server))
    key = await anyio.to_thread.run_sync(create_key, db, "cl")
    nodes = Nodes(db, folder, key, *args)
    try:
        with anyio.fail_after(TEST_SECONDS):  # a test that hangs fails instead
            await nodes.start(count)
            await nodes.settled()
            yield nodes, key
    finally:
        nodes.close()


def wait_exit(node: Node, timeout: float = 30) -> int:
    """The exit status of a node that was asked to stop."""
    deadline = time.monotonic() + timeout
    while node.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return node.proc.wait(1)
