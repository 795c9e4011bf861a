"""The benchmarks' ``--nodes N``: N cluster nodes on one PostgreSQL database, as child processes.

Each node is ``flowyard serve --node-url http://127.0.0.1:<port>`` on one of N consecutive
free ports (DESIGN section 11). A node that is killed comes back on its own port, so the other
nodes and the clients keep knowing it by the same URL. Who owns which shard is read from the
database (``cluster_shards``, ``cluster_nodes``), not asked of a node: it is what a takeover
changes, and a node that is down cannot answer.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.common import (
    HOST,
    Databases,
    Server,
    log,
    proc_cpu_seconds,
    proc_peak_rss_mb,
    spawn_server,
    start_server,
)
from bench.db_reads import fetch, fetch_one, is_postgres

MAX_NODES = 16


def consecutive_free_ports(count: int, first: int = 20000, last: int = 60000) -> list[int]:
    """``count`` consecutive ports on 127.0.0.1 that nothing listens on right now."""
    port = first
    while port + count <= last:
        for offset in range(count):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((HOST, port + offset))
                except OSError:
                    port += offset + 1
                    break
        else:
            return list(range(port, port + count))
    raise RuntimeError(f"no {count} consecutive free ports between {first} and {last}")


def add_nodes_option(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """``--nodes``: how many cluster nodes (0: one plain server without ``--node-url``)."""
    parser.add_argument(
        "--nodes",
        type=int,
        default=default,
        help="run N cluster nodes (`serve --node-url`) on one PostgreSQL database (--postgres or"
        " --db); 0: one server without --node-url",
    )


def check_nodes_option(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--nodes`` out of range, or with SQLite (one server per file)."""
    if not 0 <= args.nodes <= MAX_NODES:
        parser.error(f"--nodes must be 0..{MAX_NODES}")
    if args.nodes and not (args.postgres or args.db):
        parser.error("--nodes needs PostgreSQL (--postgres or --db): a SQLite file has one server")


