"""Workflow benchmark: diamond executions with real pull workers; throughput and step hand-off.

Run ``python -m bench.workflows --help``. One real server process, one blueprint, the diamond::

    A --> B --> D        A: {"n": "{{input.n}}"}
      \\-> C -/          B, C: {"a": "{{steps.A.output.v}}", "t_a": <A's ack_sent_at>}
                         D: {"b": "{{steps.B.output.v}}", "c": "{{steps.C.output.v}}", ...}

Every step is a pull job on one queue. ``--workers`` worker processes run ``--lanes`` claim
loops each (``bench.workers.PullLane``: by default one ``POST /infra/jobs/exchange`` per batch,
acking the jobs of the previous one and long-polling for the next; ``--protocol ack``: a
long-poll claim, then one ack per job), each job acked with the result ``{"v": ...,
"ack_sent_at": <wall time>}``; A's v is n+1, B's 2a, C's 3a, D's b+c, so D's output is
5(n+1)). With ``exchange`` a hand-off starts when the upstream ack is sent, since its answer
waits for the claim of the same call.

1. Throughput. The generator (threads in this process) triggers ``--executions`` executions
   while at most ``--max-backlog`` are triggered but not finished (D not acked yet).
   Reported: executions/s and steps/s (first trigger sent -> last D ack received), server CPU
   per 1,000 steps.
2. Hand-off latency. The generator triggers executions paced at ``--rate`` per second
   (default: half the rate phase 1 measured) for ``--latency-seconds``; the workers mostly
   wait in their long-polls. Hand-off = upstream ack response received (worker side) ->
   downstream job's claim response received (worker side), both ``time.time()``: A -> B and
   A -> C, and the later of B/C -> D, matched by execution id and step id.

With ``--nodes N`` (PostgreSQL: ``--postgres`` or ``--db``) the service is N cluster nodes on one
database (``bench.nodes``); the trigger threads and the worker processes are spread over them
round-robin (thread or worker i talks to node i mod N), and the server CPU is the nodes' sum,
with each node's in ``*_node_cpu_s``.

At the end every triggered execution must be listed as ``completed`` and a sample is read back
to check D's output. Exactly one JSON line goes to stdout; progress goes to stderr. All traffic
goes to 127.0.0.1 and every phase is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    Server,
    add_server_options,
    begin,
    create_key,
    databases,
    log,
    machine_busy_seconds,
    running_server,
    self_cpu_seconds,
    start_profiler,
    stop_profiler,
    summary_ms,
)
from bench.nodes import Nodes, add_nodes_option, check_nodes_option, wait_balanced
from bench.workers import (
    CLIENTS,
    PROTOCOLS,
    Poster,
    PullLane,
    Triggered,
    WorkerPool,
    auth_headers,
    run_lanes,
    trigger_executions,
)
from bench.workflow_maps import add_map_options, run_map_shape

QUEUE = "flow"
# (step, upstream steps) for every step that has a hand-off
DOWNSTREAM = (("B", ("A",)), ("C", ("A",)), ("D", ("B", "C")))


def blueprint_body(queue: str) -> dict[str, Any]:
    """The diamond: A; B and C after A; D after B and C; every step a pull job on ``queue``."""

    def step(step_id: str, payload: dict[str, Any], depends_on: list[str]) -> dict[str, Any]:
        return {
            "id": step_id,
            "job_trigger": {"trigger": {"type": "pull", "queue": queue}},
            "payload_template": payload,
            "depends_on": depends_on,
        }

    from_a = {"a": "{{steps.A.output.v}}", "t_a": "{{steps.A.output.ack_sent_at}}"}
    return {
        "name": "bench-diamond",
        "steps": [
            step("A", {"n": "{{input.n}}", "execution": "{{execution.id}}"}, []),
            step("B", from_a, ["A"]),
            step("C", from_a, ["A"]),
            step(
                "D",
                {
                    "b": "{{steps.B.output.v}}",
                    "c": "{{steps.C.output.v}}",
                    "t_b": "{{steps.B.output.ack_sent_at}}",
                    "t_c": "{{steps.C.output.ack_sent_at}}",
                },
                ["B", "C"],
            ),
        ],
    }


# --------------------------------------------------------------------------- worker process


@dataclass(frozen=True)
class FlowWorkerConfig:
    """What one worker process does (picklable: it crosses into a spawned process)."""

    index: int
    url: str
    key: str
    queue: str
    lanes: int  # claim loops (threads), one keep-alive connection each
    claim_count: int
    wait_seconds: int  # long-poll
    client: str = "wire"  # bench.workers.CLIENTS
    visibility_timeout: int = 60
    protocol: str = "exchange"  # bench.workers.PROTOCOLS


# One record per acked step job: execution id, step id, claim request sent, claim response
# received, ack request sent, ack response received, upstream ack_sent_at (latest, from the
# payload; 0.0 for A). All time.time().
Record = tuple[str, str, float, float, float, float, float]


def create_diamond(url: str, key: str) -> str:
    """Create the diamond blueprint (every step a pull job on ``QUEUE``); its id."""
    with Poster(url, auth_headers(key), "wire", 30.0) as post:
        status, content = post("/infra/workflows/blueprints", orjson.dumps(blueprint_body(QUEUE)))
    if status != 200:
        raise RuntimeError(f"blueprint create {status}: {content[:300]!r}")
    return str(orjson.loads(content)["id"])


def step_value(step: str, payload: Any) -> tuple[Any, float]:
    """The step's output ``v`` from its payload, and the upstream ack_sent_at it carried."""
    if step == "A":
        return payload["n"] + 1, 0.0
    if step == "B":
        return payload["a"] * 2, float(payload["t_a"])
    if step == "C":
        return payload["a"] * 3, float(payload["t_a"])
    if step == "D":
        return payload["b"] + payload["c"], max(float(payload["t_b"]), float(payload["t_c"]))
    raise KeyError(step)


