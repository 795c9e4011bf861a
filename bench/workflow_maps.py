"""The ``--shape map`` of ``python -m bench.workflows``: for_each items against plain steps.

Two phases on one real server, with the same pull workers (``--workers`` processes of
``--lanes`` claim loops, acking each job with ``{"v": <payload x>}``):

1. steps: executions of a blueprint of ``--fan`` independent plain job steps, as many
   executions as it takes to run ``--map-executions`` x ``--items`` jobs;
2. map: ``--map-executions`` executions of one for_each step over ``--items`` items
   (``max_concurrency`` ``--map-concurrency``).

Reported per phase: jobs/s (first trigger sent -> every execution completed) and server CPU
per job; ``map_cost_ratio`` is the map's CPU per item over the plain steps' CPU per step.
Every map's output is read back and must be its items' results in item order.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import orjson

from bench.common import (
    Server,
    begin,
    create_key,
    databases,
    log,
    running_server,
)
from bench.workers import TRANSPORT_ERRORS, Poster, WorkerPool, auth_headers, run_lanes

QUEUE = "flow-map"


@dataclass(frozen=True)
class MapWorkerConfig:
    """What one worker process does (picklable)."""

    url: str
    key: str
    lanes: int
    claim_count: int
    client: str


def map_worker_main(
    config: MapWorkerConfig, counters: Any, ready: Any, stop: MpEvent, results: Any
) -> None:
    """Claim from ``QUEUE`` and ack each job with ``{"v": payload["x"]}`` until ``stop``."""
    stats = {"acked": 0, "errors": 0}
    lock = threading.Lock()
    claim_body = orjson.dumps({"queue": QUEUE, "count": config.claim_count, "wait_seconds": 1})

    def lane(post: Poster) -> None:
        with post:
            while not stop.is_set():
                try:
                    status, content = post("/infra/jobs/claim", claim_body)
                except TRANSPORT_ERRORS:
                    status, content = 0, b""
                if status != 200:
                    with lock:
                        stats["errors"] += 1
                    time.sleep(0.05)
                    continue
                for job in orjson.loads(content):
                    body = orjson.dumps(
                        {
                            "status": "completed",
                            "result": {"v": job["payload"]["x"]},
                            "claim_token": job["claim_token"],
                        }
                    )
                    try:
                        status, _ = post(f"/infra/jobs/{job['id']}/ack", body)
                    except TRANSPORT_ERRORS:
                        status = 0
                    with lock:
                        stats["acked" if status == 200 else "errors"] += 1
                    if status == 200:
                        with counters.get_lock():
                            counters[0] += 1

    cpu_s = run_lanes(
        lane,
        lambda: Poster(config.url, auth_headers(config.key), config.client, 31.0),
        config.lanes,
        ready,
    )
    results.put({"cpu_s": cpu_s, **stats})


def _post(post: Poster, path: str, body: Any) -> Any:
    status, content = post(path, orjson.dumps(body))
    if status != 200:
        raise RuntimeError(f"{path}: {status} {content[:300]!r}")
    return orjson.loads(content)


def blueprints(post: Poster, args: argparse.Namespace) -> tuple[str, str]:
    """The plain fan-out blueprint and the map blueprint; their ids."""
    job = {"trigger": {"type": "pull", "queue": QUEUE}}
    fan = {
        "name": "bench-steps",
        "steps": [
            {"id": f"s{i}", "job_trigger": job, "payload_template": {"x": "{{input.n}}"}}
            for i in range(args.fan)
        ],
    }
    mapped = {
        "name": "bench-map",
        "steps": [
            {
                "id": "m",
                "job_trigger": job,
                "for_each": "{{input.xs}}",
                "max_concurrency": args.map_concurrency,
                "payload_template": {"x": "{{item}}"},
            }
        ],
    }
    plain = _post(post, "/infra/workflows/blueprints", fan)["id"]
    return plain, _post(post, "/infra/workflows/blueprints", mapped)["id"]


def run_phase(
    server: Server,
    key: str,
    args: argparse.Namespace,
    label: str,
    blueprint_id: str,
    inputs: list[dict[str, Any]],
    jobs: int,
) -> tuple[dict[str, Any], list[str]]:
    """Trigger one execution per input with workers running; wait for ``jobs`` acks and
    every execution completed; the figures and the execution ids."""
    config = MapWorkerConfig(server.url, key, args.lanes, args.claim_count, args.client)
    pool = WorkerPool(map_worker_main, [config] * args.workers)
    pool.start()
    ids: list[str] = []
    deadline = time.monotonic() + args.duration_limit
    with Poster(server.url, auth_headers(key), "raw", 60.0) as post:
        cpu_before = server.cpu_seconds()
        started = time.monotonic()
        try:
            for input_data in inputs:
                path = f"/infra/workflows/blueprints/{blueprint_id}/trigger"
                ids.append(_post(post, path, {"input_data": input_data})["execution_id"])
            while pool.acked_count() < jobs and time.monotonic() < deadline:
                time.sleep(0.005)
            pending = list(ids)
            while pending and time.monotonic() < deadline:
                status, content = post.get(f"/infra/workflows/executions/{pending[0]}")
                if status == 200 and orjson.loads(content)["status"] == "completed":
                    pending.pop(0)
                else:
                    time.sleep(0.01)
            elapsed = time.monotonic() - started
            cpu = server.cpu_seconds() - cpu_before
        finally:
            results = pool.finish(timeout=10)
    acked = sum(r["acked"] for r in results)
    p = label + "_"
    figures = {
        p + "executions": len(ids),
        p + "jobs": acked,
        p + "timed_out": bool(pending),
        p + "elapsed_s": round(elapsed, 3),
        p + "jobs_per_s": round(acked / elapsed, 1),
        p + "server_cpu_s": round(cpu, 3),
        p + "server_cpu_ms_per_job": round(cpu / acked * 1000, 3) if acked else None,
        p + "errors": sum(r["errors"] for r in results),
    }
    log(
        f"{label}: {acked} jobs in {elapsed:.2f}s = {figures[p + 'jobs_per_s']} jobs/s,"
        f" server CPU {figures[p + 'server_cpu_ms_per_job']} ms/job"
    )
    return figures, ids


def verify_maps(server: Server, key: str, ids: list[str], items: int) -> int:
    """How many map executions do not have every item's result, in item order."""
    wrong = 0
    expected = [{"v": i} for i in range(items)]
    with Poster(server.url, auth_headers(key), "raw", 60.0) as post:
        for execution_id in ids:
            status, content = post.get(f"/infra/workflows/executions/{execution_id}")
            state = orjson.loads(content) if status == 200 else {}
            wrong += state.get("result", {}).get("m") != expected
    return wrong


