"""The BullMQ side of ``bench.compare``: Redis, the npm install, and ``compare_bullmq.mjs``.

Redis runs as a child process on 127.0.0.1 (a free port, ``dir`` in a temporary folder,
``appendonly yes``, ``appendfsync always``, no RDB snapshots) and is stopped at the end.
bullmq and ioredis come from npm into a temporary folder, which is then kept as the cache
``~/.cache/flowyard-bench/bullmq`` so that later runs start at once. Where something is
missing and cannot be had, :class:`Unavailable` says why, and the caller skips BullMQ.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.common import HOST, free_port, log, machine_busy_seconds, proc_cpu_seconds

NODE_SCRIPT = Path(__file__).with_name("compare_bullmq.mjs")
CACHE = Path.home() / ".cache" / "flowyard-bench" / "bullmq"
PACKAGES = ("bullmq@6", "ioredis@5")
STEPS_PER_WORKFLOW = 4


class Unavailable(Exception):
    """BullMQ cannot run here; the message says why (it becomes ``bullmq_skipped``)."""


def redis_binary(allow_install: bool) -> str:
    """``redis-server``'s path; installed with apt-get when missing, root and allowed."""
    found = shutil.which("redis-server")
    if found:
        return found
    if not allow_install:
        raise Unavailable("redis-server is not installed (and --no-install forbids installing it)")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(
            "redis-server is not installed and cannot be (apt-get needs root):"
            " install Debian's redis-server package"
        )
    log("redis-server missing: apt-get install -y redis-server (its service kept from starting)")
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")  # 101: no service starts
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "redis-server"],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or [""])[-1]
                raise Unavailable(f"apt-get could not install redis-server: {tail}")
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"apt-get could not install redis-server: {exc}") from exc
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    found = shutil.which("redis-server")
    if not found:
        raise Unavailable("apt-get installed redis-server but it is not on PATH")
    return found


def node_modules(cache: Path, allow_install: bool) -> Path:
    """A folder whose node_modules holds bullmq and ioredis: the cache, filled from npm once."""
    if (cache / "node_modules" / "bullmq" / "package.json").is_file():
        return cache
    if not shutil.which("node") or not shutil.which("npm"):
        raise Unavailable("node and npm are needed for the BullMQ side: install Node.js")
    if not allow_install:
        raise Unavailable(f"bullmq is not in {cache} (and --no-install forbids installing it)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="bullmq-", dir=cache.parent))
    cmd = ["npm", "install", "--prefix", str(staging), "--no-audit", "--no-fund", *PACKAGES]
    log(" ".join(cmd))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise Unavailable(f"npm install failed: {exc}") from exc
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        lines = [line for line in done.stderr.splitlines() if "ERR" in line] or [""]
        raise Unavailable(f"npm install failed (is the registry reachable?): {lines[-1].strip()}")
    try:
        staging.rename(cache)
    except OSError:  # the folder exists: another run filled it meanwhile, or something else
        shutil.rmtree(staging, ignore_errors=True)
    if not (cache / "node_modules" / "bullmq" / "package.json").is_file():
        raise Unavailable(f"{cache} exists but holds no bullmq: remove it and run again")
    return cache


@dataclass
class Redis:
    proc: subprocess.Popen[bytes]
    port: int
    version: str

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)


@contextlib.contextmanager
def running_redis(binary: str) -> Iterator[Redis]:
    """Redis on 127.0.0.1 with every write fsynced (AOF, ``appendfsync always``); stopped after."""
    workdir = Path(tempfile.mkdtemp(prefix="flowyard-redis-"))
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", HOST, "--dir", str(workdir)]
    cmd += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    cmd += ["--daemonize", "no", "--logfile", str(workdir / "redis.log")]
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10
    ).stdout.split()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not _pong(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = (workdir / "redis.log").read_text(errors="replace")[-500:]
                raise Unavailable(f"redis-server did not start: {log_text}")
            time.sleep(0.05)
        tag = next((w for w in version if w.startswith("v=")), "v=?")[2:]
        log(f"redis {tag} pid {proc.pid} on {HOST}:{port} (appendfsync always)")
        yield Redis(proc, port, tag)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def run_bullmq(
    modules: Path,
    redis: Redis,
    phases: list[tuple[int, int]],
    *,
    workers: int,
    concurrency: int,
    time_limit: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run ``compare_bullmq.mjs`` for ``phases`` (workflows, in flight); each phase's figures
    (with Redis's CPU over the phase) and the versions it reported."""
    cmd = ["node", str(NODE_SCRIPT), "--modules", str(modules), "--port", str(redis.port)]
    cmd += ["--phases", ",".join(f"{count}:{inflight}" for count, inflight in phases)]
    cmd += ["--workers", str(workers), "--concurrency", str(concurrency)]
    cmd += ["--time-limit", str(time_limit)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    # Bounded: the script ends each phase at its time limit; this is the last resort.
    watchdog = threading.Timer(time_limit * len(phases) + 60, proc.kill)
    watchdog.start()
    figures: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    redis_before = busy_before = wall_before = 0.0
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            event = orjson.loads(raw)
            if event["event"] == "start":
                redis_before = redis.cpu_seconds()
                busy_before, wall_before = machine_busy_seconds(), time.monotonic()
            elif event["event"] == "end":
                event["redis_cpu_s"] = round(redis.cpu_seconds() - redis_before, 2)
                busy = machine_busy_seconds() - busy_before
                wall = (time.monotonic() - wall_before) * (os.cpu_count() or 1)
                event["machine_busy_pct"] = round(100 * busy / wall, 1) if wall else None
                figures.append(event)
                log(
                    f"bullmq: {event['workflows_per_s']} workflows/s at {event['in_flight']} in"
                    f" flight, p50/p99 {event['p50_ms']}/{event['p99_ms']} ms"
                )
            elif event["event"] == "done":
                versions = {k: v for k, v in event.items() if k != "event"}
        code = proc.wait(30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    if code != 0 or len(figures) != len(phases):
        raise RuntimeError(f"compare_bullmq.mjs exited with {code} after {len(figures)} phases")
    return figures, versions
