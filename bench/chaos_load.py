"""The crash soak's load: trigger, job-creating and worker threads, and the push handler.

Everything goes over HTTP to 127.0.0.1. The threads record what the server acknowledged in a
``Ledger`` (``bench.chaos_checks``), which the checks hold the file to after the run. With
several cluster nodes the threads are spread over them: each has a home node, and a request
its home node cannot take (down, or 503 while shards move) goes to the next node.
"""

from __future__ import annotations

import functools
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench.chaos_checks import Ack, Ledger
from bench.common import HOST

QUEUES = {"A": "chaos-a", "C": "chaos-c", "D": "chaos-d", "R": "chaos-r", "direct": "chaos-direct"}
FAIL_RATE = {"chaos-a": 0.03, "chaos-c": 0.05, "chaos-d": 0.15, "chaos-r": 0.1, "chaos-direct": 0.1}
PUSH_FAIL_RATE = 0.25
LEASE_SECONDS = 5


@dataclass
class Settings:
    """One soak run."""

    cycles: int = 30
    seconds_per_cycle: float = 6.0
    seed: int = 0
    triggers_per_second: float = 30.0
    trigger_threads: int = 2
    jobs_per_second: float = 5.0
    quiesce_timeout: float = 90.0
    delivery_timeout: float = 30.0
    sync: str = "full"
    workdir: Path | None = None
    db: str | None = None
    """A PostgreSQL URL of a fresh database (default: a SQLite file in ``workdir``)."""
    server_args: tuple[str, ...] = ()
    nodes: int = 0
    """Cluster nodes on the (PostgreSQL) database; 0: one server without ``--node-url``."""
    sigterm_share: float = 0.25
    """With nodes: the share of kills that are a SIGTERM (a hand-over), not a SIGKILL."""


@dataclass
class Target:
    """The servers' URLs (one per node, or the one server's) and the key, read by every thread."""

    urls: list[str]
    key: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def url(self, lane: int) -> str:
        """The URL of node ``lane`` (modulo the number of nodes)."""
        return self.urls[lane % len(self.urls)]


