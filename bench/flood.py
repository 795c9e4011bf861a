"""Flood benchmark: many connections creating jobs and triggering executions at once.

Run ``python -m bench.flood --help``. Against one real server process:

1. A blueprint with one pull step on a queue nobody claims; the server's RSS (``VmRSS``) is
   read once it is idle.
2. ``--connections`` keep-alive connections (one task each, a minimal HTTP/1.1 client on
   anyio sockets, so that the client is not the bottleneck) send job creations and workflow
   triggers, alternately, for ``--seconds``, each as soon as its previous answer arrived. The
   RSS is sampled every 100 ms. Reported: answers by status, latency of accepted and refused
   requests, answers that break the contract (a 5xx other than a JSON ``503 unavailable``
   with ``Retry-After``), connection errors, RSS before, at the peak and after.
3. Recovery: once the flood stops, one connection sends ``--recovery-calls`` creations one
   after another. Reported: seconds until the first 2xx, statuses and latency of the calls.

Exactly one JSON line goes to stdout; progress goes to stderr. All traffic goes to 127.0.0.1
and every phase is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from bench.common import (
    Server,
    add_server_options,
    begin,
    create_key,
    databases,
    log,
    machine_busy_seconds,
    proc_peak_rss_mb,
    proc_rss_mb,
    self_cpu_seconds,
    start_server,
    stop_server,
    summary_ms,
)

QUEUE = "nobody"


@dataclass
class Figures:
    """What the flood saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    accepted_s: list[float] = field(default_factory=list)
    refused_s: list[float] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # answers that break the contract
    connection_errors: int = 0
    rss_samples: list[float] = field(default_factory=list)


