"""``flowyard serve --processes N``: N node processes on consecutive ports of one machine.

The refusals run everywhere; the rest starts the real command on a throwaway PostgreSQL
cluster (``bench/postgres.py``) and is skipped, saying why, where PostgreSQL is missing.
How many nodes each one lists is not asserted: the nodes see each other through the shard
leases, which live in ``cluster/leases.py``.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from bench import postgres
from msgspec.structs import asdict

from flowyard.cli import processes
from flowyard.cli import serve as serve_command
from flowyard.storage.projects import create_key_sync
from tests.cluster_nodes import postgres_server
from tests.conftest import free_port

pytest.importorskip("asyncpg")

STARTED = re.compile(r"started node (\d+) \(pid (\d+)\) on (\S+)")


def serve(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m flowyard serve ARGS``, its output into ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flowyard", "serve", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "FLOWYARD_LOG_LEVEL": "info"},
        )


def refused(*args: str, tmp_path: Path) -> str:
    """The message of a ``serve`` that must exit 2 at once, without starting anything."""
    proc = subprocess.run(
        [sys.executable, "-m", "flowyard", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_sqlite_stays_single_process(tmp_path: Path) -> None:
    db = tmp_path / "flowyard.db"
    message = refused("--processes", "2", "--db", str(db), "--port", "0", tmp_path=tmp_path)
    assert "--processes 2 needs a postgresql:// --db" in message
    assert not db.exists()  # nothing was started or created


def test_a_node_needs_postgresql_and_an_http_url(tmp_path: Path) -> None:
    db = tmp_path / "flowyard.db"
    message = refused("--node-url", "http://127.0.0.1:1", "--db", str(db), tmp_path=tmp_path)
    assert "--node-url makes a cluster node: it needs a postgresql:// --db" in message
    assert not db.exists()
    url = "postgresql://nobody@127.0.0.1:1/none"
    message = refused("--node-url", "127.0.0.1:9", "--db", url, tmp_path=tmp_path)
    assert "--node-url must be an http:// or https:// URL" in message


def test_a_count_below_one_is_refused(tmp_path: Path) -> None:
    for count in ("0", "-3", "two"):
        message = refused("--processes", count, "--db", "x.db", tmp_path=tmp_path)
        assert "--processes" in message
    assert not (tmp_path / "x.db").exists()


def test_the_ports_must_be_known(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/nothing"
    message = refused("--processes", "3", "--db", url, "--port", "0", tmp_path=tmp_path)
    assert "--port" in message and "not 0" in message
    message = refused("--processes", "2", "--db", url, "--port=-4", tmp_path=tmp_path)
    assert "not -4" in message
    message = refused("--processes", "3", "--db", url, "--port", "65534", tmp_path=tmp_path)
    assert "3 consecutive ports" in message
    message = refused(
        "--processes", "2", "--db", url, "--node-url", "http://x:1", tmp_path=tmp_path
    )
    assert "--node-url" in message


def serve_parser() -> argparse.ArgumentParser:
    """``flowyard serve``'s parser, as the command builds it (reading ``FLOWYARD_*`` now)."""
    commands = argparse.ArgumentParser(prog="flowyard").add_subparsers()
    serve_command.register(commands)
    return commands.choices["serve"]


def test_each_node_gets_the_parent_s_options_and_secrets_stay_out_of_its_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [name for name in os.environ if name.startswith("FLOWYARD_")]:
        monkeypatch.delenv(name)
    db = "postgresql://flowyard:hunter2@db.internal:5432/flowyard"
    given = ["--processes", "3", "--db", db, "--port", "9000", "--host", "0.0.0.0"]
    given += ["--sync", "normal", "--retry-base-seconds", "0.5", "--metrics-token", "s3cret"]
    given += ["--shards", "8", "--max-inflight", "99", "--log-format", "json"]
    parser = serve_parser()
    parent = parser.parse_args(given)
    command = processes.node_command(parser, parent, 9002, "http://127.0.0.1:9002")
    environment = processes.node_environment(parent)
    assert command[1:4] == ["-m", "flowyard", "serve"]
    assert not any("hunter2" in part or "s3cret" in part for part in command)
    assert environment["FLOWYARD_DB"] == db
    assert environment["FLOWYARD_METRICS_TOKEN"] == "s3cret"
    assert command[-3:] == ["--processes=1", "--port=9002", "--node-url=http://127.0.0.1:9002"]

    for name in ("FLOWYARD_DB", "FLOWYARD_METRICS_TOKEN"):  # as the node reads them
        monkeypatch.setenv(name, environment[name])
    node = serve_parser().parse_args(command[4:])
    expected = asdict(serve_command.settings_from(parent))
    assert asdict(serve_command.settings_from(node)) == {
        **expected,
        "port": 9002,
        "node_url": "http://127.0.0.1:9002",
    }
    assert node.processes == 1


