"""The push and webhook client: CPU per POST of httpx, of ``egress.http1`` and of aiohttp.

Run ``python -m bench.http_clients [--requests N] [--concurrency C]``. One receiver process
on 127.0.0.1 (``bench.webhook_receiver``) answers every POST 200. Each client then runs in a
fresh process of its own, on uvloop: ``C`` loops, each POSTing its share of ``N`` webhook-like
events (a ~300-byte JSON body, ``Content-Type`` and five ``X-Flowyard-*`` headers) one after
the other over kept-alive connections and reading the answer as a delivery does (at most 1 KiB
of it). Measured in that process, after a warm-up: CPU seconds (``getrusage``, user + system)
per request, and requests per second by the wall clock. The receiver's CPU is not counted.

aiohttp is measured when it is installed (it is not a dependency) and skipped with a note
otherwise. One JSON line goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from bench.common import REPO, log, server_env, source_info
from bench.webhooks import running_receiver

CLIENTS = ("httpx", "http1", "aiohttp")
SNIPPET = 1024
"""Bytes of an answer a delivery reads (``dispatcher.SNIPPET_BYTES``)."""
TIMEOUT = 10.0
VARIANTS = 64
"""Distinct events cycled through: building them is not what is measured."""

Post = Callable[[str, bytes, list[tuple[str, str]]], Awaitable[int]]


def events(count: int = VARIANTS) -> list[tuple[bytes, list[tuple[str, str]]]]:
    """Webhook-like deliveries: a ``jobs.completed`` event's body and its headers."""
    out = []
    for n in range(count):
        event_id = f"evt_{n:026d}"
        body = orjson.dumps(
            {
                "id": event_id,
                "topic": "jobs.completed",
                "created_at": "2026-12-06T18:00:00.000Z",
                "project_id": "proj_01JEXAMPLE0000000000000000",
                "data": {
                    "job_id": f"job_{n:026d}",
                    "name": "send-invoice",
                    "run_id": f"run_{n:026d}",
                    "attempt": 1,
                    "result": {"ok": True, "invoice": f"INV-{n:06d}", "amount_cents": 12900},
                },
            }
        )
        headers = [
            ("Content-Type", "application/json"),
            ("X-Flowyard-Event-Id", event_id),
            ("X-Flowyard-Topic", "jobs.completed"),
            ("X-Flowyard-Delivery-Id", f"whd_{n:026d}"),
            ("X-Flowyard-Job-Id", f"job_{n:026d}"),
            ("X-Flowyard-Signature", "t=1765044000,v1=" + "0f" * 32),
        ]
        out.append((body, headers))
    return out


@contextlib.asynccontextmanager
async def _client(name: str) -> Any:
    """A ``post(url, body, headers) -> status`` of client ``name``, open for the block."""
    if name == "httpx":
        import httpx

        async with httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT) as hclient:

            async def post_httpx(url: str, body: bytes, headers: list[tuple[str, str]]) -> int:
                async with hclient.stream("POST", url, content=body, headers=headers) as resp:
                    read = 0
                    async for piece in resp.aiter_raw():
                        read += len(piece)
                        if read >= SNIPPET:
                            break
                    return resp.status_code

            yield post_httpx
    elif name == "http1":
        from flowyard.egress.http1 import Http1Client

        client = Http1Client()
        try:

            async def post_http1(url: str, body: bytes, headers: list[tuple[str, str]]) -> int:
                answer = await client.post(url, body, headers, timeout=TIMEOUT, max_body=SNIPPET)
                return answer.status

            yield post_http1
        finally:
            await client.aclose()
    elif name == "aiohttp":
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def post_aiohttp(url: str, body: bytes, headers: list[tuple[str, str]]) -> int:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    await resp.content.read(SNIPPET)
                    return resp.status

            yield post_aiohttp
    else:
        raise ValueError(f"unknown client {name!r}")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(name: str, url: str, requests: int, concurrency: int) -> dict[str, Any]:
    import anyio

    deliveries = events()
    failed = 0

    async def loop(post: Post, count: int, offset: int) -> None:
        nonlocal failed
        for n in range(count):
            body, headers = deliveries[(offset + n) % len(deliveries)]
            if await post(url, body, headers) != 200:
                failed += 1

    async def run(post: Post, total: int) -> None:
        async with anyio.create_task_group() as tg:
            for lane in range(concurrency):
                share = total // concurrency + (1 if lane < total % concurrency else 0)
                tg.start_soon(loop, post, share, lane * 7)

    async with _client(name) as post:
        warmup = max(concurrency * 50, requests // 20)
        await run(post, warmup)
        cpu, wall = _cpu_seconds(), time.perf_counter()
        await run(post, requests)
        cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    return {"warmup": warmup, "cpu_s": cpu, "wall_s": wall, "failed": failed}


def child(name: str, url: str, requests: int, concurrency: int) -> None:
    """Measure one client in this process (on uvloop) and print its figures as JSON."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(_measure(name, url, requests, concurrency))
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")


def _run_child(name: str, url: str, requests: int, concurrency: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.http_clients", "--child", name, "--url", url]
    cmd += ["--requests", str(requests), "--concurrency", str(concurrency)]
    done = subprocess.run(
        cmd, cwd=REPO, env=server_env(), capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr[-2000:]}")
    return dict(orjson.loads(done.stdout.strip().splitlines()[-1]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_clients", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--requests", type=int, default=10_000, help="POSTs per client")
    parser.add_argument("--concurrency", type=int, default=4, help="loops in flight")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="which, comma-separated")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args.child, args.url, args.requests, args.concurrency)
        return 0
    result: dict[str, Any] = {
        "bench": "http_clients",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "python": sys.version.split()[0],
        **source_info(),
    }
    clients: dict[str, dict[str, Any]] = {}
    with running_receiver() as receiver:
        for name in args.clients.split(","):
            if name == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
                clients[name] = {"skipped": "aiohttp is not installed"}
                log("aiohttp is not installed: skipped")
                continue
            log(f"{name}: {args.requests} requests, {args.concurrency} in flight")
            figures = _run_child(name, f"{receiver.url}/hook", args.requests, args.concurrency)
            received = receiver.count()["requests"]
            receiver.take()
            expected = figures["warmup"] + args.requests
            clients[name] = {
                "cpu_us_per_request": round(figures["cpu_s"] / args.requests * 1e6, 1),
                "requests_per_s": round(args.requests / figures["wall_s"]),
                "failed": figures["failed"],
                "received": received == expected,
            }
            log(f"{name}: {clients[name]}")
    result["clients"] = clients
    httpx_cpu = clients.get("httpx", {}).get("cpu_us_per_request")
    ours = clients.get("http1", {}).get("cpu_us_per_request")
    result["ratio_httpx_over_ours"] = round(httpx_cpu / ours, 1) if httpx_cpu and ours else None
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    bad = [c for c in clients.values() if c.get("failed") or c.get("received") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
