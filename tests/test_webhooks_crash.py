"""kill -9 between the commit of a transition and its webhook delivery loses no event."""

from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import serve_app
from tests.test_crash import StartServer, ack, claim, client, create, start


class Receiver:
    """Records every event; holds each request until ``open`` is set."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.events: list[dict[str, Any]] = []
        self.arrived = anyio.Event()

    async def endpoint(self, request: Request) -> JSONResponse:
        self.events.append(await request.json())
        self.arrived.set()
        await self.open.wait()
        return JSONResponse({})

    def job_ids(self) -> set[str]:
        return {e["data"]["job_id"] for e in self.events if e["topic"] == "jobs.completed"}


async def test_kill9_after_commit_delivers_every_event_after_restart(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "hooks.db")
    key = create_key_sync(db, "hooks", list(ALL_SCOPES)).key
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.endpoint, methods=["POST"])])
    args = ("--webhook-retry-base-seconds", "0.05")
    async with serve_app(app) as url:
        server = await start(server_process, db, *args)
        async with client(server.url, key) as api:
            created = await api.post(
                "/infra/webhooks", json={"name": "c", "url": f"{url}/in", "topics": ["jobs.*"]}
            )
            assert created.status_code == 201, created.text
            for n in range(12):
                await create(api, trigger={"type": "pull", "queue": "q"}, payload={"n": n})
            jobs = await claim(api, "q", count=12)
            acked = {job["id"] for job in jobs[:10]}
            for job in jobs[:10]:
                assert (await ack(api, job, {"n": 1})).status_code == 200  # committed
        with anyio.fail_after(10):  # some deliveries are in flight, held by the receiver
            await receiver.arrived.wait()
        assert len(receiver.events) < 10
        server.kill9()
        receiver.open.set()

        restarted = await start(server_process, db, *args)
        with anyio.fail_after(20):
            while receiver.job_ids() != acked:
                assert receiver.job_ids() <= acked  # never an event of an unacked job
                receiver.arrived = anyio.Event()
                await receiver.arrived.wait()
        async with client(restarted.url, key) as api:
            hook_id = created.json()["id"]
            with anyio.fail_after(20):
                while True:
                    page = await api.get(
                        f"/infra/webhooks/{hook_id}/deliveries", params={"limit": 100}
                    )
                    found = page.json()["deliveries"]
                    if len(found) == 10 and all(d["status"] == "succeeded" for d in found):
                        break
                    await anyio.sleep(0.02)
        assert {e["topic"] for e in receiver.events} == {"jobs.completed"}
        restarted.terminate()
