"""DESIGN §10 on the wire: what one connection may cost the server, over real sockets.

Each limit of :mod:`flowyard.http.limits` is crossed by a raw client against uvicorn serving
through :class:`HttpProtocol`, with short timeouts where time is the limit.
"""

import argparse
import contextlib
import gc
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute

from flowyard.cli import serve
from flowyard.http import limits
from flowyard.http.protocol import HttpProtocol
from flowyard.settings import Settings
from tests.conftest import ServerProcess, Service
from tests.http_support import Server, Wire, get, post, serving, wire

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
TCP_CLOSE = 7  # include/net/tcp_states.h: what a reset leaves


async def refused(conn: Wire, status: int, code: str) -> None:
    """The next answer is the JSON refusal ``status``/``code``, and the connection closes."""
    answer_status, headers, body = await conn.answer()
    assert (answer_status, headers["connection"]) == (status, "close"), (headers, body)
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert error["code"] == code and error["message"], error
    assert await conn.closed()


async def gone(server: Server) -> None:
    """Wait until the server holds no connection any more."""
    with anyio.fail_after(5):
        while server.state.connections:
            await anyio.sleep(0.02)


# --------------------------------------------------------------------- sizes


async def test_a_target_over_8_kib_is_414() -> None:
    async with serving() as server, wire(server) as conn:
        longest = "/scope/" + "a" * (limits.MAX_TARGET - len("/scope/"))
        await conn.send(get(longest))
        assert json.loads((await conn.answer())[2])["raw_path"] == longest
        await conn.send(get(longest + "a"))
        await refused(conn, 414, "uri_too_long")


async def test_a_header_section_over_64_kib_is_431() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/echo", "X-Big: " + "a" * 60_000))
        assert (await conn.answer())[0] == 200
        await conn.send(get("/echo", "X-Big: " + "a" * limits.MAX_HEADER_BYTES))
        await refused(conn, 431, "header_fields_too_large")


async def test_more_than_100_header_fields_is_431() -> None:
    async with serving() as server, wire(server) as conn:
        fields = [f"X-{n}: v" for n in range(limits.MAX_HEADER_FIELDS - 1)]  # and Host
        await conn.send(get("/echo", *fields))
        assert (await conn.answer())[0] == 200
        await conn.send(get("/echo", *fields, "X-One-Too-Many: v"))
        await refused(conn, 431, "header_fields_too_large")


async def test_a_huge_header_is_refused_while_it_arrives() -> None:
    """64 MiB of header is never buffered: the 431 comes after the first few hundred KiB."""
    async with serving() as server, wire(server) as conn:
        sent = 0

        async def flood() -> None:
            nonlocal sent
            piece = b"a" * 65_536
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await conn.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: ")
                while sent < 64 * MiB:
                    await conn.send(piece)
                    sent += len(piece)

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            with anyio.fail_after(5):
                await refused(conn, 431, "header_fields_too_large")
            tg.cancel_scope.cancel()
        assert sent < 64 * MiB


async def test_a_client_that_sends_its_whole_huge_header_before_reading_gets_the_431() -> None:
    """The refused connection drops what still arrives instead of resetting, so the answer
    waits for the client (closing on unread bytes would reset it and lose the 431)."""
    async with serving() as server, wire(server) as conn:
        with anyio.fail_after(5):
            await conn.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8 * MiB)
        await refused(conn, 431, "header_fields_too_large")


# --------------------------------------------------------------------- time


async def test_a_head_slower_than_the_read_timeout_is_408() -> None:
    """Bytes keep coming, but the head is not whole within the read timeout."""
    async with serving(read_timeout=0.5) as server, wire(server) as conn:

        async def trickle() -> None:
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await conn.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n")
                while True:
                    await anyio.sleep(0.1)
                    await conn.send(b"X-More: v\r\n")

        began = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(trickle)
            with anyio.fail_after(5):
                await refused(conn, 408, "request_timeout")
            tg.cancel_scope.cancel()
        assert anyio.current_time() - began >= 0.45


