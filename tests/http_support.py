"""A small ASGI app served through :class:`HttpProtocol` on 127.0.0.1, and a raw client.

The HTTP tests write raw requests and read raw answers, so every byte on the wire is what
they check.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import uvicorn
from anyio.abc import SocketStream
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from flowyard.http.protocol import protocol_class

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
        elif path == "/huge":  # one message, as every JSON answer goes out
            await _answer(send, 200, b"x" * (BIG_CHUNK * BIG_CHUNKS // 2))
            seen.big_done.set()
        elif path == "/headers":
            shown = [[name.decode(), value.decode("latin-1")] for name, value in scope["headers"]]
            await _answer(send, 200, json.dumps(shown).encode())
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

    @property
    def state(self) -> ServerState:
        """uvicorn's view: the open connections and the requests being answered."""
        return self.server.server_state


@asynccontextmanager
async def serving(
    keep_alive: float = 5, read_timeout: float = 10, write_timeout: float = 30
) -> AsyncIterator[Server]:
    seen = Seen()
    config = uvicorn.Config(
        make_app(seen),
        host="127.0.0.1",
        port=0,
        log_level="critical",
        lifespan="on",
        http=protocol_class(read_timeout, write_timeout),
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


def api(url: str, key: str) -> httpx.AsyncClient:
    """An HTTP client of the server at ``url`` that sends ``key`` as a bearer token."""
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
