"""Pull-queue benchmark: throughput with real pull workers, and wake-up latency of a waiting one.

Run ``python -m bench.jobs --help``. Two phases against one real server process:

1. Throughput. A load generator (this process) creates ``--jobs`` pull jobs through
   ``POST /infra/jobs/batch`` (100 per batch) while ``--workers`` worker processes claim them
   (``--claim-count`` at a time, long-polling) and ack each one with its own
   ``POST /infra/jobs/{id}/ack``. Reported: jobs/s from the first create sent to the last ack
   received, claim-to-ack latency (worker side: claim response received -> ack response
   received) and create-to-claim latency (batch response received -> claim response received,
   ``time.time()`` wall clock shared by the processes), server CPU seconds per 1,000 jobs.
2. Waiting-worker latency. One worker process long-polls a fresh queue (count 1); the
   generator creates single jobs (``POST /infra/jobs``) one at a time with small gaps.
   Reported: created (create response received) -> claimed (claim response received).

Exactly one JSON line goes to stdout at the end; progress goes to stderr. All traffic goes to
127.0.0.1 and every phase is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import anyio
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
    running_server,
    self_cpu_seconds,
    start_profiler,
    stop_profiler,
    summary_ms,
)
from bench.workers import JSON_HEADERS, Poster, WorkerPool, run_lanes

BATCH = 100


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker process does (picklable: it crosses into a spawned process)."""

    index: int
    url: str
    key: str
    queue: str
    lanes: int  # concurrent claim loops in this process
    claim_count: int  # jobs per claim
    ack_concurrency: int  # acks in flight per lane
    wait_seconds: int  # long-poll
    client: str = "async"  # "async": one event loop; "sync"/"raw": one thread per lane
    cpus: frozenset[int] | None = None  # pin the process to these CPUs
    visibility_timeout: int = 60


# --------------------------------------------------------------------------- worker process


def worker_main(
    config: WorkerConfig,
    acked: Any,  # multiprocessing.Array("q", 1): acked[0]
    ready: Any,  # multiprocessing.Value("i")
    stop: MpEvent,
    results: Any,  # multiprocessing.Queue
) -> None:
    """Entry point of a worker process: claim and ack until ``stop``; send results back."""
    if config.cpus:
        os.sched_setaffinity(0, config.cpus)
    if config.client in ("sync", "raw"):
        results.put(_sync_worker(config, acked, ready, stop))
        return
    try:
        import uvloop  # noqa: F401

        options: dict[str, Any] = {"use_uvloop": True}
    except ImportError:
        options = {}
    out = anyio.run(_worker, config, acked, ready, stop, backend_options=options)
    results.put(out)


def _claim_body(config: WorkerConfig) -> bytes:
    return orjson.dumps(
        {
            "queue": config.queue,
            "count": config.claim_count,
            "wait_seconds": config.wait_seconds,
            "visibility_timeout": config.visibility_timeout,
        }
    )


def _ack_body(job: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"status": "completed", "result": {"ok": True}, "claim_token": job["claim_token"]}
    )


