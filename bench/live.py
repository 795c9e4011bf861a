"""Live-execution benchmark: server memory per live execution, and recovery after ``kill -9``.

Run ``python -m bench.live --help``. Against one real server process:

1. A blueprint with one pull step on a queue nobody claims, so every execution it starts stays
   live (``running``, its job pending). ``--warmup`` executions are triggered first, then the
   server's RSS (``VmRSS``) is read; then ``--executions`` more are triggered
   (``--trigger-threads`` concurrent triggers, each thread with one keep-alive connection), the
   RSS is read again. Reported: bytes of RSS per live execution = (after - before) /
   ``--executions``.
2. The server is killed with SIGKILL and started again on the same database file. Reported:
   seconds from the restart (process spawned) until ``/readyz`` answers 200, and until a claim
   on the queue (``wait_seconds`` 0, polled every 10 ms from the start) returns a job; the
   pending depth of the queue after the restart (every execution's job must be back).

Exactly one JSON line goes to stdout; progress goes to stderr. All traffic goes to 127.0.0.1
and every phase is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any

import httpx
import orjson

from bench.common import (
    Server,
    add_server_options,
    begin,
    create_key,
    databases,
    log,
    machine_busy_seconds,
    proc_rss_mb,
    self_cpu_seconds,
    spawn_server,
    start_server,
    stop_server,
    summary_ms,
)
from bench.db_reads import fetch_one, is_postgres
from bench.workers import Poster, auth_headers, trigger_executions

QUEUE = "nobody"


def queue_depth(server: Server, key: str) -> int | None:
    """Pending jobs in ``QUEUE`` from ``GET /infra/queues`` (None if not listed)."""
    with httpx.Client(timeout=30.0, headers=auth_headers(key)) as client:
        cursor: str | None = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            response = client.get(f"{server.url}/infra/queues", params=params)
            response.raise_for_status()
            page = response.json()
            for item in page["queues"]:
                if item["name"] == QUEUE:
                    return int(item["depth"])
            cursor = page.get("next_cursor")
            if not cursor:
                return None


def settle_rss(server: Server, seconds: float = 2.0) -> float:
    """The server's RSS in MiB after ``seconds`` of quiet (lets in-flight work finish)."""
    time.sleep(seconds)
    return proc_rss_mb(server.pid)