def flow_worker_main(
    config: FlowWorkerConfig,
    counters: Any,  # multiprocessing.Array("q", 2): [steps acked, D steps acked]
    ready: Any,  # multiprocessing.Value("i")
    stop: MpEvent,
    results: Any,  # multiprocessing.Queue
) -> None:
    """Entry point of a worker process: ``lanes`` threads claim and ack until ``stop``."""
    records: list[Record] = []
    stats = {"acked": 0, "ack_errors": 0, "claim_errors": 0, "claims": 0, "empty_claims": 0}
    stats["bad_payloads"] = 0
    stats["requests"] = 0
    lock = threading.Lock()
    headers = auth_headers(config.key)

    def count(name: str) -> int:
        with lock:
            stats[name] += 1
            return stats[name]

    def work(job: dict[str, Any], sent: float) -> Any:
        step = str((job.get("workflow") or {}).get("step_id"))
        try:
            value, _ = step_value(step, job.get("payload"))
        except (KeyError, TypeError, ValueError):
            if count("bad_payloads") <= 5:
                log(f"worker {config.index}: bad payload {job.get('payload')!r}")
            value = None
        return {"v": value, "ack_sent_at": sent}

    def acked(job: dict[str, Any], claim_sent: float, got: float, sent: float, done: float) -> None:
        workflow = job.get("workflow") or {}
        step = str(workflow.get("step_id"))
        try:
            _, up_sent = step_value(step, job.get("payload"))
        except (KeyError, TypeError, ValueError):
            up_sent = 0.0
        if config.protocol == "exchange":
            # The answer comes once the claim of the same call is served, later than the
            # ack's commit: hand-offs are measured from the ack's send.
            done = sent
        record = (str(workflow.get("execution_id")), step, claim_sent, got, sent, done, up_sent)
        with lock:
            records.append(record)
            stats["acked"] += 1
        with counters.get_lock():
            counters[0] += 1
            if step == "D":
                counters[1] += 1

    def failed(what: str, status: int, content: bytes) -> None:
        name = "ack_errors" if what == "ack" else "claim_errors"
        if count(name) <= 5:
            log(f"worker {config.index}: {what} {status} {content[:200]!r}")

    def claimed(jobs: list[dict[str, Any]]) -> None:
        with lock:
            stats["claims"] += 1
            stats["empty_claims"] += not jobs

    def lane(post: Poster) -> None:
        with post:
            pull = PullLane(
                post,
                config.queue,
                config.claim_count,
                config.wait_seconds,
                config.visibility_timeout,
                config.protocol,
            )
            try:
                pull.run(stop, work, acked, failed, claimed)
            finally:
                with lock:
                    stats["requests"] += pull.requests

    cpu_s = run_lanes(
        lane,
        lambda: Poster(config.url, headers, config.client, config.wait_seconds + 30.0),
        config.lanes,
        ready,
    )
    results.put(
        {
            "index": config.index,
            "records": records,
            "cpu_s": cpu_s,
            **stats,
        }
    )