async def test_a_body_that_stalls_longer_than_the_read_timeout_is_408() -> None:
    async with serving(read_timeout=1) as server, wire(server) as conn:
        body = b"0123456789"
        await conn.send(post("/echo", body)[: -len(body)])
        for byte in body:  # slow but steady: every piece within the read timeout
            await anyio.sleep(0.15)
            await conn.send(bytes([byte]))
        assert json.loads((await conn.answer())[2])["body"] == body.decode()
        await conn.send(post("/echo", body)[:-7])
        with anyio.fail_after(5):
            await refused(conn, 408, "request_timeout")


async def test_a_408_carries_the_request_id() -> None:
    """A body that stalls keeps the id its head sent; a head that stalls gets a fresh one."""
    async with serving(read_timeout=0.3) as server:
        async with wire(server) as conn:
            await conn.send(post("/echo", b"0123456789", "X-Request-Id: r-408")[:-4])
            with anyio.fail_after(5):
                status, headers, _ = await conn.answer()
            assert (status, headers["x-request-id"]) == (408, "r-408")
        async with wire(server) as conn:
            await conn.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: r-head\r\n")
            with anyio.fail_after(5):
                status, headers, _ = await conn.answer()
            assert status == 408
            assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", headers["x-request-id"]), headers


async def test_a_request_waiting_its_turn_is_not_timed_out() -> None:
    """Reading pauses behind a slow answer: the body's clock waits too."""
    async with serving(read_timeout=1) as server, wire(server) as conn:
        second = post("/echo", b"0123456789")
        await conn.send(get("/slow?1.6") + second[:-5])
        assert (await conn.answer())[2] == b'"slow"'  # 1.6 s: past the read timeout
        await conn.send(second[-5:])
        assert json.loads((await conn.answer())[2])["body"] == "0123456789"


async def test_a_connection_that_never_sends_closes_after_the_keep_alive_time() -> None:
    async with serving(keep_alive=0.3) as server, wire(server) as conn:
        with anyio.fail_after(5):
            assert await conn.closed(within=5)


@pytest.mark.parametrize("path", ["/big", "/huge"], ids=["streamed", "one-write"])
async def test_an_answer_the_client_does_not_read_is_dropped_with_the_connection(
    path: str,
) -> None:
    """Streamed, the app stops waiting; written at once, the idle close cannot flush it."""
    async with serving(keep_alive=0.2, write_timeout=0.5) as server, wire(server) as conn:
        await conn.send(get(path))
        with anyio.fail_after(5):
            await server.seen.big_done.wait()
        await gone(server)
        # Reset, not closed: nothing of the answer stays queued in the kernel for it.
        raw = conn.stream.extra(SocketAttribute.raw_socket)
        with anyio.fail_after(5):
            while raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_CLOSE:
                await anyio.sleep(0.02)


# --------------------------------------------------------------------- order and form


async def test_a_request_that_cannot_be_parsed_is_answered_after_those_before_it() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/slow?0.3") + post("/echo", b"first") + b"GARBAGE\r\n\r\n")
        assert (await conn.answer())[2] == b'"slow"'
        assert json.loads((await conn.answer())[2])["body"] == "first"
        status, headers, body = await conn.answer()
        assert (status, headers["connection"]) == (400, "close")
        assert json.loads(body) == {"code": "bad_request", "message": "invalid HTTP request"}
        assert await conn.closed()


async def test_a_request_over_a_limit_is_answered_after_those_before_it() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(post("/echo", b"first") + get("/" + "a" * limits.MAX_TARGET))
        assert json.loads((await conn.answer())[2])["body"] == "first"
        await refused(conn, 414, "uri_too_long")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /echo HTTP/1.1\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + b"3\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["no-host", "two-hosts", "gzip-coding"],
)
async def test_a_request_framed_ambiguously_is_400(request_bytes: bytes) -> None:
    """RFC 9112 §3.2 and §6.1: what h11 refuses too (see test_http_framing.py)."""
    async with serving() as server, wire(server) as conn:
        await conn.send(request_bytes)
        await refused(conn, 400, "bad_request")


