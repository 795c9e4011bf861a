"""The well-behaved client of ``bench.abuse``: what a normal user sees while an attack runs.

It runs in its own process, so that the attack's sockets and the benchmark's event loop do not
share its thread or its interpreter lock: the latencies it reports are the server's. One
keep-alive connection sends small authenticated calls, alternately ``GET /infra/jobs?limit=1``
and ``POST /infra/jobs`` (a pull job), pausing ``pause`` seconds between them. Every call is
timestamped with ``time.monotonic()`` (one clock for every process on Linux), so the driver
keeps only the calls made while the attack ran.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any

from bench.common import HOST, percentile

TIMEOUT = 10.0
"""Seconds a call may take before it counts as an error (its latency is then this long)."""

Sample = tuple[float, float, str]
"""(start, seconds, outcome): outcome is the status code, or ``timeout`` / ``reset``."""


def _read_answer(sock: socket.socket) -> tuple[int, bool]:
    """The status of the next answer, read to its ``Content-Length``, and whether the server
    closes the connection after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed by the server")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length, closes = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value == "close":
            closes = True
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed by the server")
        body += chunk
    return int(lines[0].split(" ", 2)[1]), closes


def _calls(key: str) -> list[bytes]:
    auth = f"host: {HOST}\r\nauthorization: Bearer {key}\r\n"
    body = b'{"trigger": {"type": "pull", "queue": "good"}, "payload": {"n": 1}}'
    return [
        f"GET /infra/jobs?limit=1 HTTP/1.1\r\n{auth}\r\n".encode(),
        (
            f"POST /infra/jobs HTTP/1.1\r\n{auth}content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        + body,
    ]


def run_good_client(
    port: int, key: str, pause: float, ready: Event, stop: Event, results: Any
) -> None:
    """The child process: calls until ``stop`` is set, then put the samples on ``results``."""
    calls = _calls(key)
    samples: list[Sample] = []
    sock: socket.socket | None = None
    i = 0
    while not stop.is_set():
        began = time.monotonic()
        try:
            if sock is None:
                sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
            sock.settimeout(max(0.01, began + TIMEOUT - time.monotonic()))
            sock.sendall(calls[i % 2])
            status, closes = _read_answer(sock)
            outcome = str(status)
            ready.set()
        except TimeoutError:
            outcome, closes = "timeout", True
        except OSError:
            outcome, closes = "reset", True
        if closes and sock is not None:
            sock.close()
            sock = None
        samples.append((began, time.monotonic() - began, outcome))
        i += 1
        stop.wait(pause)
    if sock is not None:
        sock.close()
    results.put(samples)


@dataclass
class GoodClient:
    """The well-behaved client's process, started by :meth:`start` and ended by :meth:`stop`."""

    process: Any
    ready: Event
    stopping: Event
    results: Any

    @classmethod
    def start(cls, port: int, key: str, pause: float = 0.01) -> GoodClient:
        """Start the client and wait (up to 30 s) until its first call was answered."""
        ctx = mp.get_context("spawn")
        ready, stopping, results = ctx.Event(), ctx.Event(), ctx.Queue()
        process = ctx.Process(
            target=run_good_client,
            args=(port, key, pause, ready, stopping, results),
            daemon=True,
        )
        process.start()
        client = cls(process, ready, stopping, results)
        if not ready.wait(30):
            client.kill()
            raise RuntimeError("the well-behaved client got no answer in 30 s")
        return client

    def stop(self) -> list[Sample]:
        """Stop the client; every call it made."""
        self.stopping.set()
        try:
            samples: list[Sample] = self.results.get(timeout=TIMEOUT + 10)
        finally:
            self.kill()
        return samples

    def kill(self) -> None:
        """End the process (at once if it does not stop by itself)."""
        self.stopping.set()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def good_figures(samples: list[Sample], began: float, ended: float) -> dict[str, Any]:
    """Count, p50, p99 and errors of the calls that started between ``began`` and ``ended``.

    An error is any outcome but a 2xx answer: a refusal (503), a timeout, a reset.
    """
    during = [(took, outcome) for start, took, outcome in samples if began <= start <= ended]
    latencies = [took for took, _ in during]
    errors = Counter(o for _, o in during if not (o.isdigit() and 200 <= int(o) < 300))

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "good_calls": len(during),
        "good_p50_ms": ms(percentile(latencies, 50)),
        "good_p99_ms": ms(percentile(latencies, 99)),
        "good_max_ms": ms(max(latencies, default=None)),
        "good_errors": sum(errors.values()),
        "good_error_kinds": dict(sorted(errors.items())),
    }
