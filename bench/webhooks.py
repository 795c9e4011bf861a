"""Webhook benchmark: what a ``jobs.*`` webhook costs the pull-job path, and how fast it delivers.

Run ``python -m bench.webhooks --help``. One receiver process on 127.0.0.1
(``bench.webhook_receiver``) answers every delivery 200 and records it. Then, in each round,
two phases, each on its own fresh server (``flowyard serve``, a new SQLite file):

A. ``bench.jobs``' throughput phase (create, claim, ack at full speed) with no webhook.
B. The same after ``POST /infra/webhooks`` subscribed the receiver to ``jobs.*``; then a
   bounded wait for the deliveries to drain, the completed jobs listed from the server, and
   the receiver's records checked against them (``bench.webhook_figures``).

Reported: jobs/s of both and their ratio (the bar: the webhook costs at most 15%), events
delivered per second, the event's ``created_at`` -> arrival at the receiver p50/p99,
deliveries missing after the drain, duplicates. A server without ``/infra/webhooks`` (404)
gives ``"webhooks": "unavailable"`` and phase A only. One JSON line goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from bench import jobs
from bench.common import (
    HOST,
    REPO,
    Databases,
    Server,
    add_server_options,
    begin,
    create_key,
    databases,
    free_port,
    log,
    proc_cpu_seconds,
    running_server,
    server_env,
)
from bench.webhook_figures import COMPLETED, delivery_figures
from bench.workers import auth_headers

BAR = 0.85
"""Jobs/s with the webhook over jobs/s without it, at least (the webhook costs at most 15%)."""


class Receiver:
    """The receiver process and the calls that read its records."""

    def __init__(self, ready_timeout: float = 20.0) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        cmd = [sys.executable, "-m", "bench.webhook_receiver", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=server_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        self.client = httpx.Client(base_url=self.url, timeout=30.0)
        deadline = time.monotonic() + ready_timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                self.count()
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.05)
        log(f"receiver pid {self.proc.pid} at {self.url}")

    def count(self) -> dict[str, Any]:
        """``{requests, events, topics: {topic: distinct events}}`` since the last take."""
        response = self.client.get("/_count")
        response.raise_for_status()
        return dict(orjson.loads(response.content))

    def take(self) -> list[list[Any]]:
        """The deliveries recorded since the last take (the receiver forgets them)."""
        response = self.client.post("/_take")
        response.raise_for_status()
        return list(orjson.loads(response.content)["rows"])

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running_receiver() -> Iterator[Receiver]:
    """The receiver process for the length of a block; stopped with SIGTERM whatever happens."""
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.stop()


def webhooks_available(client: httpx.Client) -> bool:
    """Whether the server has ``/infra/webhooks`` (an unknown route is 404)."""
    response = client.get("/infra/webhooks", params={"limit": 1})
    if response.status_code == 404:
        return False
    response.raise_for_status()
    return True


def subscribe(client: httpx.Client, receiver: Receiver, secret: str) -> dict[str, Any]:
    """Create the ``jobs.*`` webhook and send it a test delivery; the figures of both."""
    body = {"name": "bench", "url": f"{receiver.url}/hook", "topics": ["jobs.*"], "secret": secret}
    response = client.post("/infra/webhooks", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"webhook create {response.status_code}: {response.text[:300]}")
    webhook_id = str(orjson.loads(response.content)["id"])
    test = client.post(f"/infra/webhooks/{webhook_id}/test")
    answer = orjson.loads(test.content) if test.status_code == 200 else {}
    if answer.get("status") != 200:
        raise RuntimeError(f"test delivery {test.status_code}: {test.text[:300]}")
    receiver.take()  # the test delivery is not part of the phase
    return {"webhook_id": webhook_id, "test_delivery_ms": answer.get("duration_ms")}


def drain(receiver: Receiver, expected: int, timeout: float) -> tuple[float, bool]:
    """Wait until ``expected`` distinct ``jobs.completed`` events arrived (at most ``timeout``)."""
    start = time.monotonic()
    while receiver.count()["topics"].get(COMPLETED, 0) < expected:
        if time.monotonic() - start > timeout:
            return time.monotonic() - start, False
        time.sleep(0.05)
    return time.monotonic() - start, True


def listed(client: httpx.Client, path: str, things: str, params: dict[str, Any]) -> list[Any]:
    """Every item of a paginated list (``{<things>, next_cursor}``), at most 1,000 pages."""
    items: list[Any] = []
    cursor = None
    for _ in range(1000):
        page = {**params, "limit": 100, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=page)
        response.raise_for_status()
        body = orjson.loads(response.content)
        items += body[things]
        cursor = body.get("next_cursor")
        if not cursor:
            break
    return items


def phase(
    args: argparse.Namespace,
    receiver: Receiver,
    with_webhook: bool,
    fresh_database: Databases,
) -> tuple[dict[str, Any], bool]:
    """One phase on a fresh server and database; its figures and whether it has webhooks."""
    log("phase B (jobs.* webhook)" if with_webhook else "phase A (no webhook)")
    with running_server(sync=args.sync, extra_args=args.server_arg, db=fresh_database()) as server:
        server.databases = fresh_database
        key = create_key(server.db, "bench", scopes=["*"])
        with httpx.Client(base_url=server.url, headers=auth_headers(key), timeout=30.0) as client:
            available = webhooks_available(client)
            if not with_webhook or not available:
                return jobs.throughput_phase(server, key, jobs_args(args)), available
            secret = secrets.token_hex(24)
            webhook = subscribe(client, receiver, secret)
            figures = deliver(args, server, key, client, receiver, secret, webhook["webhook_id"])
            return {**webhook, **figures}, available


def deliver(
    args: argparse.Namespace,
    server: Server,
    key: str,
    client: httpx.Client,
    receiver: Receiver,
    secret: str,
    webhook_id: str,
) -> dict[str, Any]:
    """Phase B once subscribed: the jobs, the drain, and the receiver's records checked."""
    receiver_before = receiver.cpu_seconds()
    figures = jobs.throughput_phase(server, key, jobs_args(args))
    server_before = server.cpu_seconds()
    drain_s, drained = drain(receiver, figures["jobs_acked"], args.drain_timeout)
    figures["drain_wait_s"] = round(drain_s, 3)
    figures["drain_timed_out"] = not drained
    figures["server_cpu_s_drain"] = round(server.cpu_seconds() - server_before, 2)
    figures["receiver_cpu_s"] = round(receiver.cpu_seconds() - receiver_before, 2)
    completed = {
        str(job["id"]) for job in listed(client, "/infra/jobs", "jobs", {"status": "completed"})
    }
    figures["jobs_completed"] = len(completed)
    path = f"/infra/webhooks/{webhook_id}/deliveries"
    for status in ("pending", "failed"):
        left = listed(client, path, "deliveries", {"status": status})
        figures[f"deliveries_{status}_at_end"] = len(left)
    rows = receiver.take()
    first, last = figures["first_send_at"], figures["last_ack_at"]
    figures.update(delivery_figures(rows, completed, secret, first, last))
    log(
        f"webhook: {figures['events']} events ({figures['events_per_s']}/s), created->arrival "
        f"p50/p99 {figures['latency_p50_ms']}/{figures['latency_p99_ms']} ms, "
        f"missing {figures['missing']}, duplicates {figures['duplicates']}"
    )
    return figures