def _sync_worker(config: WorkerConfig, acked: Any, ready: Any, stop: MpEvent) -> dict[str, Any]:
    """``config.lanes`` threads, each with its own keep-alive connection (a sync httpx.Client):
    claim, then ack the claimed jobs one after another. ``ack_concurrency`` is not used."""
    claimed_at: dict[str, float] = {}
    sent_at: dict[str, float] = {}
    claim_to_ack: list[float] = []
    stats = {"acked": 0, "ack_errors": 0, "claim_errors": 0, "claims": 0, "empty_claims": 0}
    last_ack = [0.0]
    lock = threading.Lock()
    claim_body = _claim_body(config)
    headers = {"authorization": f"Bearer {config.key}", **JSON_HEADERS}

    def lane(post: Poster) -> None:
        with post:
            while not stop.is_set():
                try:
                    status, content = post("/infra/jobs/claim", claim_body)
                except httpx.HTTPError as exc:
                    with lock:
                        stats["claim_errors"] += 1
                    log(f"worker {config.index}: claim failed: {exc!r}")
                    time.sleep(0.05)
                    continue
                got = time.time()
                if status != 200:
                    with lock:
                        stats["claim_errors"] += 1
                    time.sleep(0.05)
                    continue
                jobs = orjson.loads(content)
                with lock:
                    stats["claims"] += 1
                    stats["empty_claims"] += not jobs
                    for job in jobs:
                        claimed_at[job["id"]] = got
                        payload = job.get("payload")
                        if isinstance(payload, dict) and "t" in payload:
                            sent_at[job["id"]] = payload["t"]
                for job in jobs:
                    try:
                        status, content = post(f"/infra/jobs/{job['id']}/ack", _ack_body(job))
                    except httpx.HTTPError as exc:
                        with lock:
                            stats["ack_errors"] += 1
                        log(f"worker {config.index}: ack {job['id']} failed: {exc!r}")
                        continue
                    done = time.time()
                    if status != 200:
                        with lock:
                            stats["ack_errors"] += 1
                        if stats["ack_errors"] <= 5:
                            log(f"worker {config.index}: ack {status} {content[:200]!r}")
                        continue
                    with lock:
                        claim_to_ack.append(done - got)
                        last_ack[0] = max(last_ack[0], done)
                        stats["acked"] += 1
                    with acked.get_lock():
                        acked[0] += 1

    cpu_s = run_lanes(
        lane,
        lambda: Poster(config.url, headers, config.client, config.wait_seconds + 30.0),
        config.lanes,
        ready,
    )
    return {
        "index": config.index,
        "claimed_at": claimed_at,
        "sent_at": sent_at,
        "claim_to_ack": claim_to_ack,
        "last_ack": last_ack[0],
        "cpu_s": cpu_s,
        **stats,
    }


async def _worker(config: WorkerConfig, acked: Any, ready: Any, stop: MpEvent) -> dict[str, Any]:
    claimed_at: dict[str, float] = {}  # job id -> claim response received (wall clock)
    sent_at: dict[str, float] = {}  # job id -> payload "t" (create request sent)
    claim_to_ack: list[float] = []
    stats = {"acked": 0, "ack_errors": 0, "claim_errors": 0, "claims": 0, "empty_claims": 0}
    last_ack = 0.0
    claim_body = _claim_body(config)

    async def ack(client: httpx.AsyncClient, job: dict[str, Any], got: float) -> None:
        nonlocal last_ack
        try:
            response = await client.post(f"/infra/jobs/{job['id']}/ack", content=_ack_body(job))
        except httpx.HTTPError as exc:
            stats["ack_errors"] += 1
            log(f"worker {config.index}: ack {job['id']} failed: {exc!r}")
            return
        done = time.time()
        if response.status_code != 200:
            stats["ack_errors"] += 1
            if stats["ack_errors"] <= 5:
                log(f"worker {config.index}: ack {response.status_code} {response.text[:200]}")
            return
        claim_to_ack.append(done - got)
        last_ack = max(last_ack, done)
        stats["acked"] += 1
        with acked.get_lock():
            acked[0] += 1

    async def ack_all(
        clients: list[httpx.AsyncClient], jobs: list[dict[str, Any]], got: float
    ) -> None:
        """Ack ``jobs``, one request in flight per client (connection)."""
        pending = iter(jobs)

        async def drain(client: httpx.AsyncClient) -> None:
            for job in pending:
                await ack(client, job, got)

        if len(clients) == 1:
            await drain(clients[0])
            return
        async with anyio.create_task_group() as tg:
            for client in clients[: len(jobs)]:
                tg.start_soon(drain, client)

    async def lane(claimer: httpx.AsyncClient, ackers: list[httpx.AsyncClient]) -> None:
        while not stop.is_set():
            try:
                response = await claimer.post("/infra/jobs/claim", content=claim_body)
            except httpx.HTTPError as exc:
                stats["claim_errors"] += 1
                log(f"worker {config.index}: claim failed: {exc!r}")
                await anyio.sleep(0.05)
                continue
            got = time.time()
            if response.status_code != 200:
                stats["claim_errors"] += 1
                if stats["claim_errors"] <= 5:
                    log(f"worker {config.index}: claim {response.status_code}")
                await anyio.sleep(0.05)
                continue
            jobs = orjson.loads(response.content)
            stats["claims"] += 1
            if not jobs:
                stats["empty_claims"] += 1
                continue
            for job in jobs:
                claimed_at[job["id"]] = got
                payload = job.get("payload")
                if isinstance(payload, dict) and "t" in payload:
                    sent_at[job["id"]] = payload["t"]
            await ack_all(ackers, jobs, got)

    # One client per connection: httpcore's pool checks every connection it holds on every
    # request, so a pool of many connections costs far more CPU per request than a few pools
    # of one connection each.
    headers = {"authorization": f"Bearer {config.key}", **JSON_HEADERS}
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(config.wait_seconds + 30.0)
    async with contextlib.AsyncExitStack() as stack:

        async def client() -> httpx.AsyncClient:
            return await stack.enter_async_context(
                httpx.AsyncClient(base_url=config.url, headers=headers, limits=one, timeout=timeout)
            )

        lanes = [
            (await client(), [await client() for _ in range(config.ack_concurrency)])
            for _ in range(config.lanes)
        ]
        with ready.get_lock():
            ready.value += 1
        cpu_start = self_cpu_seconds()
        async with anyio.create_task_group() as tg:
            for claimer, ackers in lanes:
                tg.start_soon(lane, claimer, ackers)
        cpu_used = self_cpu_seconds() - cpu_start

    return {
        "index": config.index,
        "claimed_at": claimed_at,
        "sent_at": sent_at,
        "claim_to_ack": claim_to_ack,
        "last_ack": last_ack,
        "cpu_s": cpu_used,
        **stats,
    }