async def test_header_values_lose_surrounding_whitespace() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/headers", "X-Key:  \tabc def \t "))
        assert ["x-key", "abc def"] in json.loads((await conn.answer())[2])


async def test_an_api_key_followed_by_spaces_authenticates(service: Service) -> None:
    port = int(service.url.rsplit(":", 1)[1])
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        conn = Wire(stream)
        await conn.send(get("/core/tokens/balance", f"X-API-Key: {service.key}  "))
        status, _, body = await conn.answer()
        assert status == 200, body


async def test_http_1_0_keeps_the_connection_only_when_asked_and_says_so() -> None:
    async with serving() as server, wire(server) as conn:
        for _ in range(2):
            await conn.send(get("/echo", "Connection: keep-alive", version="1.0"))
            status, headers, _ = await conn.answer()
            assert (status, headers["connection"]) == (200, "keep-alive")
        await conn.send(get("/echo", version="1.0"))
        assert (await conn.answer())[1]["connection"] == "close"
        assert await conn.closed()


# --------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    "anyio_backend", ["asyncio", ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"]
)
async def test_closed_connections_are_freed_without_the_cycle_collector() -> None:
    """With the collector off, connections that held a 60 KiB header (or were refused
    for a bigger one) are gone once closed: nothing they held waits for a collection."""
    seen = 0
    gc.collect()
    gc.disable()
    try:
        async with serving() as server:
            for n in range(20):
                size = 60_000 if n % 2 else 70_000
                async with wire(server) as conn:
                    with anyio.fail_after(5):
                        while not server.state.connections:
                            await anyio.sleep(0.005)
                    seen += len(server.state.connections)
                    await conn.send(get("/echo", "X-Big: " + "a" * size))
                    await conn.read_until(b"\r\n\r\n")
            await gone(server)
            assert seen >= 20
            # Counted among the objects alive, not by weak reference: the compiled class
            # (packaging/mypyc_build.py) takes none.
            assert [o for o in gc.get_objects() if isinstance(o, HttpProtocol)] == []
    finally:
        gc.enable()


# --------------------------------------------------------------------- the option


async def test_flowyard_serve_answers_408_after_its_read_timeout(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    server = await anyio.to_thread.run_sync(
        lambda: server_process(str(tmp_path / "f.db"), "--read-timeout", "0.5")
    )
    port = int(server.url.rsplit(":", 1)[1])
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        conn = Wire(stream)
        await conn.send(b"GET /livez HTTP/1.1\r\nHost: t\r\n")
        began = anyio.current_time()
        with anyio.fail_after(5):
            await refused(conn, 408, "request_timeout")
        assert anyio.current_time() - began >= 0.45
    assert await anyio.to_thread.run_sync(server.terminate) == 0


def test_the_read_timeout_reads_its_option_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def parsed(*argv: str) -> float:
        parser = argparse.ArgumentParser()
        serve.add_settings(parser)  # reads FLOWYARD_* when the parser is built
        return serve.settings_from(parser.parse_args(argv)).read_timeout_seconds

    monkeypatch.delenv("FLOWYARD_READ_TIMEOUT", raising=False)
    assert parsed() == Settings().read_timeout_seconds == limits.READ_TIMEOUT == 10
    assert parsed("--read-timeout", "2.5") == 2.5
    monkeypatch.setenv("FLOWYARD_READ_TIMEOUT", "4")
    assert parsed() == 4
    assert parsed("--read-timeout", "3") == 3  # the option wins
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(SystemExit):
            parsed("--read-timeout", bad)
