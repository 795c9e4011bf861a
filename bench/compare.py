"""Side by side: the diamond on Flowyard and on BullMQ (Redis, every write fsynced), one session.

Run ``python -m bench.compare --help``. The same workflow on both, A; B and C after A; D after
B and C, with ``--in-flight`` workflows in flight (a new one starts when one finishes) until
``--workflows`` have run, then ``--low-load-workflows`` one at a time:

- Flowyard: the real server (``bench.common``; SQLite, ``synchronous=FULL`` unless ``--sync``),
  the diamond blueprint and pull workers of ``bench.workflows`` (``--workers`` processes x
  ``--lanes`` long-poll claim loops of ``--claim-count``), trigger threads gated at the number
  in flight. Executions/s, p50/p99 execution latency (trigger sent -> D's ack answered), server
  CPU per 1,000 steps; every execution is then checked as completed.
- BullMQ (``compare_bullmq.mjs``, via ``compare_bullmq.py``): Redis on 127.0.0.1 with
  ``appendonly yes`` and ``appendfsync always``; A's processor adds with FlowProducer the flow
  D <- {B, C}; ``--bullmq-workers`` Workers of ``--bullmq-concurrency`` in one Node process.
  Workflows/s, p50/p99 latency (A added -> D completed), Redis and Node CPU. Skipped, with the
  reason in ``bullmq_skipped``, where redis-server, Node or the npm registry are missing.

Exactly one JSON line goes to stdout, with ``ratio_flowyard_over_bullmq`` (throughput at
``--in-flight``); progress goes to stderr. All traffic stays on 127.0.0.1; every phase is
bounded by ``--duration-limit``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import compare_bullmq, workflows
from bench.common import (
    add_server_options,
    begin,
    create_key,
    databases,
    log,
    running_server,
)

FLOWYARD_FIGURES = {
    "executions_per_s": "executions_per_s",
    "execution_p50_ms": "p50_ms",
    "execution_p99_ms": "p99_ms",
    "server_cpu_s_per_1000_steps": "server_cpu_s_per_1000_steps",
    "workers_cpu_ms_per_step": "workers_cpu_ms_per_step",
    "machine_busy_pct": "machine_busy_pct",
    "errors": "errors",
    "timed_out": "timed_out",
}


def run_flowyard(args: argparse.Namespace) -> dict[str, Any]:
    """The diamond on the real server with ``bench.workflows``' workers; flat ``flowyard_*``."""
    options = {
        "--workers": args.workers,
        "--lanes": args.lanes,
        "--claim-count": args.claim_count,
        "--duration-limit": args.duration_limit,
        "--sync": args.sync,
    }
    phase_args = workflows.parse_args([str(part) for pair in options.items() for part in pair])
    out: dict[str, Any] = {}
    inputs: dict[str, int] = {}
    with (
        databases(args) as fresh_database,
        running_server(sync=args.sync, extra_args=args.server_arg, db=fresh_database()) as server,
    ):
        server.databases = fresh_database
        key = create_key(server.db, "bench")
        blueprint_id = workflows.create_diamond(server.url, key)
        phases = [("flowyard", args.workflows, args.in_flight, 4)]
        if args.low_load_workflows:
            phases.append(("flowyard_low_load", args.low_load_workflows, 1, 1))
        start = 0
        for label, count, in_flight, threads in phases:
            phase_args.max_backlog = in_flight
            phase_args.trigger_threads = min(threads, in_flight)
            figures, triggered = workflows.run_phase(
                server,
                key,
                blueprint_id,
                phase_args,
                label=label,
                executions=count,
                start=start,
                rate=None,
                wait_seconds=1,
                profile=False,
            )
            start += count
            inputs.update({e: n for e, (n, _s, _d) in triggered.executions.items()})
            for name, short in FLOWYARD_FIGURES.items():
                out[f"{label}_{short}"] = figures[f"{label}_{name}"]
        checked = workflows.verify(server, key, inputs, 20, time.monotonic() + args.duration_limit)
        out["flowyard_completed_missing"] = checked["completed_missing"]
        out["flowyard_sample_wrong"] = checked["sample_wrong"]
    return out