# --------------------------------------------------------------------------- phase 1


async def generate_batches(
    server: Server,
    key: str,
    queue: str,
    total: int,
    concurrency: int,
    max_backlog: int,
    acked_count: Any,
    deadline: float,
) -> tuple[dict[str, float], float, int]:
    """Create ``total`` pull jobs in batches of 100, ``concurrency`` batches in flight.

    Holds off while more than ``max_backlog`` jobs are created but not yet acked, so the
    queue stays at a steady depth instead of growing without bound (0: no limit).
    Returns job id -> created (batch response received), the first send time, errors.
    """
    created_at: dict[str, float] = {}
    first_send = 0.0
    next_index = 0
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": f"Bearer {key}", **JSON_HEADERS}
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, limits=limits, timeout=60.0
    ) as client:

        async def sender() -> None:
            nonlocal first_send, next_index, errors
            while next_index < total and time.monotonic() < deadline:
                while max_backlog and len(created_at) - acked_count() > max_backlog:
                    if time.monotonic() > deadline:
                        return
                    await anyio.sleep(0.002)
                if next_index >= total:
                    return
                start = next_index
                size = min(BATCH, total - start)
                next_index += size
                sent = time.time()
                if not first_send:
                    first_send = sent
                body = orjson.dumps(
                    {
                        "jobs": [
                            {
                                "trigger": {"type": "pull", "queue": queue},
                                "payload": {"n": start + i, "t": sent},
                            }
                            for i in range(size)
                        ]
                    }
                )
                while True:
                    try:
                        response = await client.post("/infra/jobs/batch", content=body)
                    except httpx.HTTPError as exc:
                        response = None
                        log(f"batch create failed: {exc!r}")
                    done = time.time()
                    if response is not None and response.status_code == 202:
                        break
                    errors += 1
                    if response is not None:
                        log(f"batch create {response.status_code}: {response.text[:200]}")
                    if time.monotonic() > deadline:
                        return
                    await anyio.sleep(0.1)
                for job in orjson.loads(response.content)["jobs"]:
                    created_at[job["id"]] = done

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(sender)
    return created_at, first_send, errors


