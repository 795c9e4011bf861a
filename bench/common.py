"""Shared helpers for the load benchmarks: the server as a child process, keys, /proc figures.

Every benchmark starts the real server (``python -m flowyard serve``) on 127.0.0.1 with a
fresh database, talks to it over HTTP only, and stops it with SIGTERM at the end. The database
is a SQLite file in a temporary directory, or with ``--db URL`` / ``--postgres`` a fresh
PostgreSQL database (see :func:`databases`). Nothing here sends traffic anywhere but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.db_reads import is_postgres
from bench.postgres import create_database, running_cluster

HOST = "127.0.0.1"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
# The source tree this benchmark belongs to: the server runs its code (see server_env).
REPO = Path(__file__).resolve().parents[1]


def log(*parts: object) -> None:
    """Progress for humans: stderr only (stdout carries the one JSON line)."""
    print("[bench]", *parts, file=sys.stderr, flush=True)


def server_env() -> dict[str, str]:
    """The environment for the server and the CLI: ``src/`` of this tree first on PYTHONPATH.

    An editable install may point at another checkout (a CI clone, another work tree); the
    benchmark measures the code next to it instead.
    """
    env = dict(os.environ)
    src = REPO / "src"
    if (src / "flowyard").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    return env


def source_info() -> dict[str, object]:
    """Which code is measured: the ``src/`` directory, its git commit and whether it is dirty."""
    info: dict[str, object] = {"flowyard_src": str(REPO / "src")}
    try:
        git = ["git", "-C", str(REPO)]
        info["commit"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, timeout=10
        ).stdout
        info["src_dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def create_key(db: str, project: str = "bench", scopes: Sequence[str] = ()) -> str:
    """Create the project (if needed) and an API key with the CLI; the key is stdout's last line."""
    cmd = [sys.executable, "-m", "flowyard", "keys", "create", "--db", db, "--project", project]
    for scope in scopes:
        cmd += ["--scope", scope]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, timeout=60, env=server_env()
    ).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError("flowyard keys create printed nothing")
    return lines[-1]


