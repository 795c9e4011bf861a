"""Attack 1 of ``bench.abuse``: handlers aimed inside, past ``--handler-network public``.

A real HTTP listener on 127.0.0.1 stands for what a handler must never reach (an admin port,
a metadata service). Immediate jobs name it through every form of a loopback address and
through non-global ranges that ``ipaddress.is_global`` misses on Python 3.11 (NAT64, 6to4,
site-local), each with a ``callback_url`` on the listener too. The server runs with
``--handler-network public``: the listener must receive nothing, and every job must end
``failed`` with ``handler_blocked`` (or be refused at creation). A name whose DNS answer
changes between the check and the connection (rebinding) needs a DNS server of one's own;
``localhost``, which resolves to two loopback addresses, is the name tried here.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio

from bench.abuse_target import Attack, Figures, Target
from bench.common import HOST

HOSTS = [
    "localhost",
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0.0.0.0",
    "[::ffff:127.0.0.1]",
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[fec0::1]",  # site-local
]
ENDED = {"completed", "failed", "cancelled"}


class Listener:
    """An HTTP server on 127.0.0.1 that answers 200 ``{}`` and counts requests by path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        lock = threading.Lock()
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                with lock:
                    hits[self.path.split("?")[0]] += 1
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(min(length, 1 << 20))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


async def handler_network(target: Target, _: None) -> Figures:
    """Create the jobs, wait until each ended (10 s at most), count what reached the listener."""
    listener = Listener()
    per_host = target.count(4)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    try:
        async with target.client() as client:
            jobs: dict[str, str] = {}
            for host in HOSTS:
                for _copy in range(per_host):
                    body: dict[str, object] = {
                        "trigger": {"type": "immediate"},
                        "handler": f"http://{host}:{listener.port}/handler",
                        "callback_url": f"http://{HOST}:{listener.port}/notice",
                        "max_attempts": 1,
                        "timeout": 2,
                    }
                    answer = await client.post("/infra/jobs", json=body)
                    if answer.status_code == 202:
                        jobs[answer.json()["id"]] = host
                    else:
                        outcomes[host][f"refused_{answer.status_code}"] += 1
            deadline = time.monotonic() + 10
            while jobs and time.monotonic() < deadline:
                for job_id, host in list(jobs.items()):
                    job = (await client.get(f"/infra/jobs/{job_id}")).json()
                    if job.get("status") in ENDED:
                        error = str(job.get("error") or "")
                        outcomes[host][f"{job['status']}:{error.split(':')[0]}"] += 1
                        del jobs[job_id]
                await anyio.sleep(0.1)
            for host in jobs.values():
                outcomes[host]["not_ended"] += 1
        # callback_url notices leave as a job ends: give any a moment to arrive
        await anyio.sleep(0.5)
    finally:
        listener.stop()
    safe = {"failed:handler_blocked"}
    return {
        "jobs": per_host * len(HOSTS),
        "listener_requests": sum(listener.hits.values()),
        "listener_paths": dict(listener.hits),
        "outcomes": {host: dict(sorted(c.items())) for host, c in outcomes.items()},
        "attack_ok": not listener.hits
        and all(
            all(kind in safe or kind.startswith("refused_4") for kind in counter)
            for counter in outcomes.values()
        ),
    }


ATTACK = Attack(
    name="handler_network",
    item=1,
    run=handler_network,
    server_args=lambda _options: ["--handler-network", "public"],
)