def throughput_phase(server: Server, key: str, args: argparse.Namespace) -> dict[str, Any]:
    queue_name = "bench"
    configs = [
        WorkerConfig(
            index=i,
            url=server.url,
            key=key,
            queue=queue_name,
            lanes=args.lanes,
            claim_count=args.claim_count,
            ack_concurrency=args.ack_concurrency,
            wait_seconds=args.wait_seconds,
            client=args.client,
            cpus=client_cpus(args),
        )
        for i in range(args.workers)
    ]
    pool = WorkerPool(worker_main, configs)
    pool.start()
    log(
        f"throughput: {args.jobs} jobs, {args.workers} workers x {args.lanes} lanes "
        f"({args.client} client), claim {args.claim_count}"
    )
    profiler = start_profiler(server, args.py_spy, args.py_spy_seconds) if args.py_spy else None
    cpu_before = server.cpu_seconds()
    cluster_before = server.cluster_cpu_seconds()
    gen_before = self_cpu_seconds()
    busy_before = machine_busy_seconds()
    wall_before = time.monotonic()
    deadline = wall_before + args.duration_limit
    try:
        created_at, first_send, create_errors = anyio.run(
            generate_batches,
            server,
            key,
            queue_name,
            args.jobs,
            args.gen_concurrency,
            args.max_backlog,
            pool.acked_count,
            deadline,
        )
        log(f"created {len(created_at)} jobs in {time.monotonic() - wall_before:.1f}s")
        last_report = time.monotonic()
        while pool.acked_count() < len(created_at) and time.monotonic() < deadline:
            time.sleep(0.01)
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                log(f"acked {pool.acked_count()} of {len(created_at)}")
        timed_out = pool.acked_count() < args.jobs
        cpu_after = server.cpu_seconds()
        cluster_after = server.cluster_cpu_seconds() or 0.0
        gen_cpu = self_cpu_seconds() - gen_before
        busy = machine_busy_seconds() - busy_before
        phase_wall = time.monotonic() - wall_before
        results = pool.finish(timeout=args.wait_seconds + 30)
    finally:
        pool.terminate()
        stop_profiler(profiler, args.py_spy, args.py_spy_seconds)

    acked = sum(r["acked"] for r in results)
    last_ack = max((r["last_ack"] for r in results), default=0.0)
    elapsed = last_ack - first_send if acked and last_ack > first_send else float("nan")
    claim_to_ack = [x for r in results for x in r["claim_to_ack"]]
    create_to_claim = [
        got - created_at[job_id]
        for r in results
        for job_id, got in r["claimed_at"].items()
        if job_id in created_at
    ]
    send_to_claim = [
        got - r["sent_at"][job_id]
        for r in results
        for job_id, got in r["claimed_at"].items()
        if job_id in r["sent_at"]
    ]
    c2a, c2c, s2c = summary_ms(claim_to_ack), summary_ms(create_to_claim), summary_ms(send_to_claim)
    server_cpu = cpu_after - cpu_before
    workers_cpu = sum(r["cpu_s"] for r in results)
    # The throwaway cluster's CPU (--postgres) is the store's work: counted with the server's.
    cluster_cpu = 0.0 if cluster_before is None else cluster_after - cluster_before
    own_cpu = server_cpu + cluster_cpu + workers_cpu + gen_cpu
    figures = {
        "jobs_created": len(created_at),
        "jobs_acked": acked,
        "timed_out": timed_out,
        "elapsed_s": round(elapsed, 3),
        "jobs_per_s": round(acked / elapsed, 1) if elapsed == elapsed else None,
        # The window of jobs_per_s on the wall clock (time.time()), for figures of other
        # benchmarks measured against it (bench.webhooks: deliveries by the last ack).
        "first_send_at": round(first_send, 4),
        "last_ack_at": round(last_ack, 4),
        "claim_to_ack_p50_ms": c2a["p50"],
        "claim_to_ack_p99_ms": c2a["p99"],
        "create_to_claim_p50_ms": c2c["p50"],
        "create_to_claim_p99_ms": c2c["p99"],
        "send_to_claim_p50_ms": s2c["p50"],
        "send_to_claim_p99_ms": s2c["p99"],
        "create_to_claim_negative": sum(1 for x in create_to_claim if x < 0),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_s_per_1000_jobs": round(server_cpu / acked * 1000, 3) if acked else None,
        "cluster_cpu_s": round(cluster_cpu, 2) if cluster_before is not None else None,
        "cluster_cpu_s_per_1000_jobs": (
            round(cluster_cpu / acked * 1000, 3) if acked and cluster_before is not None else None
        ),
        "workers_cpu_s": round(workers_cpu, 2),
        "workers_cpu_ms_per_job": round(workers_cpu / acked * 1000, 3) if acked else None,
        "generator_cpu_s": round(gen_cpu, 2),
        # CPU the rest of the machine used meanwhile (other load skews the figures).
        "other_cpu_s": round(max(0.0, busy - own_cpu), 2),
        "machine_busy_pct": round(100 * busy / (phase_wall * (os.cpu_count() or 1)), 1),
        # CPU of server (and cluster) + workers + generator per job, and the rate that would give on
        # every CPU of this machine if nothing else ran (an upper bound, not a measurement).
        "bench_cpu_ms_per_job": round(own_cpu / acked * 1000, 3) if acked else None,
        "cpu_bound_jobs_per_s": round(acked * (os.cpu_count() or 1) / own_cpu) if acked else None,
        "claims": sum(r["claims"] for r in results),
        "empty_claims": sum(r["empty_claims"] for r in results),
        "errors": create_errors + sum(r["ack_errors"] + r["claim_errors"] for r in results),
    }
    log(
        f"throughput: {figures['jobs_per_s']} jobs/s, claim->ack p50/p99 "
        f"{c2a['p50']}/{c2a['p99']} ms, create->claim p50/p99 {c2c['p50']}/{c2c['p99']} ms"
    )
    return figures