@dataclass
class Server:
    """The real server running as a child process on 127.0.0.1."""

    db: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path | None = None
    exit_code: int | None = field(default=None, init=False)
    databases: Databases | None = field(default=None, init=False)
    """Where its database came from (``databases``): set it to have ``cluster_cpu_seconds``."""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def urls(self) -> list[str]:
        """Every URL that serves it (one: see ``bench.nodes.Nodes`` for a cluster's)."""
        return [self.url]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        return proc_cpu_seconds(self.pid)

    def cpu_by_node(self) -> list[float]:
        """``cpu_seconds`` as a list of one (a cluster has one figure per node)."""
        return [self.cpu_seconds()]

    def cluster_cpu_seconds(self) -> float | None:
        """CPU seconds of the throwaway PostgreSQL cluster so far (None without one)."""
        return None if self.databases is None else self.databases.cluster_cpu_seconds()

    def peak_rss_mb(self) -> float:
        """The server's peak resident set size (VmHWM) in MiB."""
        return proc_peak_rss_mb(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote to stderr (for error reports)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_server(
    *,
    sync: str = "full",
    extra_args: Sequence[str] = (),
    db: str | None = None,
    ready_timeout: float = 30.0,
    cpus: set[int] | None = None,
    prefix: Sequence[str] = (),
    log_dir: Path | None = None,
    port: int | None = None,
) -> Server:
    """Start ``python -m flowyard serve`` on a free port with a fresh database; wait for /readyz.

    The database goes in a new temporary directory (on the same disk as /tmp, so fsync is real)
    unless ``db`` is given (a file's path or a PostgreSQL URL). Server stderr goes to
    ``server.log`` next to a SQLite file; for a URL, in ``log_dir`` (default: a new temporary
    directory).
    ``cpus`` pins the server (every thread of it) to those CPUs; ``prefix`` runs it under
    another program (``valgrind ...``). ``port``: that port instead of a free one (a cluster
    node restarted where the others know it).
    """
    server = spawn_server(
        sync=sync,
        extra_args=extra_args,
        db=db,
        cpus=cpus,
        prefix=prefix,
        log_dir=log_dir,
        port=port,
    )
    deadline = time.monotonic() + ready_timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            if server.proc.poll() is not None:
                code = server.proc.returncode
                raise RuntimeError(f"server exited with {code}:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{server.url}/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                stop_server(server)
                raise RuntimeError(f"server not ready in {ready_timeout}s:\n{server.log_tail()}")
            time.sleep(0.05)
    log(f"server pid {server.pid} ready at {server.url} (sync={sync}, db={server.db})")
    return server


def spawn_server(
    *,
    sync: str = "full",
    extra_args: Sequence[str] = (),
    db: str | None = None,
    cpus: set[int] | None = None,
    workdir: Path | None = None,
    prefix: Sequence[str] = (),
    log_dir: Path | None = None,
    port: int | None = None,
) -> Server:
    """Start the server process (a fresh database unless ``db``) without waiting for it.

    With ``db`` given, the server's log is appended to (a restart keeps the earlier log) and
    ``workdir`` (if any) is the directory ``stop_server`` removes at the end. For a PostgreSQL
    URL the log goes in ``log_dir``, else in ``workdir`` (a new temporary directory if None).
    ``port``: listen there (default: a free port).
    """
    fresh = db is None
    if db is None:
        workdir = Path(tempfile.mkdtemp(prefix="flowyard-bench-"))
        db = str(workdir / "bench.db")
    if is_postgres(db):
        if log_dir is None:
            if workdir is None:
                workdir = Path(tempfile.mkdtemp(prefix="flowyard-bench-"))
            log_dir = workdir
        log_path = log_dir / "server.log"
    else:
        log_path = Path(db).with_name("server.log")
    if port is None:
        port = free_port()
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "flowyard",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--db",
        db,
        "--sync",
        sync,
        *extra_args,
    ]
    with open(log_path, "wb" if fresh else "ab") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=server_env(),
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    return Server(db=db, port=port, proc=proc, log_path=log_path, workdir=workdir)


def stop_server(server: Server, timeout: float = 30.0) -> int | None:
    """SIGTERM the server and wait for it to exit (SIGKILL after ``timeout``); its exit code."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"server pid {proc.pid} ignored SIGTERM for {timeout}s; killing it")
            proc.kill()
            proc.wait()
    if server.workdir is not None:
        shutil.rmtree(server.workdir, ignore_errors=True)
    server.exit_code = proc.returncode
    return proc.returncode


@contextlib.contextmanager
def running_server(**kwargs: object) -> Iterator[Server]:
    """``start_server`` as a context manager that always stops the server."""
    server = start_server(**kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        code = stop_server(server)
        log(f"server stopped (exit {code})")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the full line
    return (utime + stime) / _CLK_TCK


def proc_peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process in MiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f"no VmHWM for pid {pid}")


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct`` percentile (0..100) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """p50 / p99 / max of durations given in seconds, as milliseconds rounded to 0.01."""
    ordered = sorted(values_s)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "p50": ms(percentile(ordered, 50)),
        "p99": ms(percentile(ordered, 99)),
        "max": ms(ordered[-1] if ordered else None),
    }


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have spent busy since boot (from /proc/stat).

    Busy is everything but idle and iowait. The difference over a phase, minus the CPU of the
    benchmark's own processes, tells how much other load shared the machine meanwhile.
    """
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLK_TCK


def self_cpu_seconds() -> float:
    """User + system CPU seconds of this process (not its children)."""
    times = os.times()
    return times.user + times.system


def wait_for_idle(max_wait: float, busy_below: float = 0.15) -> float:
    """Wait (up to ``max_wait`` s) until the machine's CPUs are under ``busy_below`` busy.

    Other processes on a shared machine skew every figure; this gives them a chance to end.
    Returns the busy fraction last seen.
    """
    cpus = os.cpu_count() or 1
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy_seconds()
        time.sleep(1.0)
        fraction = (machine_busy_seconds() - before) / cpus
        if fraction < busy_below or time.monotonic() >= deadline:
            return fraction
        log(f"machine is {fraction:.0%} busy; waiting for it to quieten")


def start_profiler(server: Server, path: str, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy the server for ``seconds`` (a flame graph, or collapsed stacks for .txt).

    py-spy takes CPU of its own and pauses the server for each sample (at 100 samples/s, a
    few percent of a core for the jobs benchmark, 20-30% lower throughput for the workflows
    one): figures from a profiled run are lower than from a plain one. ``--nonblocking``
    would cost less but gave inconsistent stacks here.
    """
    cmd = ["py-spy", "record", "--pid", str(server.pid), "--output", path]
    cmd += ["--duration", str(max(1, int(seconds))), "--rate", "100", "--threads"]
    if path.endswith(".txt"):
        cmd += ["--format", "raw"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen[bytes] | None, path: str, seconds: float) -> None:
    """Wait for a ``start_profiler`` run to write its output (kill it if it hangs)."""
    if profiler is None:
        return
    try:
        profiler.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()
    log(f"py-spy profile of the server written to {path}")


def proc_rss_mb(pid: int) -> float:
    """Current resident set size (VmRSS) of a process in MiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark takes: the store, durability, a quiet machine, server flags."""
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--db",
        metavar="URL",
        type=postgres_url,
        help="a postgresql:// URL: each server gets a fresh database in that cluster"
        " (default: a fresh SQLite file)",
    )
    store.add_argument(
        "--postgres",
        action="store_true",
        help="start a throwaway PostgreSQL cluster (bench/postgres.py) for the run and give"
        " each server a fresh database in it",
    )
    parser.add_argument(
        "--sync",
        choices=["full", "normal"],
        default="full",
        help="SQLite's durability (PostgreSQL keeps its own: fsync and synchronous_commit on)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="wait up to this many seconds for other load on the machine to end first",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for `flowyard serve` (repeatable)",
    )


def postgres_url(value: str) -> str:
    """``--db``'s type: a PostgreSQL URL."""
    if not is_postgres(value):
        raise argparse.ArgumentTypeError(f"not a postgresql:// URL: {value!r}")
    return value


@dataclass(frozen=True)
class Databases:
    """A maker of fresh databases (call it), and the throwaway cluster's postmaster if any."""

    make: Callable[[], str | None]
    postmaster: int | None = None

    def __call__(self) -> str | None:
        return self.make()

    def cluster_cpu_seconds(self) -> float | None:
        """CPU seconds the throwaway cluster has used so far (None without one).

        The postmaster's own and its reaped children's (``cutime``, ``cstime``: backends that
        have exited), plus those of its children still running (backends, WAL writer...).
        """
        if self.postmaster is None:
            return None
        total = _proc_times(self.postmaster, children=True)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = stat.read_text()
                if int(text[text.rindex(")") + 2 :].split()[1]) == self.postmaster:
                    total += _proc_times(int(stat.parent.name), children=False)
        return total


def _proc_times(pid: int, *, children: bool) -> float:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0  # it has exited meanwhile (its times are in its parent's cutime)
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _CLK_TCK


@contextlib.contextmanager
def databases(args: argparse.Namespace) -> Iterator[Databases]:
    """A maker of fresh databases for the run of ``add_server_options``'s ``args``.

    Each call gives a database no server has used: None (``spawn_server`` then makes a fresh
    SQLite file), a new database in the cluster of ``--db``, or one in the throwaway cluster
    that ``--postgres`` starts here and stops (and removes) when the block ends.
    """
    if args.postgres:
        with running_cluster() as cluster:
            log(f"PostgreSQL cluster on port {cluster.port} (pid {cluster.pid})")
            yield Databases(cluster.create_database, cluster.pid)
    elif args.db:
        url: str = args.db
        yield Databases(lambda: create_database(url))
    else:
        yield Databases(lambda: None)


def store_name(args: argparse.Namespace) -> str:
    """``"postgresql"`` or ``"sqlite"``: the store a run of ``args`` measures."""
    return "postgresql" if args.postgres or args.db else "sqlite"


def begin(args: argparse.Namespace, bench: str, **config: object) -> tuple[float, dict[str, Any]]:
    """Wait for a quiet machine if asked; the start time and the JSON line's first fields."""
    if args.wait_idle > 0:
        wait_for_idle(args.wait_idle)
    result: dict[str, Any] = {
        "bench": bench,
        "store": store_name(args),
        "sync": args.sync,
        **config,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        **source_info(),
    }
    return time.monotonic(), result
