"""The PostgreSQL store's writer: a batch as one ``unnest`` statement, or statement by statement.

``python -m bench.pg_store [--writers 64] [--seconds 5] [--rounds 2]`` starts a throwaway
cluster (``postgres.py``) and, on a fresh database per run, drives ``PostgresDatabase`` with
``--writers`` producers, each committing a workflow step's transition again and again (a
job's upsert, a run's, the execution's and two events) and waiting for it. Two ways of writing
a batch, in turn, ``--rounds`` times:

- ``unnest``: the store as it is (``postgres_statements.plan``: the upserts folded per row and
  sent as one statement; without ``BEGIN``/``COMMIT`` when that is all);
- ``runs``: ``BEGIN``, one ``executemany`` per run of one statement, in order, ``COMMIT``.

Out, one JSON line: per way and round, ``transitions_per_s``, ``mean_batch`` (transitions per
transaction, warm-up included), ``cpu_us_per_transition`` (this process) and
``backend_cpu_us_per_transition`` (the writer's server process).
"""

import argparse
import asyncio
import sys
import time
from typing import Any

import msgspec
import orjson
import uvloop

from bench.pg_drivers import _proc_cpu_seconds
from bench.postgres import running_cluster
from flowyard.jobs.model import Job, PullQueue, Run, WorkflowRef
from flowyard.storage import postgres as store_module
from flowyard.storage.intents import Intent, PutEvents, PutExecution, PutJob, PutRun
from flowyard.storage.postgres import PostgresDatabase
from flowyard.storage.postgres_statements import plan, runs
from flowyard.workflows.state import Event, ExecutionState

WARMUP_SECONDS = 1.0


def transition(producer: int, n: int) -> list[Intent]:
    """A step's transition: its job, its run, the execution and two events."""
    execution_id = f"exe_{producer}"
    job = Job(
        id=f"job_{producer}_{n}",
        project_id="proj_bench",
        trigger=PullQueue(queue="q"),
        payload=msgspec.Raw(b'{"order": 12345, "items": ["a", "b", "c"]}'),
        workflow=WorkflowRef(execution_id=execution_id, step_id=f"s{n}"),
        created_at=n,
    )
    run = Run(id=f"run_{producer}_{n}", job_id=job.id, attempt=1, scheduled_at=None, started_at=n)
    state = ExecutionState(id=execution_id, project_id="proj_bench", blueprint_id="wf_bench")
    events = [Event(type="step.queued", at=n, step_id=f"s{n}"), Event(type="job.created", at=n)]
    return [
        PutJob(job),
        PutRun(run),
        PutExecution(state, True),
        PutEvents(execution_id, 2 * n, events),
    ]


async def measure(url: str, writers: int, seconds: float) -> dict[str, Any]:
    import anyio

    db = PostgresDatabase(url)
    await db.open()
    transitions = 0
    stop = False

    async def produce(producer: int) -> None:
        nonlocal transitions
        n = 0
        while not stop:
            await db.commit(transition(producer, n))
            transitions += 1
            n += 1

    def snapshot() -> tuple[float, ...]:
        assert db._conn is not None
        backend = _proc_cpu_seconds(db._conn.get_server_pid())
        return (time.perf_counter(), time.process_time(), backend, transitions)

    async with anyio.create_task_group() as tg:
        await tg.start(db.run_writer)
        async with anyio.create_task_group() as producers:
            for producer in range(writers):
                producers.start_soon(produce, producer)
            await anyio.sleep(WARMUP_SECONDS)
            start = snapshot()
            await anyio.sleep(seconds)
            end = snapshot()
            stop = True
        db.close_writer()
    row = await db.fetchone("SELECT COUNT(*)::float / COUNT(DISTINCT xmin::text) FROM jobs")
    await db.close()
    wall, cpu, backend, count = (b - a for a, b in zip(start, end, strict=True))
    per = 1e6 / max(count, 1)
    return {
        "transitions_per_s": round(count / wall, 1),
        "mean_batch": round(row[0], 1) if row else None,
        "cpu_us_per_transition": round(cpu * per, 1),
        "backend_cpu_us_per_transition": round(backend * per, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_store")
    parser.add_argument("--writers", type=int, default=64, help="concurrent producers")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured, per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each way")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"bench": "pg_store", "writers": args.writers}
    with running_cluster() as cluster:
        for round_ in range(args.rounds):
            for way, how in (("unnest", plan), ("runs", runs)):
                store_module.plan = how  # type: ignore[assignment]
                url = cluster.create_database()
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    figures = runner.run(measure(url, args.writers, args.seconds))
                result.setdefault(way, []).append(figures)
                print(f"round {round_ + 1} {way}: {figures}", file=sys.stderr)
    store_module.plan = plan
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