# --------------------------------------------------------------------------- phase 2


async def create_singles(
    server: Server,
    key: str,
    queue: str,
    count: int,
    gap_ms: float,
    acked_count: Any,
    deadline: float,
) -> tuple[dict[str, float], dict[str, float], int]:
    """Create ``count`` pull jobs one at a time, each once the previous one has been acked.

    Waiting for the ack keeps the worker long-polling (idle) when each job arrives; then a
    random gap of ``gap_ms`` +-50% follows. Returns job id -> created (response received),
    job id -> sent, errors.
    """
    created_at: dict[str, float] = {}
    sent_at: dict[str, float] = {}
    errors = 0
    headers = {"authorization": f"Bearer {key}", **JSON_HEADERS}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30.0) as client:
        for n in range(count):
            if time.monotonic() > deadline:
                break
            sent = time.time()
            body = orjson.dumps(
                {"trigger": {"type": "pull", "queue": queue}, "payload": {"n": n, "t": sent}}
            )
            try:
                response = await client.post("/infra/jobs", content=body)
            except httpx.HTTPError as exc:
                errors += 1
                log(f"create failed: {exc!r}")
                await anyio.sleep(0.1)
                continue
            done = time.time()
            if response.status_code != 202:
                errors += 1
                log(f"create {response.status_code}: {response.text[:200]}")
                await anyio.sleep(0.1)
                continue
            job_id = orjson.loads(response.content)["id"]
            created_at[job_id] = done
            sent_at[job_id] = sent
            while acked_count() < len(created_at) and time.monotonic() < deadline:
                await anyio.sleep(0.001)
            await anyio.sleep(gap_ms / 1000 * random.uniform(0.5, 1.5))
    return created_at, sent_at, errors


def waiting_worker_phase(server: Server, key: str, args: argparse.Namespace) -> dict[str, Any]:
    queue_name = "bench-wait"
    config = WorkerConfig(
        index=0,
        url=server.url,
        key=key,
        queue=queue_name,
        lanes=1,
        claim_count=1,
        ack_concurrency=1,
        wait_seconds=5,
        client=args.client,
        cpus=client_cpus(args),
    )
    pool = WorkerPool(worker_main, [config])
    pool.start()
    time.sleep(0.2)
    total = args.latency_samples + args.latency_warmup
    log(f"waiting worker: {total} single creates ({args.latency_warmup} warm-up)")
    deadline = time.monotonic() + args.duration_limit
    try:
        created_at, sent_at, errors = anyio.run(
            create_singles,
            server,
            key,
            queue_name,
            total,
            args.latency_gap_ms,
            pool.acked_count,
            deadline,
        )
        results = pool.finish(timeout=5 + 30)
    finally:
        pool.terminate()
    claimed_at = {k: v for r in results for k, v in r["claimed_at"].items()}
    order = list(created_at)[args.latency_warmup :]  # creation order; drop the warm-up
    created_to_claimed = [claimed_at[j] - created_at[j] for j in order if j in claimed_at]
    sent_to_claimed = [claimed_at[j] - sent_at[j] for j in order if j in claimed_at]
    create_rtt = [created_at[j] - sent_at[j] for j in order]
    lat, sent, rtt = (
        summary_ms(created_to_claimed),
        summary_ms(sent_to_claimed),
        summary_ms(create_rtt),
    )
    figures = {
        "wait_samples": len(created_to_claimed),
        "wait_timed_out": len(created_to_claimed) < args.latency_samples,
        "wait_create_to_claim_p50_ms": lat["p50"],
        "wait_create_to_claim_p99_ms": lat["p99"],
        "wait_create_to_claim_max_ms": lat["max"],
        "wait_send_to_claim_p50_ms": sent["p50"],
        "wait_send_to_claim_p99_ms": sent["p99"],
        "wait_create_request_p50_ms": rtt["p50"],
        "wait_create_request_p99_ms": rtt["p99"],
        "wait_errors": errors + sum(r["ack_errors"] + r["claim_errors"] for r in results),
    }
    log(f"waiting worker: created->claimed p50/p99/max {lat['p50']}/{lat['p99']}/{lat['max']} ms")
    return figures