# --------------------------------------------------------------------------- phases


def handoffs(records: list[Record]) -> dict[str, list[float]]:
    """Hand-off samples (seconds) from every worker's records, matched by (execution, step)."""
    acked: dict[tuple[str, str], float] = {}
    claimed: dict[tuple[str, str], tuple[float, float, float]] = {}
    for execution, step, claim_sent, got, _sent, done, up_sent in records:
        acked[execution, step] = done
        claimed[execution, step] = (claim_sent, got, up_sent)
    out: dict[str, list[float]] = {"all": [], "fanout": [], "join": [], "from_sent": []}
    waiting = 0
    for execution in {e for e, _ in claimed}:
        for step, ups in DOWNSTREAM:
            claim = claimed.get((execution, step))
            up_done = [acked.get((execution, u)) for u in ups]
            if claim is None or None in up_done:
                continue
            upstream = max(x for x in up_done if x is not None)
            claim_sent, got, up_sent = claim
            out["all"].append(got - upstream)
            out["fanout" if step != "D" else "join"].append(got - upstream)
            if up_sent:
                out["from_sent"].append(got - up_sent)
            # The claim that returned the job was already waiting when the upstream ack
            # answered (a parked worker), not sent afterwards.
            waiting += claim_sent < upstream
    out["waiting"] = [float(waiting)]
    return out