class Connection:
    """HTTP/1.1 on one keep-alive socket: one write per request, the answer read to its
    ``Content-Length`` (every Flowyard response has one). Reconnects after an error."""

    def __init__(self, url: str, key: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.head = (
            f"host: {parsed.netloc.decode()}\r\nauthorization: Bearer {key}\r\n"
            "content-type: application/json\r\n"
        ).encode()
        self.stream: SocketStream | None = None
        self.reader: BufferedByteReceiveStream | None = None

    async def request(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.stream is None or self.reader is None:
            self.stream = await anyio.connect_tcp(self.host, self.port)
            self.reader = BufferedByteReceiveStream(self.stream)
        try:
            start = f"POST {path} HTTP/1.1\r\n".encode()
            await self.stream.send(
                start + self.head + f"content-length: {len(body)}\r\n\r\n".encode() + body
            )
            head = await self.reader.receive_until(b"\r\n\r\n", 65536)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            content = await self.reader.receive_exactly(int(headers["content-length"]))
            return int(lines[0].split(" ", 2)[1]), headers, content
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        self.stream = self.reader = None


def check(status: int, headers: dict[str, str], content: bytes) -> str | None:
    """Why an answer breaks the contract, or None."""
    if 200 <= status < 300:
        return None
    try:
        body: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        return f"{status} not JSON: {content[:100]!r}"
    if status == 503 and body.get("code") == "unavailable" and headers.get("retry-after"):
        return None
    if status == 429 and body.get("code") == "rate_limited" and headers.get("retry-after"):
        return None
    return f"{status}: {content[:200]!r}"


async def flood_connection(
    server: Server, key: str, blueprint_id: str, deadline: float, figures: Figures, n: int
) -> None:
    connection = Connection(server.url, key)
    job = orjson.dumps({"trigger": {"type": "pull", "queue": QUEUE}, "payload": {"n": n}})
    trigger = orjson.dumps({"input_data": {"n": n}})
    calls = [("/infra/jobs", job), (f"/infra/workflows/blueprints/{blueprint_id}/trigger", trigger)]
    i = n
    while time.monotonic() < deadline:
        path, body = calls[i % 2]
        i += 1
        sent = time.monotonic()
        try:
            status, headers, content = await connection.request(path, body)
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead):
            figures.connection_errors += 1
            await anyio.sleep(0.05)
            continue
        took = time.monotonic() - sent
        figures.statuses[status] += 1
        (figures.accepted_s if 200 <= status < 300 else figures.refused_s).append(took)
        problem = check(status, headers, content)
        if problem and len(figures.broken) < 20:
            figures.broken.append(problem)
    await connection.aclose()


async def sample_rss(server: Server, figures: Figures, stop: anyio.Event) -> None:
    while not stop.is_set():
        figures.rss_samples.append(proc_rss_mb(server.pid))
        with anyio.move_on_after(0.1):
            await stop.wait()


async def recovery(server: Server, key: str, calls: int, limit: float) -> dict[str, Any]:
    """Normal calls once the flood is over: how soon and how fast they are served."""
    connection = Connection(server.url, key)
    body = orjson.dumps({"trigger": {"type": "pull", "queue": QUEUE}})
    began = time.monotonic()
    first_ok: float | None = None
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    with anyio.move_on_after(limit):
        while len(latencies) < calls:
            sent = time.monotonic()
            status, _, _ = await connection.request("/infra/jobs", body)
            statuses[status] += 1
            if 200 <= status < 300:
                first_ok = first_ok or time.monotonic() - began
                latencies.append(time.monotonic() - sent)
            else:
                await anyio.sleep(0.01)
    await connection.aclose()
    return {
        "first_2xx_after_s": None if first_ok is None else round(first_ok, 3),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "latency_ms": summary_ms(latencies),
    }


async def run(args: argparse.Namespace, server: Server, key: str) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=server.url, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        step = {"id": "wait", "job_trigger": {"trigger": {"type": "pull", "queue": QUEUE}}}
        response = await client.post(
            "/infra/workflows/blueprints", json={"name": "bench-flood", "steps": [step]}
        )
        response.raise_for_status()
        blueprint_id = response.json()["id"]
    await anyio.sleep(1)
    figures = Figures()
    rss_before = proc_rss_mb(server.pid)
    log(f"flooding with {args.connections} connections for {args.seconds}s")
    stop = anyio.Event()
    cpu_before, own_cpu_before = server.cpu_seconds(), self_cpu_seconds()
    busy_before = machine_busy_seconds()
    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sample_rss, server, figures, stop)
        with anyio.fail_after(args.seconds + 60):
            async with anyio.create_task_group() as flood:
                for n in range(args.connections):
                    deadline = began + args.seconds
                    flood.start_soon(
                        flood_connection, server, key, blueprint_id, deadline, figures, n
                    )
        stop.set()
    flood_s = time.monotonic() - began
    server_cpu = server.cpu_seconds() - cpu_before
    client_cpu = self_cpu_seconds() - own_cpu_before
    other_cpu = machine_busy_seconds() - busy_before - server_cpu - client_cpu
    recovered = await recovery(server, key, args.recovery_calls, 60)
    await anyio.sleep(1)
    accepted = sum(v for k, v in figures.statuses.items() if 200 <= k < 300)
    return {
        "flood_s": round(flood_s, 2),
        "answers": sum(figures.statuses.values()),
        "statuses": {str(k): v for k, v in sorted(figures.statuses.items())},
        "accepted_per_s": round(accepted / flood_s, 1),
        "accepted_latency_ms": summary_ms(figures.accepted_s),
        "refused_latency_ms": summary_ms(figures.refused_s),
        "server_cpu_share": round(server_cpu / flood_s, 2),
        "client_cpu_share": round(client_cpu / flood_s, 2),
        "other_cpu_share": round(max(0.0, other_cpu) / flood_s, 2),
        "broken_answers": figures.broken,
        "connection_errors": figures.connection_errors,
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(max(figures.rss_samples, default=rss_before), 1),
        "rss_hwm_mb": round(proc_peak_rss_mb(server.pid), 1),
        "rss_after_mb": round(proc_rss_mb(server.pid), 1),
        "recovery": recovered,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flood", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--connections", type=int, default=400, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the flood lasts")
    parser.add_argument(
        "--recovery-calls", type=int, default=200, help="creations sent after the flood"
    )
    add_server_options(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 2000 or not 0 < args.seconds <= 300:
        parser.error("--connections must be 1..2000 and --seconds in (0, 300]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _, result = begin(args, "flood", connections=args.connections, seconds=args.seconds)
    result["server_args"] = args.server_arg
    with databases(args) as fresh_database:
        server = start_server(sync=args.sync, extra_args=args.server_arg, db=fresh_database())
        try:
            key = create_key(server.db, "bench")
            result |= anyio.run(run, args, server, key)
        finally:
            result["server_exit"] = stop_server(server)
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
