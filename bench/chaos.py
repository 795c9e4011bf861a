"""Crash soak: the real server under steady load, killed with SIGKILL at random moments.

``python -m bench.chaos --cycles 30`` starts ``flowyard serve`` on a fresh database (a SQLite
file; ``--postgres`` or ``--db URL``: a fresh PostgreSQL database), keeps a trigger client, a
job creator, pull workers and a push handler busy against it over HTTP on 127.0.0.1, and kills
the server at a random moment of every cycle (so some kills land in the middle of a group
commit), restarting it on the same database each time. After the last cycle the load stops
producing, the workers drain everything, the server is stopped and the database is checked
(``bench.chaos_checks``): everything the server acknowledged is there, every execution ended
as its steps imply, no step attempt has two jobs, and SQLite's integrity check passes.
A webhook subscribed to ``jobs.*`` and ``workflows.*`` posts to a receiver process that outlives
the kills; once its deliveries are drained, every final transition in the database must have
exactly one distinct, correctly signed event, and no event a transition that did not commit
(``bench.chaos_webhooks``).
With ``--nodes N`` (PostgreSQL only) the service is N cluster nodes on one database
(``bench.chaos_nodes``): the load is spread over them, and each cycle ends one node (SIGKILL,
sometimes SIGTERM) and brings it back on its port once the others own its shards.
Prints one JSON line; exit status 1 when any invariant is broken.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.chaos_checks import Graph, Ledger, Violations, check_all
from bench.chaos_load import QUEUES, Load, PushHandler, Settings, Target
from bench.chaos_nodes import NodeChaos
from bench.chaos_webhooks import (
    Deliveries,
    check_webhooks,
    read_stored,
    setup_post,
    subscribe,
    wait_delivered,
)
from bench.common import (
    Server,
    add_server_options,
    create_key,
    databases,
    log,
    spawn_server,
    start_server,
    stop_server,
    store_name,
    wait_for_idle,
)
from bench.db_reads import fetch_one
from bench.nodes import add_nodes_option, check_nodes_option
from bench.webhooks import running_receiver

EARLY_KILLS = 0.2
"""The share of restarts that are killed again before /readyz."""
GRAPH = Graph(
    depends_on={"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"], "R": []},
    catch={"D": "R"},
)


def blueprint(handler_url: str) -> dict[str, Any]:
    """Fan-out A -> (B push, C pull), fan-in D with a catch step R."""

    def pull(step_id: str, template: Any, **extra: Any) -> dict[str, Any]:
        trigger = {"type": "pull", "queue": QUEUES[step_id]}
        return {"id": step_id, "job_trigger": {"trigger": trigger}, "payload_template": template}

    push_trigger = {"trigger": {"type": "immediate"}, "handler": handler_url, "timeout": 5}
    return {
        "name": "chaos",
        "steps": [
            pull("A", {"n": "{{input.n}}"}),
            {
                "id": "B",
                "job_trigger": {**push_trigger, "max_attempts": 2},
                "payload_template": {"n": "{{input.n}}", "a": "{{steps.A.output.attempt}}"},
                "depends_on": ["A"],
            },
            {**pull("C", {"a": "{{steps.A.output}}"}), "depends_on": ["A"]},
            {
                **pull("D", {"b": "{{steps.B.output}}", "c": "{{steps.C.output.job}}"}),
                "depends_on": ["B", "C"],
                "catch": "R",
            },
            pull("R", {"failed": "{{failure.step_id}}", "why": "{{failure.error}}"}),
        ],
    }


def quiesce(db: str, project_id: str, timeout: float) -> bool:
    """Wait until no execution is active and no job is live; False when ``timeout`` ran out."""
    deadline = time.monotonic() + timeout
    while True:
        (left,) = fetch_one(
            db,
            "SELECT (SELECT count(*) FROM executions WHERE project_id = $1 AND active = 1)"
            " + (SELECT count(*) FROM jobs WHERE project_id = $1"
            " AND status IN ('pending', 'running', 'scheduled'))",
            project_id,
        )
        if left == 0:
            return True
        if time.monotonic() > deadline:
            log(f"still {left} live executions and jobs after {timeout}s")
            return False
        time.sleep(0.5)


def project_of(db: str) -> str:
    """The one project's id (the soak creates exactly one)."""
    (project_id,) = fetch_one(db, "SELECT id FROM projects")
    return str(project_id)