# -------------------------------------------------------------------- on PostgreSQL


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A throwaway PostgreSQL cluster's database for this module."""
    with postgres_server() as url:
        yield url


@dataclass
class Parent:
    """``flowyard serve --processes N``: its process, log and the ports of its nodes."""

    proc: subprocess.Popen[bytes]
    log: Path
    ports: list[int]
    db: str

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def started(self) -> list[tuple[int, int, str]]:
        """(node, pid, url) of every start logged so far, in order."""
        found = STARTED.findall(self.log.read_text(errors="replace"))
        return [(int(node), int(pid), url) for node, pid, url in found]

    def pids(self) -> dict[int, int]:
        """Each node's latest pid."""
        return {node: pid for node, pid, _ in self.started()}


def consecutive_free_ports(count: int) -> int:
    """A port with the ``count - 1`` after it free too (as far as one can tell)."""
    for _ in range(50):
        first = free_port()
        if first + count - 1 > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return first
    raise RuntimeError("no run of free ports")


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become ready")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


@pytest.fixture
def parent(database: str, tmp_path: Path) -> Iterator[Parent]:
    """Two nodes on a fresh database, both answering ``/readyz``; killed if still running."""
    db = postgres.create_database(database)
    first = consecutive_free_ports(2)
    log = tmp_path / "parent.log"
    proc = serve("--processes", "2", "--db", db, "--port", str(first), log=log)
    running = Parent(proc, log, [first, first + 1], db)
    try:
        for url in running.urls():
            wait_ready(url)
        yield running
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pid in running.pids().values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def admin_key(db: str) -> str:
    return create_key_sync(db, "ops", ["*"], admin=True).key


def test_two_nodes_answer_and_each_lists_itself(parent: Parent) -> None:
    key = admin_key(parent.db)
    started = parent.started()
    assert [(node, url) for node, _, url in started] == list(enumerate(parent.urls(), 1))
    for url in parent.urls():
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        answer = httpx.get(
            f"{url}/admin/cluster", headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert url in [node["url"] for node in body["nodes"]]
        assert body["shards"]["total"] == 64
    deadline = time.monotonic() + 10
    while True:  # the two nodes see each other and share the shards
        body = httpx.get(
            f"{parent.urls()[0]}/admin/cluster",
            headers={"Authorization": f"Bearer {key}"},
            timeout=5,
        ).json()
        counts = sorted(len(node["shards"]) for node in body["nodes"])
        if (counts == [32, 32] and body["shards"]["unowned"] == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(node["url"] for node in body["nodes"]) == sorted(parent.urls())
    assert counts == [32, 32]
    assert body["shards"]["unowned"] == 0


def test_sigterm_stops_every_node_and_the_parent_exits_0(parent: Parent) -> None:
    pids = list(parent.pids().values())
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    parent.proc.send_signal(signal.SIGTERM)
    assert parent.proc.wait(60) == 0, parent.log.read_text()
    assert not any(alive(pid) for pid in pids)
    assert "SIGTERM: stopping 2 processes" in parent.log.read_text()


def test_a_killed_node_is_started_again(parent: Parent) -> None:
    victim = parent.pids()[2]
    survivor = parent.pids()[1]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while parent.pids()[2] == victim:
        assert time.monotonic() < deadline, parent.log.read_text()
        time.sleep(0.1)
    assert "node 2 (http://127.0.0.1:" in parent.log.read_text()
    assert "exited unexpectedly with status -9" in parent.log.read_text()
    wait_ready(parent.urls()[1])
    assert parent.pids()[1] == survivor and alive(survivor)
    assert alive(parent.pids()[2])
    both = parent.pids()
    for pid in both.values():  # every node at once: the parent waits for none, starts both
        os.kill(pid, signal.SIGKILL)
    while any(parent.pids()[node] == pid for node, pid in both.items()):
        assert parent.proc.poll() is None, parent.log.read_text()
        assert time.monotonic() < deadline + 30, parent.log.read_text()
        time.sleep(0.1)
    for url in parent.urls():
        wait_ready(url)
    parent.proc.send_signal(signal.SIGINT)  # SIGINT stops them too
    assert parent.proc.wait(60) == 0, parent.log.read_text()


def test_nodes_that_cannot_start_make_the_parent_give_up(tmp_path: Path) -> None:
    """No PostgreSQL listens there: each node exits at once, is started again a few times
    (waiting longer each time), then the parent stops and exits 1 rather than loop forever."""
    port = consecutive_free_ports(2)
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    log = tmp_path / "parent.log"
    proc = serve("--processes", "2", "--db", url, "--port", str(port), log=log)
    try:
        assert proc.wait(120) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text(errors="replace")
    assert "starting it again in 0.5s" in text and "starting it again in 4s" in text
    assert re.search(r"node \d exited 5 times within 10s of its start", text), text
    started = STARTED.findall(text)
    assert {node for node, _, _ in started} == {"1", "2"}
    assert not any(alive(int(pid)) for _, pid, _ in started)