def restart(
    server: Server, key: str, args: argparse.Namespace, live: int
) -> tuple[Server, dict[str, Any]]:
    """SIGKILL the server, start it on the same database; time /readyz and the first claim."""
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait()
    log(f"server pid {server.pid} killed with SIGKILL (exit {server.proc.returncode})")
    began = time.monotonic()
    new = spawn_server(sync=args.sync, db=server.db, workdir=server.workdir)
    server.workdir = None  # the new Server object removes it at the end
    deadline = began + args.restart_timeout
    times: dict[str, float] = {}
    claimed: list[Any] = []
    stop = threading.Event()

    def poll_ready() -> None:
        with httpx.Client(timeout=5.0) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    status = client.get(f"{new.url}/readyz").status_code
                except httpx.HTTPError:
                    status = 0
                now = time.monotonic()
                if status:
                    times.setdefault("listening", now)
                if status == 200:
                    times["ready"] = now
                    return
                time.sleep(0.01)

    def poll_claim() -> None:
        body = orjson.dumps({"queue": QUEUE, "count": 1, "wait_seconds": 0})
        with Poster(new.url, auth_headers(key), "raw", 30.0) as post:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    status, content = post("/infra/jobs/claim", body)
                except httpx.HTTPError:
                    status, content = 0, b""
                if status == 200:
                    jobs = orjson.loads(content)
                    if jobs:
                        times["claim"] = time.monotonic()
                        claimed.extend(jobs)
                        return
                time.sleep(0.01)

    threads = [threading.Thread(target=f, daemon=True) for f in (poll_ready, poll_claim)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 10)
    stop.set()
    if new.proc.poll() is not None:
        raise RuntimeError(f"restarted server exited:\n{new.log_tail()}")

    def since(name: str) -> float | None:
        return round(times[name] - began, 3) if name in times else None

    figures: dict[str, Any] = {
        "restart_listening_s": since("listening"),
        "restart_ready_s": since("ready"),
        "restart_first_claim_s": since("claim"),
        "restart_timed_out": "ready" not in times or "claim" not in times,
    }
    log(
        f"restart: listening {figures['restart_listening_s']} s, ready "
        f"{figures['restart_ready_s']} s, first claim {figures['restart_first_claim_s']} s"
    )
    if "ready" in times:
        rss = settle_rss(new, 1.0)
        figures["restart_rss_mb"] = round(rss, 1)
        figures["restart_peak_rss_mb"] = round(new.peak_rss_mb(), 1)
        idle = args.idle_rss_mb
        figures["restart_rss_bytes_per_live_execution"] = round((rss - idle) * 2**20 / live)
        figures["restart_queue_depth"] = queue_depth(new, key)
        figures["restart_server_cpu_s"] = round(new.cpu_seconds(), 2)
    return new, figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--executions", type=int, default=100_000, help="live executions measured")
    parser.add_argument(
        "--warmup", type=int, default=1000, help="executions triggered before the first RSS"
    )
    parser.add_argument("--trigger-threads", type=int, default=16, help="concurrent triggers")
    add_server_options(parser)
    parser.add_argument(
        "--duration-limit", type=float, default=300.0, help="seconds the triggering may take"
    )
    parser.add_argument(
        "--restart-timeout", type=float, default=120.0, help="seconds the restart may take"
    )
    args = parser.parse_args(argv)
    if args.executions < 1 or args.warmup < 0 or args.trigger_threads < 1:
        parser.error("--executions and --trigger-threads must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with databases(args) as fresh_database:
        return run(args, fresh_database())


def database_mb(db: str) -> float:
    """The database's size on disk in MiB: the SQLite file with its WAL, or PostgreSQL's own."""
    if is_postgres(db):
        (size,) = fetch_one(db, "SELECT pg_database_size(current_database())")
        return round(int(size) / 2**20, 1)
    files = [db + suffix for suffix in ("", "-wal", "-shm") if os.path.exists(db + suffix)]
    return round(sum(os.path.getsize(path) for path in files) / 2**20, 1)


def run(args: argparse.Namespace, db: str | None) -> int:
    """The benchmark on a fresh server (on ``db``: see ``bench.common.spawn_server``)."""
    started, result = begin(
        args,
        "live",
        executions=args.executions,
        warmup=args.warmup,
        trigger_threads=args.trigger_threads,
    )
    server = start_server(sync=args.sync, extra_args=args.server_arg, db=db)
    try:
        key = create_key(server.db, "bench")
        blueprint = {
            "name": "bench-live",
            "steps": [
                {
                    "id": "wait",
                    "job_trigger": {"trigger": {"type": "pull", "queue": QUEUE}},
                    "payload_template": {"n": "{{input.n}}"},
                }
            ],
        }
        with Poster(server.url, auth_headers(key), "raw", 30.0) as post:
            status, content = post("/infra/workflows/blueprints", orjson.dumps(blueprint))
        if status != 200:
            raise RuntimeError(f"blueprint create {status}: {content[:300]!r}")
        blueprint_id = orjson.loads(content)["id"]
        args.idle_rss_mb = proc_rss_mb(server.pid)
        result["server_rss_idle_mb"] = round(args.idle_rss_mb, 1)
        deadline = time.monotonic() + args.duration_limit
        warm = trigger_executions(
            server.url, key, blueprint_id, args.warmup, args.trigger_threads, deadline
        )
        rss_before = settle_rss(server)
        log(f"warm-up: {len(warm.executions)} executions; server RSS {rss_before:.1f} MiB")

        last = [time.monotonic()]

        def progress(done: int) -> None:
            if time.monotonic() - last[0] > 10:
                last[0] = time.monotonic()
                log(f"triggered {done} of {args.executions}, RSS {proc_rss_mb(server.pid):.1f} MiB")

        cpu_before = server.cpu_seconds()
        gen_before = self_cpu_seconds()
        busy_before = machine_busy_seconds()
        wall_before = time.monotonic()
        live = trigger_executions(
            server.url,
            key,
            blueprint_id,
            args.executions,
            args.trigger_threads,
            deadline,
            start=args.warmup,
            progress=progress,
        )
        wall = time.monotonic() - wall_before
        server_cpu = server.cpu_seconds() - cpu_before
        gen_cpu = self_cpu_seconds() - gen_before
        busy = machine_busy_seconds() - busy_before
        rss_after = settle_rss(server)
        count = len(live.executions)
        total_live = count + len(warm.executions)
        depth = queue_depth(server, key)
        rtt = summary_ms([d - s for _n, s, d in live.executions.values()])
        per_execution = (rss_after - rss_before) * 1024 * 1024 / count if count else None
        result.update(
            {
                "executions_triggered": count,
                "live_executions": total_live,
                "trigger_timed_out": count < args.executions,
                "trigger_errors": live.errors + warm.errors,
                "trigger_s": round(wall, 1),
                "triggers_per_s": round(count / wall, 1),
                "trigger_request_p50_ms": rtt["p50"],
                "trigger_request_p99_ms": rtt["p99"],
                "server_cpu_ms_per_trigger": round(server_cpu / count * 1000, 3) if count else None,
                "generator_cpu_s": round(gen_cpu, 2),
                "other_cpu_s": round(max(0.0, busy - server_cpu - gen_cpu), 2),
                "queue_depth": depth,
                "server_rss_before_mb": round(rss_before, 1),
                "server_rss_after_mb": round(rss_after, 1),
                "rss_bytes_per_live_execution": round(per_execution) if per_execution else None,
                "server_peak_rss_mb": round(server.peak_rss_mb(), 1),
                "db_mb": database_mb(server.db),
            }
        )
        log(
            f"{count} live executions in {wall:.1f}s ({result['triggers_per_s']}/s); RSS "
            f"{rss_before:.1f} -> {rss_after:.1f} MiB = {result['rss_bytes_per_live_execution']}"
            f" bytes per live execution; queue depth {depth}"
        )
        server, figures = restart(server, key, args, total_live)
        result.update(figures)
    finally:
        result["server_exit_code"] = stop_server(server)
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    expected = result.get("live_executions", 0) - 1  # the first claim took one
    failed = (
        result.get("trigger_timed_out")
        or result.get("trigger_errors")
        or result.get("restart_timed_out")
        or result.get("restart_queue_depth") != expected
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
