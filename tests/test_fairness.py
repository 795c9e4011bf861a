"""The in-flight cap is shared between projects: one that stalls its requests cannot lock
the others out (``--max-inflight-per-project``, half of ``--max-inflight`` by default).

A real server process; one project holds requests open by announcing bodies it never sends,
on raw sockets, until it holds its whole share.
"""

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from flowyard.cli import serve
from flowyard.settings import Settings
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess
from tests.raw_http import read_answer, request_head

StartServer = Callable[..., ServerProcess]

MAX_INFLIGHT = 8


@asynccontextmanager
async def stalled(url: str, key: str) -> AsyncIterator[SocketStream]:
    """A job creation whose body never comes: the request stays in flight while open.

    It asks for ``100 Continue``, which the server sends when the handler first reads the
    body, after counting the request against its project: once it is read, the request is
    known to be held.
    """
    host, _, port = url.removeprefix("http://").rpartition(":")
    async with await anyio.connect_tcp(host, int(port)) as stream:
        head = request_head(
            "POST",
            "/infra/jobs",
            f"Authorization: Bearer {key}",
            "Content-Type: application/json",
            "Content-Length: 100",
            "Expect: 100-continue",
        )
        await stream.send(head)
        interim = b""
        with anyio.fail_after(10):
            while not interim.endswith(b"\r\n\r\n"):
                interim += await stream.receive(1)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        yield stream


async def until_refused(client: httpx.AsyncClient) -> httpx.Response:
    """Poll with a cheap request of ``client``'s project until it is refused."""
    with anyio.fail_after(10):
        while True:
            answer = await client.get("/infra/jobs?limit=1")
            if answer.status_code != 200:
                return answer


@pytest.mark.parametrize(
    ("options", "share"),
    [((), MAX_INFLIGHT // 2), (("--max-inflight-per-project", "3"), 3)],
    ids=["half-by-default", "as-set"],
)
async def test_a_project_holding_its_share_is_refused_while_others_get_through(
    tmp_path: Path, server_process: StartServer, options: tuple[str, ...], share: int
) -> None:
    db = str(tmp_path / "flowyard.db")
    greedy_key = create_key_sync(db, "greedy", list(ALL_SCOPES)).key
    modest_key = create_key_sync(db, "modest", list(ALL_SCOPES)).key
    server = await anyio.to_thread.run_sync(
        lambda: server_process(db, "--max-inflight", str(MAX_INFLIGHT), *options)
    )
    greedy = httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {greedy_key}"}, timeout=10
    )
    modest = httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": modest_key}, timeout=10)
    async with greedy, modest, AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(stalled(server.url, greedy_key)) for _ in range(share)
        ]
        refused = await until_refused(greedy)  # once all its stalled requests are in
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "unavailable"
        assert f"share of {share} requests in flight" in refused.json()["message"]
        assert refused.headers["retry-after"] == "1"

        # The other project is served, reads and writes, while the first stays refused.
        assert (await modest.get("/infra/jobs")).status_code == 200
        job = {"trigger": {"type": "pull", "queue": "q"}, "payload": {}}
        assert (await modest.post("/infra/jobs", json=job)).status_code == 202
        assert (await greedy.post("/infra/jobs", json=job)).status_code == 503
        assert (await greedy.get("/livez")).status_code == 200  # not counted, not refused

        # One stalled body arrives: its job is created and its slot is free again.
        await streams[0].send(
            b'{"trigger": {"type": "pull", "queue": "q"}, "payload": {}}'.ljust(100)
        )
        with anyio.fail_after(10):
            assert (await read_answer(streams[0])).status == 202
        assert (await greedy.get("/infra/jobs?limit=1")).status_code == 200
    # The stalled clients have left: every slot is free.
    async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": greedy_key}) as again:
        with anyio.fail_after(10):
            while (await again.get("/infra/jobs")).status_code != 200:
                await anyio.sleep(0.01)
        listed = (await again.get("/infra/jobs")).json()["jobs"]
    assert len(listed) == 1  # the one whose body came; the refused one did nothing


def test_max_inflight_per_project_reads_its_option_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def parsed(*argv: str) -> int | None:
        parser = argparse.ArgumentParser()
        serve.add_settings(parser)  # reads FLOWYARD_* when the parser is built
        return serve.settings_from(parser.parse_args(argv)).max_inflight_per_project

    monkeypatch.delenv("FLOWYARD_MAX_INFLIGHT_PER_PROJECT", raising=False)
    assert parsed() is None is Settings().max_inflight_per_project  # half of --max-inflight
    assert parsed("--max-inflight-per-project", "5") == 5
    monkeypatch.setenv("FLOWYARD_MAX_INFLIGHT_PER_PROJECT", "77")
    assert parsed() == 77
    assert parsed("--max-inflight-per-project", "9") == 9  # the option wins
    for bad in ("0", "-3", "many"):
        with pytest.raises(SystemExit):
            parsed("--max-inflight-per-project", bad)