# --------------------------------------------------------------------------- main


def server_cpus(args: argparse.Namespace) -> set[int] | None:
    """With ``--pin``: the server gets CPU 0 to itself."""
    return {0} if args.pin and (os.cpu_count() or 1) > 1 else None


def client_cpus(args: argparse.Namespace) -> frozenset[int] | None:
    """With ``--pin``: the generator and the workers share every CPU but 0."""
    count = os.cpu_count() or 1
    return frozenset(range(1, count)) if args.pin and count > 1 else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs in the throughput phase")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    add_server_options(parser)
    parser.add_argument(
        "--duration-limit",
        type=float,
        default=120.0,
        help="seconds each phase may take before it is cut short (reported as timed_out)",
    )
    parser.add_argument(
        "--lanes", type=int, default=8, help="claim loops (threads or tasks) per worker process"
    )
    parser.add_argument("--claim-count", type=int, default=10, help="jobs per claim (1..100)")
    parser.add_argument(
        "--ack-concurrency",
        type=int,
        default=4,
        help="acks in flight per claim loop (async client only)",
    )
    parser.add_argument(
        "--client",
        choices=["async", "sync", "raw"],
        default="raw",
        help="worker style: async (httpx.AsyncClient, concurrent acks), sync (httpx.Client,"
        " a thread per lane, sequential acks) or raw (sync through httpx.HTTPTransport)",
    )
    parser.add_argument("--wait-seconds", type=int, default=1, help="long-poll of each claim")
    parser.add_argument(
        "--gen-concurrency", type=int, default=2, help="batch creates in flight (generator)"
    )
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=500,
        help="generator waits while more jobs than this are created but not acked (0: never)",
    )
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--latency-warmup", type=int, default=10)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the server to CPU 0 and the generator and workers to the other CPUs",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="profile the server with py-spy during the throughput phase (.svg flame graph,"
        " .txt collapsed stacks)",
    )
    parser.add_argument("--py-spy-seconds", type=float, default=10.0)
    parser.add_argument("--skip-latency", action="store_true", help="throughput phase only")
    parser.add_argument("--skip-throughput", action="store_true", help="latency phase only")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or not 1 <= args.claim_count <= 100:
        parser.error("--jobs and --workers must be >= 1, --claim-count 1..100")
    if not 0 <= args.wait_seconds <= 20:
        parser.error("--wait-seconds must be 0..20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, result = begin(
        args,
        "jobs",
        jobs=args.jobs,
        workers=args.workers,
        lanes=args.lanes,
        claim_count=args.claim_count,
        ack_concurrency=args.ack_concurrency,
        client=args.client,
        pin=args.pin,
        wait_seconds=args.wait_seconds,
        gen_concurrency=args.gen_concurrency,
        max_backlog=args.max_backlog,
    )
    with (
        databases(args) as fresh_database,
        running_server(
            sync=args.sync, extra_args=args.server_arg, cpus=server_cpus(args), db=fresh_database()
        ) as server,
    ):
        if args.pin and client_cpus(args):
            os.sched_setaffinity(0, client_cpus(args) or ())
        server.databases = fresh_database
        key = create_key(server.db, "bench")
        if not args.skip_throughput:
            result.update(throughput_phase(server, key, args))
        if not args.skip_latency:
            result.update(waiting_worker_phase(server, key, args))
        result["server_peak_rss_mb"] = round(server.peak_rss_mb(), 1)
        result["server_cpu_s_total"] = round(server.cpu_seconds(), 2)
        if (cluster_cpu := server.cluster_cpu_seconds()) is not None:
            result["cluster_cpu_s_total"] = round(cluster_cpu, 2)
    result["server_exit_code"] = server.exit_code
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    # Non-zero when a phase was cut short or requests failed (the figures are still printed).
    failed = any(
        result.get(name) for name in ("timed_out", "errors", "wait_timed_out", "wait_errors")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
