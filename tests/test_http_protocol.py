"""The HTTP/1.1 protocol of :mod:`flowyard.http.protocol`, spoken over real sockets.

uvicorn serves a small ASGI app through :class:`HttpProtocol` on 127.0.0.1; the tests write
raw requests and read raw answers, so every byte on the wire is what they check.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import uvicorn
from anyio.abc import SocketStream
from starlette.types import Receive, Scope, Send

from flowyard.http.protocol import HttpProtocol

pytestmark = pytest.mark.anyio

BIG_CHUNK = 1024 * 1024
BIG_CHUNKS = 64


@dataclass
class Seen:
    """What the app saw, for the tests to look at."""

    messages: list[str] = field(default_factory=list)
    big_sent: int = 0
    big_done: anyio.Event = field(default_factory=anyio.Event)


async def _answer(send: Send, status: int, body: bytes, **extra: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> tuple[bytes, int]:
    body, messages = b"", 0
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        body += message.get("body", b"")
        messages += 1
        if not message.get("more_body", False):
            return body, messages


def make_app(seen: Seen) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/echo":
            body, messages = await _read_body(receive)
            answer = {"body": body.decode(), "messages": messages, "method": scope["method"]}
            await _answer(send, 200, json.dumps(answer).encode())
        elif path.startswith("/scope"):
            shown = {k: scope[k] for k in ("path", "http_version", "scheme", "method")}
            shown["raw_path"] = scope["raw_path"].decode()
            shown["query_string"] = scope["query_string"].decode()
            shown["client"] = list(scope["client"])
            shown["server"] = list(scope["server"])
            await _answer(send, 200, json.dumps(shown).encode())
        elif path == "/slow":  # ?seconds, 0.6 by default
            await anyio.sleep(float(scope["query_string"] or 0.6))
            await _answer(send, 200, b'"slow"')
        elif path == "/chunked":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
            await send({"type": "http.response.body", "body": b"world", "more_body": False})
        elif path == "/after-body":
            await _read_body(receive)
            seen.messages.append((await receive())["type"])
        elif path == "/big":
            length = b"%d" % (BIG_CHUNK * BIG_CHUNKS)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", length)],
                }
            )
            for _ in range(BIG_CHUNKS):
                await send(
                    {"type": "http.response.body", "body": b"x" * BIG_CHUNK, "more_body": True}
                )
                seen.big_sent += 1
            await send({"type": "http.response.body", "body": b""})
            seen.big_done.set()
        elif path == "/fail-before":
            raise RuntimeError("the app failed")
        elif path == "/fail-after":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"10")],
                }
            )
            raise RuntimeError("the app failed halfway")
        elif path == "/silent":
            return
        else:
            await _answer(send, 404, b'"none"')

    return app


@dataclass
class Server:
    url: str
    port: int
    server: uvicorn.Server
    seen: Seen


@asynccontextmanager
async def serving(keep_alive: float = 5) -> AsyncIterator[Server]:
    seen = Seen()
    config = uvicorn.Config(
        make_app(seen),
        host="127.0.0.1",
        port=0,
        log_level="critical",
        lifespan="on",
        http=HttpProtocol,
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield Server(f"http://127.0.0.1:{port}", port, server, seen)
        finally:
            server.should_exit = True


class Wire:
    """One raw client connection: bytes out, answers parsed off the bytes that come in."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _more(self) -> bool:
        try:
            chunk = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return False
        self.buffer += chunk
        return True

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not await self._more():
                raise EOFError(f"closed before {marker!r}; got {self.buffer!r}")
        head, _, rest = self.buffer.partition(marker)
        self.buffer = rest
        return bytes(head + marker)

    async def read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not await self._more():
                raise EOFError(f"closed after {len(self.buffer)} of {count} bytes")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names), body (chunks joined)."""
        lines = (await self.read_until(b"\r\n\r\n")).decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        if head_only:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, await self.read_exactly(int(headers["content-length"]))
        body = b""
        assert headers.get("transfer-encoding") == "chunked", headers
        while size := int((await self.read_until(b"\r\n")).strip(), 16):
            body += await self.read_exactly(size)
            await self.read_exactly(2)
        await self.read_exactly(2)
        return status, headers, body

    async def closed(self, within: float = 3) -> bool:
        """Whether the server closes the connection within ``within`` seconds."""
        with anyio.move_on_after(within):
            while await self._more():
                pass
            return True
        return False


@asynccontextmanager
async def wire(server: Server) -> AsyncIterator[Wire]:
    async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
        yield Wire(stream)


def post(path: str, body: bytes, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str, *extra: str, version: str = "1.1", method: str = "GET") -> bytes:
    return (
        "\r\n".join([f"{method} {path} HTTP/{version}", "Host: t", *extra]) + "\r\n\r\n"
    ).encode()


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
        assert body == b"Invalid HTTP request received."
        assert await conn.closed()


async def test_an_upgrade_request_is_answered_as_plain_http_then_closed() -> None:
    async with serving() as server, wire(server) as conn:
        await conn.send(get("/scope/ws", "Connection: Upgrade", "Upgrade: websocket"))
        assert json.loads((await conn.answer())[2])["path"] == "/scope/ws"
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