SERVER_ARGS = ["--retry-base-seconds", "0.05", "--webhook-retry-base-seconds", "0.2"]


def restart(db: str, settings: Settings, figures: dict[str, Any], log_dir: Path) -> Server:
    """Start the server on ``db`` and wait for /readyz; the restart time goes in ``figures``.

    The server's log goes in ``log_dir`` when ``db`` is a URL (next to a SQLite file else).
    """
    began = time.monotonic()
    server = start_server(
        sync=settings.sync,
        extra_args=[*SERVER_ARGS, *settings.server_args],
        db=db,
        ready_timeout=120,
        log_dir=log_dir,
    )
    figures["ready_s_max"] = max(figures.get("ready_s_max", 0.0), time.monotonic() - began)
    return server


def kill_while_starting(db: str, settings: Settings, rng: random.Random, log_dir: Path) -> None:
    """Start the server and kill it within its first second: during start-up or rehydration."""
    args = [*SERVER_ARGS, *settings.server_args]
    server = spawn_server(sync=settings.sync, extra_args=args, db=db, log_dir=log_dir)
    time.sleep(rng.uniform(0.05, 1.0))
    server.proc.kill()
    server.proc.wait(30)


@dataclass
class Outcome:
    """A finished soak: its figures, the violations, and what the checks read."""

    figures: dict[str, Any]
    violations: Violations
    ledger: Ledger
    db: str
    project_id: str
    handler_url: str
    deliveries: Deliveries


def soak(settings: Settings) -> Outcome:
    """Run the whole soak and check the database; a SQLite file is removed unless ``workdir``."""
    started = time.monotonic()
    workdir = settings.workdir or Path(tempfile.mkdtemp(prefix="flowyard-chaos-"))
    db = settings.db or str(workdir / "chaos.db")
    key = create_key(db, "chaos")
    project_id = project_of(db)
    rng = random.Random(settings.seed)
    figures: dict[str, Any] = {"seed": settings.seed, "cycles": settings.cycles}
    cluster: NodeChaos | None = None
    if settings.nodes:
        cluster = NodeChaos(db, settings, workdir, [*SERVER_ARGS, *settings.server_args])
        cluster.start()
        target = Target(cluster.urls, key)
    else:
        server = restart(db, settings, figures, workdir)
        target = Target([server.url], key)
    load: Load | None = None
    ledger = Ledger()
    try:
        with (
            PushHandler(ledger, target.lock, settings.seed) as handler,
            running_receiver() as receiver,
        ):
            deliveries = Deliveries(subscribe(target.url(0), key, receiver.url), project_id)
            path = f"{target.url(0)}/infra/workflows/blueprints"
            made = setup_post(path, blueprint(handler.url), key)
            made.raise_for_status()
            load = Load(target, made.json()["id"], settings, ledger)
            load.start()
            for cycle in range(settings.cycles):
                time.sleep(rng.uniform(0.2, 1.0) * settings.seconds_per_cycle)
                if cluster is not None:
                    done = cluster.cycle(rng, EARLY_KILLS)
                    count = len(ledger.triggers)
                    log(f"cycle {cycle + 1}/{settings.cycles}: {done}; {count} triggers")
                    continue
                server.proc.kill()
                server.proc.wait(30)
                log(f"cycle {cycle + 1}/{settings.cycles}: killed; {len(ledger.triggers)} triggers")
                if rng.random() < EARLY_KILLS:
                    kill_while_starting(db, settings, rng, workdir)
                    with target.lock:
                        ledger.counts["kills_while_starting"] += 1
                server = restart(db, settings, figures, workdir)
                target.urls = [server.url]
            load.stop_producing()
            began = time.monotonic()
            figures["quiesced"] = quiesce(db, project_id, settings.quiesce_timeout)
            figures["quiesce_s"] = round(time.monotonic() - began, 2)
            load.stop()
            began = time.monotonic()
            figures["webhooks_drained"] = wait_delivered(db, settings.delivery_timeout)
            figures["webhooks_drain_s"] = round(time.monotonic() - began, 2)
            if cluster is not None:
                codes = cluster.stop()
                figures["final_exit_codes"] = codes
                figures["final_exit_code"] = next((code for code in codes if code), 0)
            else:
                figures["final_exit_code"] = stop_server(server)
            deliveries.rows = receiver.take()
        read_stored(db, deliveries)
        violations, snapshot = check_all(db, project_id, GRAPH, ledger, handler.url)
        figures |= check_webhooks(snapshot, deliveries, violations)
    finally:
        if load is not None:
            load.stop()
        if cluster is not None:
            cluster.kill_all()
            figures["ready_s_max"] = cluster.ready_s_max
            figures |= cluster.figures()
        elif server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(30)
        if settings.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    statuses: dict[str, int] = {}
    for doc in snapshot.executions.values():
        statuses[doc.get("status", "?")] = statuses.get(doc.get("status", "?"), 0) + 1
    figures |= {
        "executions": len(snapshot.executions),
        "steps": sum(len(doc.get("steps", {})) for doc in snapshot.executions.values()),
        "acks": len(ledger.acks),
        "jobs": len(snapshot.jobs),
        "triggers_confirmed": len(ledger.triggers),
        "executions_unconfirmed": len(snapshot.executions) - len(ledger.triggers),
        "jobs_retried": sum(1 for job in snapshot.jobs.values() if job.get("attempt", 0) > 1),
        "jobs_created_confirmed": len(ledger.created),
        "execution_statuses": statuses,
        **dict(sorted(ledger.counts.items())),
        "ready_s_max": round(figures["ready_s_max"], 2),
        "seconds": round(time.monotonic() - started, 1),
        "violations": len(violations),
        "violation_kinds": violations.kinds(),
    }
    return Outcome(figures, violations, ledger, db, project_id, handler.url, deliveries)


