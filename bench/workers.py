"""Client-side pieces the load benchmarks share: a cheap HTTP poster, worker processes, triggers.

- ``Poster``: POST JSON over one keep-alive connection: a minimal HTTP/1.1 client on a plain
  socket (``wire``, the cheapest), ``httpx.HTTPTransport`` driven directly (``raw``) or
  ``httpx.Client`` (``sync``).
- ``PullLane``: one claim loop of a pull worker over a ``Poster``, on either worker protocol:
  ``exchange`` (``POST /infra/jobs/exchange``: the acks of the jobs it finished ride with its
  next claim, one request per batch) or ``ack`` (a claim, then one ack per job).
- ``WorkerPool``: worker processes (spawned) that share counters, a stop event and a results
  queue; what a worker does is the ``target`` function the benchmark passes in.
- ``trigger_executions``: a thread pool that triggers workflow executions, either as fast as a
  gate allows (bounded backlog) or paced at a fixed rate.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.common import log, self_cpu_seconds

JSON_HEADERS = {"content-type": "application/json"}
CLIENTS = ("wire", "raw", "sync")
TRANSPORT_ERRORS = (httpx.HTTPError, OSError, ValueError)
"""What a failed request raises, whatever the client."""


class WireConnection:
    """HTTP/1.1 over one keep-alive socket, with nothing else: the request is one ``sendall``,
    the answer is read up to its ``Content-Length`` (every Flowyard response has one). Raises
    ``OSError`` on a broken connection (and reconnects on the next request) or ``ValueError``
    on an answer it cannot read.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float):
        url = httpx.URL(base_url)
        self.address = (url.host, url.port or 80)
        self.timeout = timeout
        lines = [f"host: {url.netloc.decode()}", "accept: */*"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.head = ("\r\n".join(lines) + "\r\n").encode()
        self.sock: socket.socket | None = None
        self.buffer = b""

    def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        body = body or b""
        start = f"{method} {path} HTTP/1.1\r\n".encode()
        length = f"content-length: {len(body)}\r\n\r\n".encode()
        try:
            self.sock.sendall(start + self.head + length + body)
            return self._response()
        except BaseException:
            self.close()
            raise

    def _response(self) -> tuple[int, bytes]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        size = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                size = int(value)
        if size is None:
            raise ValueError(f"no content-length in the answer: {head[0]}")
        stop = end + 4 + size
        while len(self.buffer) < stop:
            self._fill()
        body, self.buffer = self.buffer[end + 4 : stop], self.buffer[stop:]
        return status, body

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Poster:
    """POST JSON over one keep-alive connection, as ``(status, body)``.

    ``wire``: :class:`WireConnection`. ``sync``: an ``httpx.Client``. ``raw``: an
    ``httpx.HTTPTransport`` driven directly, which skips the client layer (URL merging,
    cookies, redirects, event hooks): same connection handling and HTTP/1.1 code, about 30%
    less CPU per request than ``sync``.
    """

    def __init__(self, base_url: str, headers: dict[str, str], mode: str, timeout: float):
        self.base_url = base_url
        # Only the client of ``mode`` is built: each httpx one loads the CA bundle (about
        # 15 ms of CPU), which dozens of lanes starting at once would add to a measured phase.
        self.wire: WireConnection | None = None
        self.client: httpx.Client | None = None
        self.transport: httpx.HTTPTransport | None = None
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        if mode == "wire":
            self.wire = WireConnection(base_url, headers, timeout)
        elif mode == "sync":
            self.client = httpx.Client(
                base_url=base_url, headers=headers, limits=limits, timeout=timeout
            )
        else:
            self.transport = httpx.HTTPTransport(limits=limits)
        host = httpx.URL(base_url).netloc.decode()
        self.raw_headers = [
            ("host", host),
            ("accept", "*/*"),
            ("content-type", "application/json"),
            ("authorization", headers["authorization"]),
        ]
        self.extensions = {
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        }

    def __call__(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self.request("POST", path, body)

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path, None)

    def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self.wire is not None:
            return self.wire.request(method, path, body)
        if self.client is not None:
            response = self.client.request(method, path, content=body)
            return response.status_code, response.content
        assert self.transport is not None
        request = httpx.Request(
            method,
            self.base_url + path,
            headers=self.raw_headers,
            content=body,
            extensions=self.extensions,
        )
        response = self.transport.handle_request(request)
        try:
            return response.status_code, response.read()
        finally:
            response.close()

    def __enter__(self) -> Poster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for part in (self.wire, self.client, self.transport):
            if part is not None:
                part.close()


PROTOCOLS = ("exchange", "ack")
"""How lanes talk to the server: ``exchange`` (the default) or a claim then one ack per job."""

Work = Callable[[dict[str, Any], float], Any]
"""A job and the time its ack is built -> the job's result."""
Acked = Callable[[dict[str, Any], float, float, float, float], None]
"""Called per acked job: the job, claim sent, claim answered, ack sent, ack answered."""
Failed = Callable[[str, int, bytes], None]
"""Called per refused request or ack: what (``claim``, ``ack``, ``exchange``), status, body."""


@dataclass
class PullLane:
    """One claim loop: claim up to ``count`` jobs of ``queue`` (long-polling ``wait_seconds``),
    work them out one by one with ``work``, ack them, until ``stop``; ``requests`` counts the
    requests it sent. With ``exchange`` the acks go with the next claim, which then takes only
    the jobs ready at once (an empty answer is followed by a long-poll without acks), and the
    last ones alone once ``stop`` is set, so every job it claimed is acked when it returns."""

    post: Poster
    queue: str
    count: int
    wait_seconds: float
    visibility_timeout: int = 60
    protocol: str = "exchange"
    requests: int = 0

    def run(
        self,
        stop: Any,
        work: Work,
        acked: Acked,
        failed: Failed,
        claimed: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        claim = {
            "queue": self.queue,
            "count": self.count,
            "wait_seconds": self.wait_seconds,
            "visibility_timeout": self.visibility_timeout,
        }
        if self.protocol == "exchange":
            self._exchanges(stop, claim, work, acked, failed, claimed)
        else:
            self._claims_and_acks(stop, orjson.dumps(claim), work, acked, failed, claimed)

    def _send(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.requests += 1
        try:
            return self.post(path, body)
        except TRANSPORT_ERRORS as exc:
            return 0, repr(exc).encode()

    def _claims_and_acks(
        self,
        stop: Any,
        claim: bytes,
        work: Work,
        acked: Acked,
        failed: Failed,
        claimed: Callable[[list[dict[str, Any]]], None] | None,
    ) -> None:
        while not stop.is_set():
            claim_sent = time.time()
            status, content = self._send("/infra/jobs/claim", claim)
            got = time.time()
            if status != 200:
                failed("claim", status, content)
                time.sleep(0.05)
                continue
            jobs = orjson.loads(content)
            if claimed is not None:
                claimed(jobs)
            for job in jobs:
                sent = time.time()
                body = {"status": "completed", "result": work(job, sent)}
                body["claim_token"] = job["claim_token"]
                status, content = self._send(f"/infra/jobs/{job['id']}/ack", orjson.dumps(body))
                if status != 200:
                    failed("ack", status, content)
                    continue
                acked(job, claim_sent, got, sent, time.time())

    def _exchanges(
        self,
        stop: Any,
        claim: dict[str, Any],
        work: Work,
        acked: Acked,
        failed: Failed,
        claimed: Callable[[list[dict[str, Any]]], None] | None,
    ) -> None:
        held: list[tuple[dict[str, Any], float, float]] = []  # job, claim sent, answered
        while True:
            stopping = stop.is_set()
            if stopping and not held:
                return
            sent = time.time()
            acks = [
                {
                    "job_id": job["id"],
                    "claim_token": job["claim_token"],
                    "status": "completed",
                    "result": work(job, sent),
                }
                for job, _, _ in held
            ]
            body: dict[str, Any] = {"acks": acks}
            if not stopping:
                # With acks, claim only what is ready now: the answer (the acks' outcomes) must
                # not wait out a long-poll; with none, long-poll as a claim does.
                body["claim"] = {**claim, "wait_seconds": 0} if acks else claim
            status, content = self._send("/infra/jobs/exchange", orjson.dumps(body))
            got = time.time()
            if status != 200:
                failed("exchange", status, content)  # the acks go again with the next one
                time.sleep(0.05)
                continue
            answer = orjson.loads(content)
            for (job, claim_sent, claim_got), outcome in zip(held, answer["acks"], strict=True):
                if outcome["ok"]:
                    acked(job, claim_sent, claim_got, sent, got)
                else:
                    failed("ack", 200, orjson.dumps(outcome))
            held = [(job, sent, got) for job in answer["jobs"]]
            if claimed is not None and not stopping:
                claimed(answer["jobs"])


def run_lanes(
    lane: Callable[[Poster], None],
    posters: Callable[[], Poster],
    count: int,
    ready: Any,
) -> float:
    """Run ``count`` threads of ``lane``, each with a ``Poster`` of its own, to their end.

    The clients are built before ``ready`` (a shared counter) is counted up, so that their
    set-up is not measured. Returns the CPU seconds this process used from then on.
    """
    threads = [threading.Thread(target=lane, args=(posters(),), daemon=True) for _ in range(count)]
    with ready.get_lock():
        ready.value += 1
    cpu_start = self_cpu_seconds()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return self_cpu_seconds() - cpu_start


def auth_headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **JSON_HEADERS}


class WorkerPool:
    """Worker processes sharing ``counters`` counters, a stop event and a results queue.

    Each process runs ``target(config, counters, ready, stop, results)``: ``counters`` is a
    shared ``multiprocessing.Array("q", n)`` (``counters[0]`` is the acked count by
    convention), ``ready`` a shared int each process increments once it is set up, ``stop`` an
    event, and ``results`` a queue for the one result dict each process sends back at the end.
    ``target`` must be a module-level function (processes are spawned).
    """

    def __init__(
        self,
        target: Callable[..., None],
        configs: Sequence[Any],
        counters: int = 1,
    ) -> None:
        self.ctx = mp.get_context("spawn")
        self.configs = configs
        self.counters = self.ctx.Array("q", counters)
        self.ready = self.ctx.Value("i", 0)
        self.stop = self.ctx.Event()
        self.results = self.ctx.Queue()
        self.procs = [
            self.ctx.Process(
                target=target,
                args=(config, self.counters, self.ready, self.stop, self.results),
                name=f"bench-worker-{index}",
                daemon=True,
            )
            for index, config in enumerate(configs)
        ]

    def start(self, timeout: float = 60.0) -> None:
        for proc in self.procs:
            proc.start()
        deadline = time.monotonic() + timeout
        while self.ready.value < len(self.procs):
            if time.monotonic() > deadline or any(p.exitcode is not None for p in self.procs):
                self.terminate()
                raise RuntimeError("worker processes did not start")
            time.sleep(0.02)
        # Give every lane's first long-poll claim time to reach the server.
        time.sleep(0.3)

    def count(self, index: int = 0) -> int:
        return int(self.counters[index])

    def acked_count(self) -> int:
        return self.count(0)

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        """Stop the workers (they finish their current long-poll) and collect their results."""
        self.stop.set()
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < len(self.procs) and time.monotonic() < deadline:
            try:
                out.append(self.results.get(timeout=0.2))
            except queue.Empty:
                if all(p.exitcode is not None for p in self.procs) and self.results.empty():
                    break
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
        self.terminate()
        if len(out) < len(self.procs):
            log(f"only {len(out)} of {len(self.procs)} workers reported results")
        return out

    def terminate(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


# --------------------------------------------------------------------------- triggers


@dataclass
class Triggered:
    """What ``trigger_executions`` did: execution id -> (n, request sent, response received)."""

    executions: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    first_send: float = 0.0
    last_done: float = 0.0
    errors: int = 0
    late_s: list[float] = field(default_factory=list)  # paced: how far behind schedule


def trigger_executions(
    url: str | Sequence[str],
    key: str,
    blueprint_id: str,
    count: int,
    threads: int,
    deadline: float,
    *,
    start: int = 0,
    rate: float | None = None,
    client: str = "wire",
    gate: Callable[[int], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Triggered:
    """Trigger ``count`` executions with ``input_data`` ``{"n": start + i}`` from ``threads``
    threads, each with its own keep-alive connection (``client``: one of ``CLIENTS``); with
    several URLs (a cluster's nodes), thread i talks to ``url[i % len(url)]``.

    ``rate``: execution i is sent no earlier than ``i / rate`` s after the start (open loop,
    paced). ``gate(issued)``: called before each send with the number of triggers issued so
    far; the thread waits (1 ms steps) while it returns False (bounded backlog). A failed
    trigger (error or non-200) is counted and retried after 50 ms. Stops at ``deadline``
    (``time.monotonic()``).
    """
    out = Triggered()
    lock = threading.Lock()
    next_index = [0]
    path = f"/infra/workflows/blueprints/{blueprint_id}/trigger"
    began = time.monotonic()
    headers = auth_headers(key)

    def take() -> int | None:
        with lock:
            i = next_index[0]
            if i >= count:
                return None
            next_index[0] = i + 1
            return i

    urls = [url] if isinstance(url, str) else list(url)

    def run(lane: int) -> None:
        with Poster(urls[lane % len(urls)], headers, client, 60.0) as post:
            while time.monotonic() < deadline:
                i = take()
                if i is None:
                    return
                if rate:
                    delay = began + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        with lock:
                            out.late_s.append(-delay)
                if gate is not None:
                    while not gate(i) and time.monotonic() < deadline:
                        time.sleep(0.001)
                n = start + i
                body = orjson.dumps({"input_data": {"n": n}})
                while time.monotonic() < deadline:
                    sent = time.time()
                    try:
                        status, content = post(path, body)
                    except TRANSPORT_ERRORS as exc:
                        status, content = 0, repr(exc).encode()
                    done = time.time()
                    if status == 200:
                        execution_id = orjson.loads(content)["execution_id"]
                        with lock:
                            out.executions[execution_id] = (n, sent, done)
                            if not out.first_send or sent < out.first_send:
                                out.first_send = sent
                            out.last_done = max(out.last_done, done)
                            triggered = len(out.executions)
                        if progress is not None:
                            progress(triggered)
                        break
                    with lock:
                        out.errors += 1
                        errors = out.errors
                    if errors <= 5:
                        log(f"trigger {status}: {content[:200]!r}")
                    time.sleep(0.05)

    pool = [threading.Thread(target=run, args=(lane,), daemon=True) for lane in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return out