def run_phase(
    server: Server | Nodes,
    key: str,
    blueprint_id: str,
    args: argparse.Namespace,
    *,
    label: str,
    executions: int,
    start: int,
    rate: float | None,
    wait_seconds: int,
    profile: bool,
) -> tuple[dict[str, Any], Triggered]:
    """Start the workers, trigger ``executions`` executions, wait for every D ack; figures."""
    configs = [
        FlowWorkerConfig(
            index=i,
            url=server.urls[i % len(server.urls)],
            key=key,
            queue=QUEUE,
            lanes=args.lanes,
            claim_count=args.claim_count,
            wait_seconds=wait_seconds,
            client=args.client,
            protocol=args.protocol,
        )
        for i in range(args.workers)
    ]
    pool = WorkerPool(flow_worker_main, configs, counters=2)
    pool.start()
    pace = f"{rate:.1f}/s" if rate else f"backlog <= {args.max_backlog}"
    log(
        f"{label}: {executions} executions ({pace}), {args.workers} workers x {args.lanes} lanes,"
        f" claim {args.claim_count}, wait {wait_seconds}s"
    )
    profiler = None
    if profile and isinstance(server, Server):
        profiler = start_profiler(server, args.py_spy, args.py_spy_seconds)
    nodes_before = server.cpu_by_node()
    cpu_before = sum(nodes_before)
    cluster_before = server.cluster_cpu_seconds()
    gen_before = self_cpu_seconds()
    busy_before = machine_busy_seconds()
    wall_before = time.monotonic()
    deadline = wall_before + args.duration_limit
    last_report = [time.monotonic()]

    def progress(triggered: int) -> None:
        if time.monotonic() - last_report[0] > 5:
            last_report[0] = time.monotonic()
            log(f"{label}: triggered {triggered}, finished {pool.count(1)}")

    def gate(issued: int) -> bool:
        return bool(issued - pool.count(1) < args.max_backlog)

    try:
        triggered = trigger_executions(
            server.urls,
            key,
            blueprint_id,
            executions,
            args.trigger_threads,
            deadline,
            start=start,
            rate=rate,
            client=args.client,
            gate=None if rate else gate,
            progress=progress,
        )
        took = time.monotonic() - wall_before
        log(f"{label}: triggered {len(triggered.executions)} in {took:.1f}s")
        while pool.count(1) < len(triggered.executions) and time.monotonic() < deadline:
            time.sleep(0.01)
            progress(len(triggered.executions))
        timed_out = pool.count(1) < executions
        nodes_after = server.cpu_by_node()
        cpu_after = sum(nodes_after)
        cluster_after = server.cluster_cpu_seconds() or 0.0
        gen_cpu = self_cpu_seconds() - gen_before
        busy = machine_busy_seconds() - busy_before
        phase_wall = time.monotonic() - wall_before
        results = pool.finish(timeout=wait_seconds + 30)
    finally:
        pool.terminate()
        if profiler is not None:
            stop_profiler(profiler, args.py_spy, args.py_spy_seconds)

    records = [rec for r in results for rec in r["records"]]
    steps = len(records)
    finished = sum(1 for rec in records if rec[1] == "D")
    last_ack = max((rec[5] for rec in records), default=0.0)
    first = triggered.first_send
    elapsed = last_ack - first if steps and last_ack > first else float("nan")
    hand = handoffs(records)
    total, fanout, join, from_sent = (
        summary_ms(hand["all"]),
        summary_ms(hand["fanout"]),
        summary_ms(hand["join"]),
        summary_ms(hand["from_sent"]),
    )
    trigger_rtt = summary_ms([done - sent for _n, sent, done in triggered.executions.values()])
    end_at = {rec[0]: rec[5] for rec in records if rec[1] == "D"}
    end_to_end = summary_ms(
        [end_at[e] - sent for e, (_n, sent, _d) in triggered.executions.items() if e in end_at]
    )
    server_cpu = cpu_after - cpu_before
    workers_cpu = sum(r["cpu_s"] for r in results)
    # The throwaway cluster's CPU (--postgres) is the store's work: counted with the server's.
    cluster_cpu = 0.0 if cluster_before is None else cluster_after - cluster_before
    own_cpu = server_cpu + cluster_cpu + workers_cpu + gen_cpu
    p = label + "_"
    figures: dict[str, Any] = {
        p + "executions_triggered": len(triggered.executions),
        p + "executions_finished": finished,
        p + "steps_acked": steps,
        p + "timed_out": timed_out,
        p + "elapsed_s": round(elapsed, 3),
        p + "executions_per_s": round(finished / elapsed, 1) if elapsed == elapsed else None,
        p + "steps_per_s": round(steps / elapsed, 1) if elapsed == elapsed else None,
        p + "handoff_samples": len(hand["all"]),
        p + "handoff_p50_ms": total["p50"],
        p + "handoff_p99_ms": total["p99"],
        p + "handoff_max_ms": total["max"],
        p + "handoff_negative": sum(1 for x in hand["all"] if x < 0),
        p + "handoff_waiting_pct": (
            round(100 * hand["waiting"][0] / len(hand["all"]), 1) if hand["all"] else None
        ),
        p + "handoff_fanout_p50_ms": fanout["p50"],
        p + "handoff_fanout_p99_ms": fanout["p99"],
        p + "handoff_join_p50_ms": join["p50"],
        p + "handoff_join_p99_ms": join["p99"],
        p + "handoff_from_ack_sent_p50_ms": from_sent["p50"],
        p + "handoff_from_ack_sent_p99_ms": from_sent["p99"],
        p + "execution_p50_ms": end_to_end["p50"],
        p + "execution_p99_ms": end_to_end["p99"],
        p + "trigger_request_p50_ms": trigger_rtt["p50"],
        p + "trigger_request_p99_ms": trigger_rtt["p99"],
        p + "server_cpu_s": round(server_cpu, 2),
        p + "server_cpu_s_per_1000_steps": round(server_cpu / steps * 1000, 3) if steps else None,
        p + "node_cpu_s": [round(b - a, 2) for a, b in zip(nodes_before, nodes_after, strict=True)],
        p + "cluster_cpu_s": round(cluster_cpu, 2) if cluster_before is not None else None,
        p + "cluster_cpu_s_per_1000_steps": (
            round(cluster_cpu / steps * 1000, 3) if steps and cluster_before is not None else None
        ),
        p + "workers_cpu_ms_per_step": round(workers_cpu / steps * 1000, 3) if steps else None,
        p + "generator_cpu_s": round(gen_cpu, 2),
        # The rate if server (and cluster) + workers + generator had every CPU of this machine to
        # themselves (an upper bound, not a measurement).
        p + "cpu_bound_executions_per_s": (
            round(finished * (os.cpu_count() or 1) / own_cpu) if own_cpu else None
        ),
        p + "other_cpu_s": round(max(0.0, busy - own_cpu), 2),
        p + "machine_busy_pct": round(100 * busy / (phase_wall * (os.cpu_count() or 1)), 1),
        p + "claims": sum(r["claims"] for r in results),
        # Worker requests (claims, acks, exchanges) plus the trigger, per finished execution.
        p + "requests_per_execution": (
            round((sum(r["requests"] for r in results) + finished) / finished, 2)
            if finished
            else None
        ),
        p + "empty_claims": sum(r["empty_claims"] for r in results),
        p + "errors": triggered.errors
        + sum(r["ack_errors"] + r["claim_errors"] + r["bad_payloads"] for r in results),
    }
    if rate:
        figures[p + "rate_target"] = round(rate, 1)
        figures[p + "triggers_late_10ms"] = sum(1 for x in triggered.late_s if x > 0.01)
    log(
        f"{label}: {figures[p + 'executions_per_s']} executions/s, "
        f"{figures[p + 'steps_per_s']} steps/s, hand-off p50/p99 {total['p50']}/{total['p99']} ms"
        f" ({figures[p + 'handoff_waiting_pct']}% by a waiting claim), server CPU "
        f"{figures[p + 'server_cpu_s_per_1000_steps']} s/1000 steps"
    )
    return figures, triggered