class Load:
    """The client side: threads that keep the server busy and record what it acknowledged."""

    def __init__(
        self, target: Target, blueprint_id: str, settings: Settings, ledger: Ledger
    ) -> None:
        self.target = target
        self.blueprint_id = blueprint_id
        self.settings = settings
        self.ledger = ledger
        self.producing = threading.Event()
        self.working = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.producing.set()
        self.working.set()
        seed = self.settings.seed
        for lane in range(self.trigger_lanes):
            self._spawn(f"triggers-{lane}", functools.partial(self._triggers, lane), self.producing)
        creator = functools.partial(self._creator, self.trigger_lanes)
        self._spawn("creator", creator, self.producing)
        for node in range(len(self.target.urls)):
            for index, queue in enumerate(QUEUES.values()):
                rng = random.Random(seed * 100 + node * len(QUEUES) + index)
                work = functools.partial(self._worker, queue, rng, node)
                self._spawn(f"worker-{queue}-{node}", work, self.working)

    @property
    def trigger_lanes(self) -> int:
        """Trigger threads: at least one per node, so that every node starts executions."""
        return max(self.settings.trigger_threads, len(self.target.urls))

    def _spawn(self, name: str, body: Callable[[], None], running: threading.Event) -> None:
        def guarded() -> None:
            try:
                body()
            except Exception as exc:  # a harness bug must fail the run, not vanish
                self.note(f"{name} thread crashed: {exc!r}")
                running.clear()

        thread = threading.Thread(target=guarded, name=f"chaos-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop_producing(self) -> None:
        self.producing.clear()

    def stop(self) -> None:
        self.producing.clear()
        self.working.clear()
        for thread in self.threads:
            thread.join(60)

    def note(self, detail: str) -> None:
        with self.target.lock:
            self.ledger.unexpected.append(detail)

    def count(self, what: str) -> None:
        with self.target.lock:
            self.ledger.counts[what] += 1

    def call(
        self, client: httpx.Client, path: str, body: Any, running: threading.Event, home: int
    ) -> httpx.Response | None:
        """POST until a server answers (not 503); None once ``running`` is cleared.

        A server is down part of the time: connection errors and 503 (starting, stopping,
        shards moving between nodes) are expected, and the same request is sent again, with
        its idempotency key if any: to the next node when there are several, starting from
        node ``home``. Nothing counts as acknowledged before a server answered it.
        """
        retried = False
        node = home
        while running.is_set():
            try:
                response = client.post(
                    self.target.url(node) + path, json=body, headers=self.target.headers()
                )
            except httpx.TransportError:
                self.count("connection_errors")
            else:
                if response.status_code != 503:
                    if retried:
                        self.count("requests_resent")
                    return response
                self.count("answers_503")
            retried = True
            node += 1
            time.sleep(0.05)
        return None

    def _triggers(self, lane: int) -> None:
        pause = self.trigger_lanes / self.settings.triggers_per_second
        path = f"/infra/workflows/blueprints/{self.blueprint_id}/trigger"
        with httpx.Client(timeout=10) as client:
            n = 0
            while self.producing.is_set():
                key = f"chaos-{lane}-{n}"
                body = {"input_data": {"n": n}, "idempotency_key": key}
                response = self.call(client, path, body, self.producing, lane)
                if response is None:
                    break
                if response.status_code == 200:
                    with self.target.lock:
                        self.ledger.triggers[key] = (response.json()["execution_id"], n)
                    if response.headers.get("Idempotent-Replayed") == "true":
                        self.count("triggers_replayed")
                else:
                    self.note(f"trigger {key}: {response.status_code} {response.text[:200]}")
                n += 1
                time.sleep(pause)

    def _creator(self, home: int) -> None:
        pause = 1 / self.settings.jobs_per_second
        trigger = {"type": "pull", "queue": QUEUES["direct"]}
        with httpx.Client(timeout=10) as client:
            n = 0
            while self.producing.is_set():
                key = f"direct-{n}"
                body = {"trigger": trigger, "payload": {"n": n}, "idempotency_key": key}
                response = self.call(client, "/infra/jobs", body, self.producing, home)
                if response is None:
                    break
                if response.status_code == 202:
                    with self.target.lock:
                        self.ledger.created[response.json()["id"]] = key
                else:
                    self.note(f"create {key}: {response.status_code} {response.text[:200]}")
                n += 1
                time.sleep(pause)

    def _worker(self, queue: str, rng: random.Random, home: int) -> None:
        claim = {
            "queue": queue,
            "count": 10,
            "visibility_timeout": LEASE_SECONDS,
            "wait_seconds": 1,
        }
        with httpx.Client(timeout=10) as client:
            while self.working.is_set():
                response = self.call(client, "/infra/jobs/claim", claim, self.working, home)
                if response is None:
                    return
                if response.status_code != 200:
                    self.note(f"claim {queue}: {response.status_code} {response.text[:200]}")
                    time.sleep(0.2)
                    continue
                for job in response.json():
                    if not self._ack(client, job, rng.random() < FAIL_RATE[queue], home):
                        return

    def _ack(self, client: httpx.Client, job: dict[str, Any], fail: bool, home: int) -> bool:
        """Ack one claimed job, completed or failed for good; False once the workers stop."""
        job_id, attempt = job["id"], job["attempt"]
        body: dict[str, Any] = {"claim_token": job["claim_token"]}
        if fail:
            body |= {"status": "failed", "error": f"chaos {job_id}", "retryable": False}
        else:
            body |= {"status": "completed", "result": {"job": job_id, "attempt": attempt}}
        response = self.call(client, f"/infra/jobs/{job_id}/ack", body, self.working, home)
        if response is None:
            return False
        if response.status_code == 200:
            ack = Ack(job_id, attempt, body["status"], body.get("result"), body.get("error"))
            with self.target.lock:
                self.ledger.acks.append(ack)
        elif response.status_code == 409:
            self.count("acks_stale")  # the lease ran out while the server was down
        else:
            self.note(f"ack {job_id}: {response.status_code} {response.text[:200]}")
        return True


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a client goes away.

    The flowyard server is killed with its keep-alive connections open: resets are expected.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class PushHandler:
    """The push steps' HTTP endpoint on 127.0.0.1: some deliveries answer 500, most 200."""

    def __init__(self, ledger: Ledger, lock: threading.Lock, seed: int) -> None:
        rng = random.Random(seed)

        class Endpoint(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"null")
                job_id = self.headers.get("X-Flowyard-Job-Id", "")
                attempt = int(self.headers.get("X-Flowyard-Attempt") or 0)
                with lock:
                    fail = rng.random() < PUSH_FAIL_RATE
                    ledger.counts["push_deliveries"] += 1
                    if not fail:  # recorded before answering: the answer may be the last act
                        ledger.pushes_ok.add((job_id, attempt))
                status = 500 if fail else 200
                body = {"job": job_id, "attempt": attempt, "n": (payload or {}).get("n")}
                data = json.dumps({"error": "chaos"} if fail else body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer((HOST, 0), Endpoint)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/b"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PushHandler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
