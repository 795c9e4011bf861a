"""A flood beyond what the service works on at once: refused with 503, memory bounded, recovery.

The real server runs as a child process with a small ``--max-inflight``. Hundreds of
connections create jobs and trigger executions as fast as they are answered. Beyond the cap
the answers are JSON ``503 unavailable`` with ``Retry-After`` (never a 500 or a cut body),
the worker protocol and health checks are still served, the server's RSS stays bounded, and
once the flood stops normal calls are served again without a restart.
"""

import argparse
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx
import pytest
from bench.common import proc_rss_mb

from flowyard.cli import serve
from flowyard.settings import Settings
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess
from tests.load_support import Tally, call
from tests.workflow_support import create_blueprint, pull_step

StartServer = Callable[..., ServerProcess]

CONNECTIONS = 300
PER_POOL = 10
MAX_INFLIGHT = 16
FLOOD_SECONDS_AT_MOST = 30
REFUSED, SERVED = 300, 100  # the flood lasts until it had this many answers of each kind
RSS_LIMIT_MB = 300


def api(url: str, key: str, connections: int = 1) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(60),
        limits=limits,
    )


async def test_flood_is_refused_with_503_and_the_service_recovers(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "flood", list(ALL_SCOPES)).key
    server = await anyio.to_thread.run_sync(
        lambda: server_process(db, "--max-inflight", str(MAX_INFLIGHT))
    )
    pid = server.proc.pid
    async with api(server.url, key) as client:
        blueprint = await create_blueprint(client, [pull_step("a", "nobody")])
    rss_before = proc_rss_mb(pid)
    rss_seen = [rss_before]
    flood, side = Tally(), Tally()  # the flood's answers; the workers' and health checks'
    stop = anyio.Event()
    worked: list[str] = []

    async def flooder(client: httpx.AsyncClient, n: int) -> None:
        calls = [
            ("/infra/jobs", {"trigger": {"type": "pull", "queue": "work"}, "payload": {"n": n}}),
            (f"/infra/workflows/blueprints/{blueprint['id']}/trigger", {"input_data": {}}),
        ]
        i = n
        while not stop.is_set():
            path, body = calls[i % 2]
            i += 1
            await call(client, "POST", path, flood, body)

    async def worker(client: httpx.AsyncClient) -> None:
        """Claims and acks during the flood: the worker protocol is not refused."""
        while not stop.is_set():
            body = {"queue": "work", "count": 10, "wait_seconds": 1}
            claimed = await call(client, "POST", "/infra/jobs/claim", side, body)
            for job in claimed.body if claimed.ok else []:
                ack = {"status": "completed", "claim_token": job["claim_token"]}
                if (await call(client, "POST", f"/infra/jobs/{job['id']}/ack", side, ack)).ok:
                    worked.append(job["id"])
            await call(client, "GET", "/readyz", side)

    async def watch() -> None:
        """Sample the RSS; stop the flood once it has been refused and served enough."""
        deadline = time.monotonic() + FLOOD_SECONDS_AT_MOST
        while time.monotonic() < deadline:
            rss_seen.append(proc_rss_mb(pid))
            accepted = flood.kinds["200"] + flood.kinds["202"]
            if flood.kinds["503"] >= REFUSED and accepted >= SERVED and len(worked) >= 10:
                break
            await anyio.sleep(0.1)
        stop.set()

    async with AsyncExitStack() as stack:
        # Pools of a few connections each: one pool of hundreds is slow on the client side.
        pools = [
            await stack.enter_async_context(api(server.url, key, PER_POOL))
            for _ in range(CONNECTIONS // PER_POOL)
        ]
        one = await stack.enter_async_context(api(server.url, key))
        with anyio.fail_after(FLOOD_SECONDS_AT_MOST + 60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                tg.start_soon(worker, one)
                for n in range(CONNECTIONS):
                    tg.start_soon(flooder, pools[n % len(pools)], n)
    rss_peak = max(rss_seen)

    assert flood.faults == [], flood.faults[:10]
    assert flood.kinds["503"] >= REFUSED, flood.kinds  # refused beyond the cap...
    assert flood.kinds["200"] + flood.kinds["202"] >= SERVED, flood.kinds  # ...served within it
    assert flood.kinds["500"] == 0, flood.kinds
    assert side.faults == [] and set(side.kinds) <= {"200"}, (side.kinds, side.faults[:10])
    assert rss_peak < RSS_LIMIT_MB, (rss_before, rss_peak)

    # Recovery by itself: normal calls are all served once the flood is over.
    async with api(server.url, key) as client:
        recovered = Tally()
        for i in range(50):
            body = {"trigger": {"type": "pull", "queue": "after"}, "payload": {"i": i}}
            answer = await call(client, "POST", "/infra/jobs", recovered, body)
            assert answer.status == 202, answer
        listed = await client.get("/infra/jobs?queue=after&limit=100")
        assert len(listed.json()["jobs"]) == 50
    rss_after = proc_rss_mb(pid)
    assert rss_after < RSS_LIMIT_MB, (rss_before, rss_peak, rss_after)
    print(f"flood {dict(flood.kinds)}; RSS MB before {rss_before:.1f}, peak {rss_peak:.1f},")
    print(f"after {rss_after:.1f}; worker acks {len(worked)}")
    assert await anyio.to_thread.run_sync(server.terminate) == 0


def test_max_inflight_reads_its_option_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def parsed(*argv: str) -> int:
        parser = argparse.ArgumentParser()
        serve.add_settings(parser)  # reads FLOWYARD_* when the parser is built
        return serve.settings_from(parser.parse_args(argv)).max_inflight

    monkeypatch.delenv("FLOWYARD_MAX_INFLIGHT", raising=False)
    assert parsed() == Settings().max_inflight == 256
    assert parsed("--max-inflight", "5") == 5
    monkeypatch.setenv("FLOWYARD_MAX_INFLIGHT", "77")
    assert parsed() == 77
    assert parsed("--max-inflight", "9") == 9  # the option wins
    for bad in ("0", "-3", "many"):
        with pytest.raises(SystemExit):
            parsed("--max-inflight", bad)