# --------------------------------------------------------------------------- verification


def verify(
    server: Server | Nodes, key: str, triggered: dict[str, int], sample: int, deadline: float
) -> dict[str, Any]:
    """Every triggered execution is listed as completed; a sample has D's output 5(n+1)."""
    listed: set[str] = set()
    pages = 0
    with Poster(server.url, auth_headers(key), "raw", 60.0) as client:
        cursor: str | None = None
        while time.monotonic() < deadline:
            path = "/infra/workflows/executions?status=completed&limit=100"
            if cursor:
                path += f"&cursor={cursor}"
            status, content = client.get(path)
            if status != 200:
                log(f"list executions {status}: {content[:200]!r}")
                break
            page = orjson.loads(content)
            pages += 1
            listed.update(e["id"] for e in page["executions"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        missing = [e for e in triggered if e not in listed]
        wrong: list[str] = []
        picks = random.sample(sorted(triggered), min(sample, len(triggered)))
        for execution_id in picks:
            status, content = client.get(f"/infra/workflows/executions/{execution_id}")
            body = orjson.loads(content) if status == 200 else {}
            n = triggered[execution_id]
            steps = {s["step_id"]: s["status"] for s in body.get("steps", [])}
            output = (body.get("result") or {}).get("D") or {}
            good = (
                body.get("status") == "completed"
                and steps == dict.fromkeys("ABCD", "completed")
                and output.get("v") == 5 * (n + 1)
            )
            if not good:
                wrong.append(execution_id)
                if len(wrong) <= 3:
                    log(f"execution {execution_id} (n={n}) not as expected: {content[:300]!r}")
    log(
        f"verify: {len(listed)} completed listed in {pages} pages, {len(missing)} of "
        f"{len(triggered)} triggered missing; sample {len(picks)}: {len(wrong)} wrong"
    )
    return {
        "completed_listed": len(listed),
        "completed_missing": len(missing),
        "sample_checked": len(picks),
        "sample_wrong": len(wrong),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workflows", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--shape",
        choices=("diamond", "map"),
        default="diamond",
        help="diamond executions, or for_each items against plain steps (bench/workflow_maps.py)",
    )
    add_map_options(parser)
    parser.add_argument("--executions", type=int, default=5000, help="phase 1 executions")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="phase 2 executions/s (default: half of phase 1's measured executions/s)",
    )
    add_server_options(parser)
    add_nodes_option(parser)
    parser.add_argument(
        "--duration-limit",
        type=float,
        default=120.0,
        help="seconds each phase may take before it is cut short (reported as timed_out)",
    )
    parser.add_argument("--lanes", type=int, default=16, help="claim loops (threads) per worker")
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="wire",
        help="HTTP client of the workers and the generator (see bench/README.md)",
    )
    parser.add_argument("--claim-count", type=int, default=20, help="jobs per claim (1..100)")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="exchange",
        help="exchange: acks ride with the next claim (POST /infra/jobs/exchange); ack: a claim,"
        " then one ack per job (default: exchange)",
    )
    parser.add_argument("--wait-seconds", type=int, default=1, help="long-poll, phase 1")
    parser.add_argument("--latency-wait-seconds", type=int, default=5, help="long-poll, phase 2")
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=10.0,
        help="phase 2 triggers rate x this many executions (at least 100)",
    )
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=200,
        help="phase 1: executions triggered but not finished before the generator waits",
    )
    parser.add_argument(
        "--trigger-threads",
        type=int,
        default=8,
        help="concurrent triggers (generator threads); each waits for its trigger's commit, so"
        " too few cap phase 1 below what the server can do (4 threads: ~900 executions/s)",
    )
    parser.add_argument("--verify-sample", type=int, default=50, help="executions read back")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="profile the server with py-spy during phase 1 (.svg flame graph, .txt raw)",
    )
    parser.add_argument("--py-spy-seconds", type=float, default=10.0)
    parser.add_argument("--skip-throughput", action="store_true", help="phase 2 only (--rate)")
    parser.add_argument("--skip-latency", action="store_true", help="phase 1 only")
    args = parser.parse_args(argv)
    check_nodes_option(parser, args)
    if args.nodes and (args.shape != "diamond" or args.py_spy):
        parser.error("--nodes measures the diamond, without --py-spy")
    if args.executions < 1 or args.workers < 1 or not 1 <= args.claim_count <= 100:
        parser.error("--executions and --workers must be >= 1, --claim-count 1..100")
    if args.skip_throughput and not args.rate:
        parser.error("--skip-throughput needs --rate")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    return args