def run_map_shape(args: argparse.Namespace) -> int:
    """``--shape map``: plain steps, then maps, on one server; one JSON line."""
    started, result = begin(
        args,
        "workflows",
        shape="map",
        items=args.items,
        map_executions=args.map_executions,
        map_concurrency=args.map_concurrency,
        fan=args.fan,
        workers=args.workers,
        lanes=args.lanes,
        claim_count=args.claim_count,
    )
    jobs = args.items * args.map_executions
    with (
        databases(args) as fresh_database,
        running_server(sync=args.sync, extra_args=args.server_arg, db=fresh_database()) as server,
    ):
        server.databases = fresh_database
        key = create_key(server.db, "bench")
        with Poster(server.url, auth_headers(key), "raw", 60.0) as post:
            plain_id, map_id = blueprints(post, args)
        plain_runs = -(-jobs // args.fan)
        figures, _ = run_phase(
            server,
            key,
            args,
            "steps",
            plain_id,
            [{"n": n} for n in range(plain_runs)],
            plain_runs * args.fan,
        )
        result.update(figures)
        xs = {"xs": list(range(args.items))}
        figures, ids = run_phase(server, key, args, "map", map_id, [xs] * args.map_executions, jobs)
        result.update(figures)
        result["map_outputs_wrong"] = verify_maps(server, key, ids, args.items)
        step_cost, item_cost = (
            result["steps_server_cpu_ms_per_job"],
            result["map_server_cpu_ms_per_job"],
        )
        result["map_cost_ratio"] = (
            round(item_cost / step_cost, 2) if step_cost and item_cost else None
        )
        result["server_peak_rss_mb"] = round(server.peak_rss_mb(), 1)
    result["server_exit_code"] = server.exit_code
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    failed = any(
        result.get(name)
        for name in ("steps_timed_out", "map_timed_out", "map_outputs_wrong", "map_errors")
    )
    return 1 if failed else 0


def add_map_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``--shape map``."""
    parser.add_argument("--items", type=int, default=100, help="map: items per execution (<= 1000)")
    parser.add_argument("--map-executions", type=int, default=10, help="map: executions")
    parser.add_argument(
        "--map-concurrency", type=int, default=100, help="map: max_concurrency (1..100)"
    )
    parser.add_argument("--fan", type=int, default=10, help="map: plain steps per execution")