def run_bullmq(args: argparse.Namespace) -> dict[str, Any]:
    """The diamond on BullMQ; flat ``bullmq_*`` figures, or ``bullmq_skipped`` with the reason."""
    allow = not args.no_install
    try:
        binary = compare_bullmq.redis_binary(allow)
        modules = compare_bullmq.node_modules(args.node_modules, allow)
        phases = [(args.workflows, args.in_flight)]
        if args.low_load_workflows:
            phases.append((args.low_load_workflows, 1))
        with compare_bullmq.running_redis(binary) as redis:
            figures, versions = compare_bullmq.run_bullmq(
                modules,
                redis,
                phases,
                workers=args.bullmq_workers,
                concurrency=args.bullmq_concurrency,
                time_limit=args.duration_limit,
            )
            versions["redis"] = redis.version
    except compare_bullmq.Unavailable as exc:
        log(f"BullMQ skipped: {exc}")
        return {"bullmq_skipped": str(exc)}
    except RuntimeError as exc:
        log(f"BullMQ failed: {exc}")
        return {"bullmq_skipped": None, "bullmq_error": str(exc)}
    main = figures[0]
    steps = main["finished"] * compare_bullmq.STEPS_PER_WORKFLOW
    out: dict[str, Any] = {
        "bullmq_skipped": None,
        # JSON from Node: a round figure comes as an integer (341, not 341.0)
        "bullmq_workflows_per_s": float(main["workflows_per_s"]),
        "bullmq_p50_ms": float(main["p50_ms"]),
        "bullmq_p99_ms": float(main["p99_ms"]),
        "bullmq_redis_cpu_s_per_1000_steps": (
            round(main["redis_cpu_s"] / steps * 1000, 3) if steps else None
        ),
        "bullmq_node_cpu_s_per_1000_steps": (
            round(main["node_cpu_s"] / steps * 1000, 3) if steps else None
        ),
        "bullmq_redis_cpu_s": main["redis_cpu_s"],
        "bullmq_node_cpu_s": main["node_cpu_s"],
        "bullmq_machine_busy_pct": main["machine_busy_pct"],
        "bullmq_finished": main["finished"],
        "bullmq_wrong": sum(f["wrong"] for f in figures),
        "bullmq_errors": sum(f["add_errors"] for f in figures),
        "bullmq_timed_out": any(f["timed_out"] for f in figures),
        "bullmq_versions": versions,
    }
    if len(figures) > 1:
        low = figures[1]
        out["bullmq_low_load_workflows_per_s"] = float(low["workflows_per_s"])
        out["bullmq_low_load_p50_ms"] = float(low["p50_ms"])
        out["bullmq_low_load_p99_ms"] = float(low["p99_ms"])
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workflows", type=int, default=5000, help="workflows on each side")
    parser.add_argument("--in-flight", type=int, default=64, help="workflows in flight")
    parser.add_argument(
        "--low-load-workflows",
        type=int,
        default=200,
        help="then this many workflows one at a time, for the latency at low load (0: none)",
    )
    parser.add_argument("--skip-flowyard", action="store_true", help="BullMQ only")
    parser.add_argument("--skip-bullmq", action="store_true", help="Flowyard only")
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="install nothing (no apt-get, no npm): skip BullMQ unless all it needs is here",
    )
    parser.add_argument(
        "--node-modules",
        type=Path,
        default=compare_bullmq.CACHE,
        help="where bullmq and ioredis are (installed there from npm when missing)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Flowyard worker processes")
    parser.add_argument("--lanes", type=int, default=4, help="claim loops per worker process")
    parser.add_argument("--claim-count", type=int, default=10, help="jobs per claim")
    parser.add_argument("--bullmq-workers", type=int, default=8, help="BullMQ Workers")
    parser.add_argument(
        "--bullmq-concurrency", type=int, default=10, help="jobs each BullMQ Worker runs at once"
    )
    parser.add_argument(
        "--duration-limit", type=float, default=120.0, help="seconds each phase may take"
    )
    add_server_options(parser)
    args = parser.parse_args(argv)
    if args.workflows < 1 or args.in_flight < 1 or args.low_load_workflows < 0:
        parser.error("--workflows and --in-flight must be >= 1, --low-load-workflows >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, result = begin(
        args,
        "compare",
        workflows=args.workflows,
        in_flight=args.in_flight,
        low_load_workflows=args.low_load_workflows,
    )
    if not args.skip_flowyard:
        result.update(run_flowyard(args))
    if args.skip_bullmq:
        result["bullmq_skipped"] = "--skip-bullmq"
    else:
        result.update(run_bullmq(args))
    ours, theirs = result.get("flowyard_executions_per_s"), result.get("bullmq_workflows_per_s")
    result["ratio_flowyard_over_bullmq"] = round(ours / theirs, 2) if ours and theirs else None
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    failed = any(
        result.get(name)
        for name in (
            "flowyard_errors",
            "flowyard_timed_out",
            "flowyard_completed_missing",
            "flowyard_sample_wrong",
            "flowyard_low_load_errors",
            "flowyard_low_load_timed_out",
            "bullmq_error",
            "bullmq_wrong",
            "bullmq_errors",
            "bullmq_timed_out",
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