@contextlib.contextmanager
def serving(args: argparse.Namespace, db: str | None) -> Iterator[Server | Nodes]:
    """The one server, or with ``--nodes`` the cluster's nodes once each owns its shards."""
    if not args.nodes:
        with running_server(sync=args.sync, extra_args=args.server_arg, db=db) as server:
            yield server
        return
    assert db is not None  # --nodes is refused without PostgreSQL
    with (
        tempfile.TemporaryDirectory(prefix="flowyard-nodes-") as log_dir,
        Nodes(db, args.nodes, Path(log_dir), extra_args=args.server_arg) as nodes,
    ):
        wait_balanced(db, nodes.urls, 60.0)
        nodes.wait_ready(30.0)
        yield nodes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.shape == "map":
        return run_map_shape(args)
    started, result = begin(
        args,
        "workflows",
        executions=args.executions,
        workers=args.workers,
        lanes=args.lanes,
        client=args.client,
        protocol=args.protocol,
        claim_count=args.claim_count,
        max_backlog=args.max_backlog,
        trigger_threads=args.trigger_threads,
        nodes=args.nodes,
    )
    inputs: dict[str, int] = {}
    with databases(args) as fresh_database, serving(args, fresh_database()) as server:
        server.databases = fresh_database
        key = create_key(server.db, "bench")
        blueprint_id = create_diamond(server.url, key)
        rate = args.rate
        if not args.skip_throughput:
            figures, triggered = run_phase(
                server,
                key,
                blueprint_id,
                args,
                label="throughput",
                executions=args.executions,
                start=0,
                rate=None,
                wait_seconds=args.wait_seconds,
                profile=bool(args.py_spy),
            )
            result.update(figures)
            inputs.update({e: n for e, (n, _s, _d) in triggered.executions.items()})
            if rate is None:
                rate = (figures["throughput_executions_per_s"] or 2.0) / 2
        if not args.skip_latency and rate:
            count = max(100, round(rate * args.latency_seconds))
            figures, triggered = run_phase(
                server,
                key,
                blueprint_id,
                args,
                label="latency",
                executions=count,
                start=args.executions,
                rate=rate,
                wait_seconds=args.latency_wait_seconds,
                profile=False,
            )
            result.update(figures)
            inputs.update({e: n for e, (n, _s, _d) in triggered.executions.items()})
        result.update(
            verify(server, key, inputs, args.verify_sample, time.monotonic() + args.duration_limit)
        )
        result["server_peak_rss_mb"] = round(server.peak_rss_mb(), 1)
        result["server_cpu_s_total"] = round(server.cpu_seconds(), 2)
        if (cluster_cpu := server.cluster_cpu_seconds()) is not None:
            result["cluster_cpu_s_total"] = round(cluster_cpu, 2)
    result["server_exit_code"] = server.exit_code
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    failed = any(
        result.get(name)
        for name in (
            "throughput_timed_out",
            "throughput_errors",
            "latency_timed_out",
            "latency_errors",
            "completed_missing",
            "sample_wrong",
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