def jobs_args(args: argparse.Namespace) -> argparse.Namespace:
    """``bench.jobs``' options for its throughput phase, from ours."""
    return jobs.parse_args(
        [
            *("--jobs", str(args.jobs), "--workers", str(args.workers)),
            *("--lanes", str(args.lanes), "--claim-count", str(args.claim_count)),
            *("--client", args.client, "--max-backlog", str(args.max_backlog)),
            *("--duration-limit", str(args.duration_limit)),
        ]
    )


def summary(without: list[dict[str, Any]], with_: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures: medians over the rounds, sums of what went wrong."""

    def median(phases: list[dict[str, Any]], name: str) -> float | None:
        values = [p[name] for p in phases if p.get(name) is not None]
        return round(statistics.median(values), 2) if values else None

    out: dict[str, Any] = {"jobs_per_s_without": median(without, "jobs_per_s")}
    if not with_:
        return out
    out["jobs_per_s_with"] = median(with_, "jobs_per_s")
    a, b = out["jobs_per_s_without"], out["jobs_per_s_with"]
    ratio = b / a if a and b else None
    out["jobs_per_s_ratio"] = round(ratio, 3) if ratio else None
    out["webhook_cost_pct"] = round(100 * (1 - ratio), 1) if ratio else None
    out["within_target"] = ratio is not None and ratio >= BAR
    for name in ("events_per_s", "latency_p50_ms", "latency_p99_ms"):
        out[name] = median(with_, name)
    for name in ("missing", "duplicates", "extra_events", "unexpected_events", "bad_signatures"):
        out[name] = sum(p.get(name) or 0 for p in with_)
    return out


def failed(result: dict[str, Any]) -> bool:
    """A phase cut short, a failed request, or a delivery wrong or missing."""
    phases = [*result["without_webhook"], *result["with_webhook"]]
    if any(p.get(name) for p in phases for name in ("timed_out", "errors", "drain_timed_out")):
        return True
    wrong = ("error", "missing", "extra_events", "unexpected_events", "bad_signatures")
    return any(
        p.get(name)
        for p in result["with_webhook"]
        for name in (*wrong, "unreadable", "id_mismatch")
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhooks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs in each phase")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--lanes", type=int, default=8, help="claim loops per worker process")
    parser.add_argument("--claim-count", type=int, default=10, help="jobs per claim (1..100)")
    parser.add_argument("--client", choices=["async", "sync", "raw"], default="raw")
    parser.add_argument("--max-backlog", type=int, default=500)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of phase A then phase B, each on a fresh server",
    )
    parser.add_argument(
        "--duration-limit", type=float, default=120.0, help="seconds each phase may take"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds to wait after phase B's last ack for every event to arrive",
    )
    add_server_options(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.drain_timeout < 0:
        parser.error("--rounds must be >= 1 and --drain-timeout >= 0")
    jobs_args(args)  # bench.jobs checks its own options
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, result = begin(
        args,
        "webhooks",
        jobs=args.jobs,
        workers=args.workers,
        lanes=args.lanes,
        claim_count=args.claim_count,
        client=args.client,
        max_backlog=args.max_backlog,
        rounds=args.rounds,
    )
    without: list[dict[str, Any]] = []
    with_: list[dict[str, Any]] = []
    available = True
    with running_receiver() as receiver, databases(args) as fresh_database:
        for _ in range(args.rounds):
            figures, available = phase(args, receiver, False, fresh_database)
            without.append(figures)
            if not available:
                log("the server has no /infra/webhooks: phase A only")
                break
            try:
                with_.append(phase(args, receiver, True, fresh_database)[0])
            except (RuntimeError, httpx.HTTPError) as exc:
                log(f"phase B failed: {exc}")
                with_.append({"error": str(exc)})
    result["webhooks"] = "available" if available else "unavailable"
    result.update(summary(without, with_))
    result["without_webhook"] = without
    result["with_webhook"] = with_
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    return 1 if failed(result) else 0


if __name__ == "__main__":
    raise SystemExit(main())
