"""``flowyard cluster`` and ``client.admin.cluster()`` against a real server process (a single
server: one node owning every shard; ``--shards`` sets how many)."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from flowyard.client import Client, Forbidden
from flowyard.client.models import Cluster
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess, start_server


@dataclass
class Running:
    server: ServerProcess
    admin: str
    project: str


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    path = tmp_path_factory.mktemp("cli-cluster")
    db = str(path / "flowyard.db")
    admin = create_key_sync(db, "ops", ["*"], admin=True).key
    project = create_key_sync(db, "shop", list(ALL_SCOPES)).key
    server = start_server(db, path, "--shards", "16")
    yield Running(server, admin, project)
    assert server.terminate() == 0


def flowyard(*args: str, url: str, key: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLOWYARD_")}
    return subprocess.run(
        [sys.executable, "-m", "flowyard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "FLOWYARD_URL": url, "FLOWYARD_API_KEY": key},
    )


def test_the_table_and_the_json(running: Running) -> None:
    url = running.server.url
    done = flowyard("cluster", url=url, key=running.admin)
    assert done.returncode == 0, done.stderr
    header, row, summary = done.stdout.splitlines()
    assert header.split() == ["node_id", "url", "shards", "started_at", "last_seen_at"]
    assert row.split()[:3] == ["solo", url, "16"]
    assert summary == "shards: 16 total, 0 unowned"
    done = flowyard("cluster", "--json", url=url, key=running.admin)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["shards"] == {"total": 16, "unowned": 0}
    assert answer["nodes"][0]["shards"] == list(range(16))


def test_a_project_key_is_refused(running: Running) -> None:
    done = flowyard("cluster", url=running.server.url, key=running.project)
    assert done.returncode == 1
    assert "forbidden" in done.stderr and "admin" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_client(running: Running) -> None:
    with Client(running.server.url, running.admin) as client:
        state = client.admin.cluster()
    assert isinstance(state, Cluster)
    [node] = state.nodes
    assert (node.url, node.shards, state.shards.unowned) == (running.server.url, list(range(16)), 0)
    with Client(running.server.url, running.project) as client, pytest.raises(Forbidden):
        client.admin.cluster()
