"""The HTTP/1.1 protocol of :mod:`flowyard.http.protocol`, spoken over real sockets.

uvicorn serves a small ASGI app (tests/http_support.py) through :class:`HttpProtocol` on
127.0.0.1; the tests write raw requests and read raw answers, so every byte on the wire is
what they check.
"""

import json

import anyio
import pytest

from tests.http_support import BIG_CHUNK, BIG_CHUNKS, get, post, serving, wire

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------- connections


async def test_one_connection_serves_request_after_request() -> None:
    async with serving() as server, wire(server) as conn:
        for n in range(3):
            await conn.send(post("/echo", b'{"n": %d}' % n))
            status, headers, body = await conn.answer()
            assert status == 200 and "connection" not in headers
            assert json.loads(body)["body"] == f'{{"n": {n}}}'


@pytest.mark.parametrize(
    "request_bytes",
    [get("/echo", version="1.0"), get("/echo", "Connection: close")],
    ids=["http-1.0", "connection-close"],
)
async def test_the_connection_closes_after_an_answer_when_the_request_says_so(
    request_bytes: bytes,
) -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(request_bytes)
        status, headers, _ = await conn.answer()
        assert status == 200 and headers["connection"] == "close"
        assert await conn.closed()


async def test_an_idle_connection_closes_after_the_keep_alive_time_but_not_a_busy_one() -> None:
    async with serving(keep_alive=1) as server, wire(server) as conn:
        await conn.send(get("/echo"))
        assert (await conn.answer())[0] == 200
        await anyio.sleep(0.3)
        await conn.send(get("/slow?1.5"))  # busy from 0.3 s to 1.8 s: past the idle timeout
        assert (await conn.answer())[2] == b'"slow"'
        await conn.send(get("/echo"))  # still open after the busy spell
        assert (await conn.answer())[0] == 200
        with anyio.fail_after(3):
            assert await conn.closed()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/slow") + post("/echo", b"second") + get("/scope/third"))
        assert (await conn.answer())[2] == b'"slow"'
        assert json.loads((await conn.answer())[2])["body"] == "second"
        assert json.loads((await conn.answer())[2])["path"] == "/scope/third"


# --------------------------------------------------------------------- requests


async def test_the_scope_names_the_request() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/scope/caf%C3%A9%20x?a=1&b=%20"))
        scope = json.loads((await conn.answer())[2])
        assert scope["path"] == "/scope/café x"
        assert scope["raw_path"] == "/scope/caf%C3%A9%20x"
        assert scope["query_string"] == "a=1&b=%20"
        assert scope["http_version"] == "1.1" and scope["scheme"] == "http"
        assert scope["server"] == ["127.0.0.1", server.port]
        assert scope["client"][0] == "127.0.0.1"


async def test_a_body_reaches_the_app_as_it_arrives_plain_or_chunked() -> None:
    async with serving() as server, wire(server) as conn:
        whole = post("/echo", b"abcdefghij")
        head, body = whole[: -len(b"abcdefghij")], b"abcdefghij"
        await conn.send(head)
        for piece in (body[:3], body[3:7], body[7:]):
            await anyio.sleep(0.05)
            await conn.send(piece)
        answer = json.loads((await conn.answer())[2])
        assert answer["body"] == "abcdefghij" and answer["messages"] >= 2

        chunked = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        await conn.send(chunked.encode() + b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        assert json.loads((await conn.answer())[2])["body"] == "abcdefg"


async def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(
            post("/echo", b"", "Expect: 100-continue").replace(b"Length: 0", b"Length: 4")
        )
        assert await conn.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        await conn.send(b"ping")
        assert json.loads((await conn.answer())[2])["body"] == "ping"


async def test_after_the_body_receive_waits_for_the_client_to_leave() -> None:
    async with serving() as server:
        async with wire(server) as conn:
            await conn.send(post("/after-body", b"{}"))
            await anyio.sleep(0.2)
            assert server.seen.messages == []  # still waiting: the client is there
        with anyio.fail_after(3):
            while not server.seen.messages:
                await anyio.sleep(0.01)
        assert server.seen.messages == ["http.disconnect"]


# --------------------------------------------------------------------- answers


async def test_an_answer_without_a_length_is_chunked() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/chunked"))
        _, headers, body = await conn.answer()
        assert headers["transfer-encoding"] == "chunked" and body == b"hello world"
        await conn.send(get("/echo"))
        assert (await conn.answer())[0] == 200


async def test_an_answer_to_head_has_no_body_and_the_connection_goes_on() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/echo", method="HEAD"))
        status, headers, _ = await conn.answer(head_only=True)
        assert status == 200 and int(headers["content-length"]) > 0
        await conn.send(get("/scope/next"))
        assert json.loads((await conn.answer())[2])["path"] == "/scope/next"


async def test_send_waits_while_the_client_does_not_read() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/big"))
        await anyio.sleep(1)
        # The socket's buffers hold a few MiB; the app waits instead of queueing the rest.
        assert server.seen.big_sent < BIG_CHUNKS // 2, server.seen.big_sent
        _, headers, body = await conn.answer()
        assert len(body) == BIG_CHUNK * BIG_CHUNKS == int(headers["content-length"])
        with anyio.fail_after(3):
            await server.seen.big_done.wait()


# --------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n"],
    ids=["garbage", "not-ascii"],
)
async def test_a_request_that_cannot_be_parsed_is_400_and_closed(request_bytes: bytes) -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(request_bytes)
        status, headers, body = await conn.answer()
        assert status == 400 and headers["connection"] == "close"
        assert json.loads(body) == {"code": "bad_request", "message": "invalid HTTP request"}
        assert await conn.closed()


async def test_an_upgrade_request_is_answered_as_plain_http_and_says_it_closes() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/scope/ws", "Connection: Upgrade", "Upgrade: websocket"))
        _, headers, body = await conn.answer()
        assert json.loads(body)["path"] == "/scope/ws" and headers["connection"] == "close"
        assert await conn.closed()


@pytest.mark.parametrize("path", ["/fail-before", "/silent"])
async def test_an_app_that_fails_to_answer_gets_a_500_sent_for_it(path: str) -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get(path))
        status, headers, body = await conn.answer()
        assert (status, body) == (500, b"Internal Server Error")
        assert headers["connection"] == "close"
        assert await conn.closed()


async def test_an_app_that_fails_halfway_has_the_connection_closed() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/fail-after"))
        assert await conn.closed()
        assert conn.buffer == b""  # the head waits for the body: nothing goes out half-made


# --------------------------------------------------------------------- shutdown


async def test_shutdown_closes_idle_connections_and_lets_a_busy_one_finish() -> None:
    async with serving() as server, wire(server) as idle, wire(server) as busy:
        await idle.send(get("/echo"))
        assert (await idle.answer())[0] == 200
        await busy.send(get("/slow"))
        await anyio.sleep(0.1)
        server.server.should_exit = True
        assert await idle.closed()
        status, headers, body = await busy.answer()
        assert (status, body, headers["connection"]) == (200, b'"slow"', "close")
        assert await busy.closed()