class Nodes:
    """N cluster nodes of one database: start them, kill one, bring it back, stop them all."""

    def __init__(
        self,
        db: str,
        count: int,
        log_dir: Path,
        *,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 120.0,
    ) -> None:
        if not is_postgres(db):
            raise ValueError("cluster nodes need a PostgreSQL database")
        self.db = db
        self.ports = consecutive_free_ports(count)
        self.log_dir = log_dir
        self.extra_args = tuple(extra_args)
        self.ready_timeout = ready_timeout
        self.servers: list[Server] = []
        self.cpu_of_gone = [0.0] * count
        """CPU seconds of each node's earlier (killed) processes."""
        self.databases: Databases | None = None
        """Where the database came from: set it to have ``cluster_cpu_seconds``."""
        self.exit_code: int | None = None
        """After ``stop``: the first non-zero exit code of a node, else 0."""

    @property
    def urls(self) -> list[str]:
        return [f"http://{HOST}:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        """The first node's URL (for requests any node serves)."""
        return self.urls[0]

    def cluster_cpu_seconds(self) -> float | None:
        """CPU seconds of the throwaway PostgreSQL cluster so far (None without one)."""
        return None if self.databases is None else self.databases.cluster_cpu_seconds()

    def peak_rss_mb(self) -> float:
        """The largest peak resident set size (VmHWM) of the running nodes, in MiB."""
        return max(proc_peak_rss_mb(server.pid) for server in self.servers)

    def _args(self, index: int) -> list[str]:
        return ["--node-url", self.urls[index], *self.extra_args]

    def _log_dir(self, index: int) -> Path:
        folder = self.log_dir / f"node-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def start(self) -> None:
        """Start every node and wait for each one's /readyz."""
        for index in range(len(self.ports)):
            self.servers.append(self.start_node(index))

    def start_node(self, index: int) -> Server:
        """Start node ``index`` on its port and wait for /readyz."""
        return start_server(
            extra_args=self._args(index),
            db=self.db,
            ready_timeout=self.ready_timeout,
            log_dir=self._log_dir(index),
            port=self.ports[index],
        )

    def spawn_node(self, index: int) -> Server:
        """Start node ``index`` on its port without waiting for it."""
        return spawn_server(
            extra_args=self._args(index),
            db=self.db,
            log_dir=self._log_dir(index),
            port=self.ports[index],
        )

    def end(self, index: int, how: signal.Signals, timeout: float = 60.0) -> None:
        """Send ``how`` to node ``index`` and wait for it to exit (SIGKILL after ``timeout``)."""
        proc = self.servers[index].proc
        with contextlib.suppress(OSError):
            self.cpu_of_gone[index] += proc_cpu_seconds(proc.pid)
        if proc.poll() is None:
            proc.send_signal(how)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"node {index} (pid {proc.pid}) still running {timeout}s after {how.name}")
            proc.kill()
            proc.wait(30)

    def wait_ready(self, timeout: float) -> None:
        """Wait until every node answers /readyz with 200 (no shards moving), all in a row."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if all(client.get(f"{url}/readyz").status_code == 200 for url in self.urls):
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nodes not all ready in {timeout}s")
                time.sleep(0.1)

    def cpu_by_node(self) -> list[float]:
        """CPU seconds each node has used so far (its earlier processes included)."""
        out = []
        for index, server in enumerate(self.servers):
            now = 0.0
            with contextlib.suppress(OSError):
                now = proc_cpu_seconds(server.pid)
            out.append(self.cpu_of_gone[index] + now)
        return out

    def cpu_seconds(self) -> float:
        """CPU seconds of every node together."""
        return sum(self.cpu_by_node())

    def stop(self, timeout: float = 60.0) -> list[int | None]:
        """SIGTERM every node at once, wait for them to exit; their exit codes."""
        for index, server in enumerate(self.servers):
            if server.proc.poll() is None:
                with contextlib.suppress(OSError):
                    self.cpu_of_gone[index] += proc_cpu_seconds(server.pid)
                server.proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for index, server in enumerate(self.servers):
            try:
                server.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"node {index} ignored SIGTERM for {timeout}s; killing it")
                server.proc.kill()
                server.proc.wait(30)
            server.exit_code = server.proc.returncode
            codes.append(server.proc.returncode)
        self.exit_code = next((code for code in codes if code), 0)
        return codes

    def __enter__(self) -> Nodes:
        try:
            self.start()
        except BaseException:
            self.kill_all()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        codes = self.stop()
        log(f"nodes stopped (exit {codes})")

    def kill_all(self) -> None:
        """SIGKILL whatever still runs (cleanup after a failure)."""
        for server in self.servers:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(30)


def shards_by_url(db: str) -> dict[str | None, int]:
    """How many shards each node owns, by node URL (None: unowned, or owner not registered)."""
    rows = fetch(
        db,
        "SELECT n.url, count(*) FROM cluster_shards s"
        " LEFT JOIN cluster_nodes n ON n.node_id = s.node_id GROUP BY n.url",
    )
    return {url: int(count) for url, count in rows}


def shards_not_elsewhere(db: str, url: str) -> int:
    """How many shards are unowned or owned by the node at ``url``."""
    (count,) = fetch_one(
        db,
        "SELECT count(*) FROM cluster_shards s LEFT JOIN cluster_nodes n"
        " ON n.node_id = s.node_id WHERE n.url IS NULL OR n.url = $1",
        url,
    )
    return int(count)


def wait_taken_over(db: str, url: str, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` (``time.monotonic()``) until the other nodes own every shard
    (none unowned, none the node at ``url``'s); None if that did not happen in ``timeout``."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        if shards_not_elsewhere(db, url) == 0:
            return time.monotonic() - since
        time.sleep(0.05)
    return None


def wait_balanced(db: str, urls: Sequence[str], timeout: float) -> bool:
    """Wait until every node in ``urls`` owns its share of the shards (``total // N``)."""
    deadline = time.monotonic() + timeout
    while True:
        owned = shards_by_url(db)
        share = sum(owned.values()) // len(urls)
        if owned and all(owned.get(url, 0) >= share for url in urls):
            return True
        if time.monotonic() > deadline:
            log(f"shards not balanced after {timeout}s: {owned}")
            return False
        time.sleep(0.1)