def report(violations: Violations, limit: int = 20) -> str:
    """The violations, at most ``limit`` of each kind, one per line."""
    lines: list[str] = []
    shown: dict[str, int] = {}
    for kind, detail in violations.found:
        shown[kind] = shown.get(kind, 0) + 1
        if shown[kind] <= limit:
            lines.append(f"{kind}: {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--seconds-per-cycle", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--triggers-per-second", type=float, default=30.0)
    parser.add_argument("--trigger-threads", type=int, default=2)
    parser.add_argument("--jobs-per-second", type=float, default=5.0)
    parser.add_argument("--quiesce-timeout", type=float, default=90.0)
    parser.add_argument("--delivery-timeout", type=float, default=30.0)
    parser.add_argument(
        "--sigterm-share",
        type=float,
        default=0.25,
        help="with --nodes: the share of kills that are SIGTERM (a hand-over), not SIGKILL",
    )
    add_server_options(parser)
    add_nodes_option(parser)
    parser.add_argument("--keep", help="keep the database (a SQLite file) in this directory")
    args = parser.parse_args(argv)
    check_nodes_option(parser, args)
    if args.wait_idle > 0:
        wait_for_idle(args.wait_idle)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    workdir = None
    if args.keep:
        workdir = Path(args.keep)
        workdir.mkdir(parents=True, exist_ok=True)
    with databases(args) as fresh_database:
        settings = Settings(
            cycles=args.cycles,
            seconds_per_cycle=args.seconds_per_cycle,
            seed=seed,
            triggers_per_second=args.triggers_per_second,
            trigger_threads=args.trigger_threads,
            jobs_per_second=args.jobs_per_second,
            quiesce_timeout=args.quiesce_timeout,
            delivery_timeout=args.delivery_timeout,
            sync=args.sync,
            workdir=workdir,
            db=fresh_database(),
            server_args=tuple(args.server_arg),
            nodes=args.nodes,
            sigterm_share=args.sigterm_share,
        )
        outcome = soak(settings)
    if outcome.violations.found:
        print(report(outcome.violations), file=sys.stderr)
    figures = {"bench": "chaos", "store": store_name(args), **outcome.figures}
    print(json.dumps(figures), flush=True)
    return 1 if outcome.violations.found else 0


if __name__ == "__main__":
    sys.exit(main())
