"""PostgreSQL drivers on the group-commit path: asyncpg and psycopg 3, each batch method.

Run ``python -m bench.pg_drivers [--seconds S] [--writers N]``. One throwaway cluster
(``bench.postgres``, default durability: ``fsync`` and ``synchronous_commit`` on); each method
gets a fresh database and a fresh process on uvloop, as ``flowyard serve`` runs. In it, ``N``
producers (default 64) each submit a *transition* and wait until it is committed, again and
again: an ``UPDATE`` of a jobs-like row (a ~500-byte JSON doc) by primary key, an ``INSERT`` of
a runs-like row and an ``INSERT`` of an events-like row. One writer task takes every transition
waiting and writes them all in one transaction, then answers each producer, as Flowyard's
writer does. The methods, one way each of sending a batch:

- ``asyncpg.executemany``: ``BEGIN``, one ``executemany`` per statement, ``COMMIT``.
- ``asyncpg.unnest``: one statement, the three writes as data-modifying CTEs over
  ``unnest`` of one array per column (autocommit: the statement is its own transaction).
- ``psycopg.pipeline``: ``BEGIN``, one ``executemany`` per statement, ``COMMIT``, all in
  pipeline mode (one round trip).
- ``psycopg.copy``: ``BEGIN``, ``executemany`` of the updates, binary ``COPY`` of the two
  inserts, ``COMMIT``.
- ``psycopg.unnest``: the same one statement as ``asyncpg.unnest``.

psycopg sends every parameter in binary (``%b``): in text (``%s``) its ``unnest`` cost this
process twice the CPU per transition.

Measured after a warm-up: transitions/s, commits/s, the mean batch, the process's CPU
(``getrusage``, every thread) per transition, and the server's (its backend, and every process
of the cluster) per transition. ``harness`` is the same loop with a writer that writes nothing:
the producers' and the loop's own share of the CPU. ``best`` names, per driver, the method
that costs the process the least CPU per transition. One JSON line goes to stdout. About 90 s
with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.common import REPO, log, server_env, source_info
from bench.postgres import running_cluster

METHODS = (
    "asyncpg.executemany",
    "asyncpg.unnest",
    "psycopg.pipeline",
    "psycopg.copy",
    "psycopg.unnest",
)
WARMUP_SECONDS = 2.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")

SCHEMA = """
CREATE TABLE jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text PRIMARY KEY,
    project_id text NOT NULL,
    status text NOT NULL,
    trigger_type text NOT NULL,
    queue text,
    doc bytea NOT NULL
);
CREATE INDEX jobs_live ON jobs (status) WHERE status IN ('pending', 'running', 'scheduled');
CREATE TABLE runs (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text PRIMARY KEY,
    job_id text NOT NULL,
    doc bytea NOT NULL
);
CREATE INDEX runs_by_job ON runs (job_id, seq);
CREATE TABLE events (
    execution_id text NOT NULL,
    seq integer NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
INSERT INTO jobs (id, project_id, status, trigger_type, queue, doc)
SELECT 'job_' || lpad(i::text, 8, '0'), 'proj_bench', 'pending', 'api', 'default', '\\x7b7d'
FROM generate_series(0, {last}) AS i;
"""

UPDATE_JOB = "UPDATE jobs SET status = $1, doc = $2 WHERE id = $3"
INSERT_RUN = "INSERT INTO runs (id, job_id, doc) VALUES ($1, $2, $3)"
INSERT_EVENT = "INSERT INTO events (execution_id, seq, doc) VALUES ($1, $2, $3)"
UNNEST = """
WITH updated AS (
    UPDATE jobs SET status = u.status, doc = u.doc
    FROM unnest($1::text[], $2::bytea[], $3::text[]) AS u (status, doc, id)
    WHERE jobs.id = u.id
), inserted AS (
    INSERT INTO runs (id, job_id, doc)
    SELECT * FROM unnest($4::text[], $5::text[], $6::bytea[])
)
INSERT INTO events (execution_id, seq, doc)
SELECT * FROM unnest($7::text[], $8::integer[], $9::bytea[])
"""


def _psycopg_sql(sql: str) -> str:
    """``$1``, ``$2``... (asyncpg's placeholders, PostgreSQL's own) as psycopg's ``%s``."""
    for n in range(9, 0, -1):
        if f"${n}" in sql:
            assert sql.index(f"${n}") > sql.find(f"${n - 1}"), "placeholders out of order"
            sql = sql.replace(f"${n}", "%b")
    return sql


@dataclass(frozen=True, slots=True)
class Transition:
    """One producer's three writes: its job's new state, a run, an event."""

    job: tuple[str, bytes, str]
    """Status, doc, id (the order of :data:`UPDATE_JOB`'s parameters)."""
    run: tuple[str, str, bytes]
    event: tuple[str, int, bytes]


def transition(producer: int, n: int) -> Transition:
    """The ``n``-th transition of ``producer``: a ~500-byte job doc, a run, an event."""
    job_id = f"job_{producer:08d}"
    run_id = f"run_{producer:04d}_{n:012d}"
    status = "running" if n % 2 == 0 else "pending"
    doc = orjson.dumps(
        {
            "id": job_id,
            "project_id": "proj_bench",
            "name": "send-invoice",
            "status": status,
            "queue": "default",
            "priority": 0,
            "attempt": n + 1,
            "max_attempts": 5,
            "payload": {"invoice": f"INV-{n:08d}", "amount_cents": 12900, "currency": "EUR"},
            "run_id": run_id,
            "created_at": 1765044000000,
            "updated_at": 1765044000000 + n,
            "scheduled_at": None,
            "lease_expires_at": 1765044030000 + n,
            "worker_id": f"worker-{producer % 8}",
            "tags": ["billing", "monthly", "bench"],
            "metadata": {"customer": f"cus_{producer:020d}", "source": "api"},
            "result": None,
            "error": None,
        }
    )
    run_doc = orjson.dumps(
        {"id": run_id, "job_id": job_id, "attempt": n + 1, "status": status, "at": 1765044000000}
    )
    event_doc = orjson.dumps({"type": "job_started", "job_id": job_id, "run_id": run_id})
    return Transition(
        (status, doc, job_id), (run_id, job_id, run_doc), (f"exe_{producer:08d}", n, event_doc)
    )


# ------------------------------------------------------------------ one batch, each method

Write = Callable[[list[Transition]], Awaitable[None]]


def _columns(batch: list[Transition]) -> list[list[Any]]:
    """The nine arrays of :data:`UNNEST`: each write's columns, column by column."""
    jobs = list(zip(*(t.job for t in batch), strict=True))
    runs = list(zip(*(t.run for t in batch), strict=True))
    events = list(zip(*(t.event for t in batch), strict=True))
    return [list(column) for column in (*jobs, *runs, *events)]


@contextlib.asynccontextmanager
async def open_writer(method: str, url: str, writers: int) -> AsyncIterator[tuple[Write, int]]:
    """The schema in a fresh database, then ``(write a batch, the backend's pid)``."""
    driver, _, how = method.partition(".")
    if driver == "asyncpg":
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await conn.execute(SCHEMA.format(last=writers - 1))
            pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
            yield _asyncpg_write(conn, how), pid
        finally:
            await conn.close()
    elif driver == "psycopg":
        import psycopg

        aconn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            await aconn.execute(SCHEMA.format(last=writers - 1))
            row = await (await aconn.execute("SELECT pg_backend_pid()")).fetchone()
            assert row is not None
            yield _psycopg_write(aconn, how), int(row[0])
        finally:
            await aconn.close()
    else:
        raise ValueError(f"unknown method {method!r}")


def _asyncpg_write(conn: Any, how: str) -> Write:
    if how == "executemany":

        async def write_executemany(batch: list[Transition]) -> None:
            async with conn.transaction():
                await conn.executemany(UPDATE_JOB, [t.job for t in batch])
                await conn.executemany(INSERT_RUN, [t.run for t in batch])
                await conn.executemany(INSERT_EVENT, [t.event for t in batch])

        return write_executemany
    if how == "unnest":

        async def write_unnest(batch: list[Transition]) -> None:
            await conn.execute(UNNEST, *_columns(batch))

        return write_unnest
    raise ValueError(f"unknown asyncpg method {how!r}")


def _psycopg_write(aconn: Any, how: str) -> Write:
    update, insert_run, insert_event = map(_psycopg_sql, (UPDATE_JOB, INSERT_RUN, INSERT_EVENT))
    if how == "pipeline":

        async def write_pipeline(batch: list[Transition]) -> None:
            async with aconn.pipeline(), aconn.transaction(), aconn.cursor() as cur:
                await cur.executemany(update, [t.job for t in batch])
                await cur.executemany(insert_run, [t.run for t in batch])
                await cur.executemany(insert_event, [t.event for t in batch])

        return write_pipeline
    if how == "copy":
        copy_runs = "COPY runs (id, job_id, doc) FROM STDIN (FORMAT BINARY)"
        copy_events = "COPY events (execution_id, seq, doc) FROM STDIN (FORMAT BINARY)"

        async def write_copy(batch: list[Transition]) -> None:
            async with aconn.transaction(), aconn.cursor() as cur:
                await cur.executemany(update, [t.job for t in batch])
                async with cur.copy(copy_runs) as copy:
                    copy.set_types(["text", "text", "bytea"])
                    for t in batch:
                        await copy.write_row(t.run)
                async with cur.copy(copy_events) as copy:
                    copy.set_types(["text", "int4", "bytea"])
                    for t in batch:
                        await copy.write_row(t.event)

        return write_copy
    if how == "unnest":
        unnest = _psycopg_sql(UNNEST)

        async def write_unnest(batch: list[Transition]) -> None:
            await aconn.execute(unnest, _columns(batch), prepare=True)

        return write_unnest
    raise ValueError(f"unknown psycopg method {how!r}")


async def _write_nothing(batch: list[Transition]) -> None:
    await asyncio.sleep(0)


# ------------------------------------------------------------------ the group-commit loop


class GroupCommit:
    """Producers submit and wait; one writer writes everything waiting in one batch."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._waiting: list[tuple[Transition, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self.transitions = 0
        self.commits = 0

    async def submit(self, item: Transition) -> None:
        """Return once ``item`` is committed (raise what the batch raised, if it failed)."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        self._wake.set()
        await done

    async def run(self) -> None:
        """Write batches until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, []
            if not batch:
                continue
            try:
                await self._write([item for item, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    done.set_exception(exc)
                raise
            self.commits += 1
            self.transitions += len(batch)
            for _, done in batch:
                done.set_result(None)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def _cluster_cpu_seconds(postmaster: int) -> float:
    """CPU of the postmaster and of every process it started (that is still running)."""
    total = _proc_cpu_seconds(postmaster)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == postmaster:
            total += (int(stat[11]) + int(stat[12])) / _CLK_TCK
    return total


async def measure(
    method: str, url: str, writers: int, seconds: float, postmaster: int
) -> dict[str, Any]:
    """Run ``writers`` producers against one method's writer; the figures of the window."""
    import anyio

    async with contextlib.AsyncExitStack() as stack:
        if method == "harness":
            write, backend = _write_nothing, 0
        else:
            write, backend = await stack.enter_async_context(open_writer(method, url, writers))
        group = GroupCommit(write)
        stop = False

        async def produce(producer: int) -> None:
            n = 0
            while not stop:
                await group.submit(transition(producer, n))
                n += 1

        def snapshot() -> tuple[float, ...]:
            return (
                time.perf_counter(),
                _cpu_seconds(),
                _proc_cpu_seconds(backend) if backend else 0.0,
                _cluster_cpu_seconds(postmaster) if backend else 0.0,
                group.transitions,
                group.commits,
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(group.run)
            async with anyio.create_task_group() as producers:
                for producer in range(writers):
                    producers.start_soon(produce, producer)
                await anyio.sleep(WARMUP_SECONDS)
                start = snapshot()
                await anyio.sleep(seconds)
                end = snapshot()
                stop = True
            tg.cancel_scope.cancel()
    wall, cpu, backend_cpu, server_cpu, transitions, commits = (
        b - a for a, b in zip(start, end, strict=True)
    )
    per = 1e6 / max(transitions, 1)
    figures: dict[str, Any] = {
        "transitions_per_s": round(transitions / wall, 1),
        "commits_per_s": round(commits / wall, 1),
        "mean_batch": round(transitions / max(commits, 1), 2),
        "cpu_us_per_transition": round(cpu * per, 1),
    }
    if backend:
        figures["backend_cpu_us_per_transition"] = round(backend_cpu * per, 1)
        figures["server_cpu_us_per_transition"] = round(server_cpu * per, 1)
    return figures


# ------------------------------------------------------------------------ the processes


def child(method: str, url: str, writers: int, seconds: float, postmaster: int) -> None:
    """Measure one method in this process (on uvloop) and print its figures as JSON."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(measure(method, url, writers, seconds, postmaster))
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")


def _run_child(
    method: str, url: str, writers: int, seconds: float, postmaster: int
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.pg_drivers", "--child", method, "--url", url]
    cmd += ["--writers", str(writers), "--seconds", str(seconds), "--postmaster", str(postmaster)]
    done = subprocess.run(
        cmd, cwd=REPO, env=server_env(), capture_output=True, text=True, timeout=seconds + 120
    )
    if done.returncode != 0:
        raise RuntimeError(f"{method}: exit {done.returncode}: {done.stderr[-2000:]}")
    return dict(orjson.loads(done.stdout.strip().splitlines()[-1]))


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("asyncpg", "psycopg"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        versions[name] = str(module.__version__)
    return versions


def _best(methods: dict[str, Any]) -> str | None:
    """The method that costs this process the least CPU per transition.

    Not the most transitions/s: with ``synchronous_commit`` on, a commit waits for the WAL's
    fsync, and on a shared disk that wait swings by 2x from one minute to the next, more than
    the methods differ. The CPU is what a method costs the service's event loop.
    """
    measured = {how: f["cpu_us_per_transition"] for how, f in methods.items() if "skipped" not in f}
    return min(measured, key=measured.__getitem__, default=None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pg_drivers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per method")
    parser.add_argument("--writers", type=int, default=64, help="concurrent producers")
    parser.add_argument("--methods", default=",".join(METHODS), help="which, comma-separated")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--postmaster", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args.child, args.url, args.writers, args.seconds, args.postmaster)
        return 0
    versions = _versions()
    result: dict[str, Any] = {
        "bench": "pg_drivers",
        "seconds": args.seconds,
        "writers": args.writers,
        "warmup_seconds": WARMUP_SECONDS,
        "python": sys.version.split()[0],
        "versions": versions,
        **source_info(),
    }
    drivers: dict[str, dict[str, Any]] = {}
    with running_cluster() as cluster:
        result["postgres"] = cluster.binaries.bin_dir.parent.name
        log(f"PostgreSQL at {cluster.url} (pid {cluster.pid})")
        for method in ["harness", *args.methods.split(",")]:
            driver, _, how = method.partition(".")
            if how and driver not in versions:
                drivers.setdefault(driver, {})[how] = {"skipped": f"{driver} is not installed"}
                continue
            url = cluster.create_database() if how else cluster.url
            log(f"{method}: {args.seconds:g} s with {args.writers} producers")
            figures = _run_child(method, url, args.writers, args.seconds, cluster.pid)
            log(f"{method}: {figures}")
            if how:
                drivers.setdefault(driver, {})[how] = figures
            else:
                result["harness"] = figures
    result["drivers"] = drivers
    result["best"] = {driver: _best(methods) for driver, methods in drivers.items()}
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
