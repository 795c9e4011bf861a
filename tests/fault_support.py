"""Misbehaving push handlers on raw 127.0.0.1 sockets, for what an ASGI app cannot do.

Each server reads one HTTP request head per connection, then misbehaves on purpose: it never
answers, resets the connection, or streams a body without end. Everything is bounded (a
byte cap, the test's own timeouts) and stops when its ``async with`` block ends.
"""

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketAttribute, SocketStream

Behaviour = Callable[["RawHandler", SocketStream], Awaitable[None]]

STREAM_CAP = 256 * 1024 * 1024
"""A streaming handler stops by itself after this many body bytes."""


@dataclass
class RawHandler:
    """A raw socket server that records requests and how much body it managed to send."""

    url: str = ""
    requests: int = 0
    sent: list[int] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        """Until ``count`` requests have arrived."""
        with anyio.fail_after(timeout):
            while self.requests < count:
                await self.arrived.wait()
                self.arrived = anyio.Event()


async def _read_head(stream: SocketStream) -> bytes:
    """Bytes up to the end of the request head (the body, if any, is left unread)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        data += await stream.receive()
    return data


async def hang(handler: RawHandler, stream: SocketStream) -> None:
    """Read the request and never answer (until the client gives up)."""
    try:
        while await stream.receive():
            pass
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        return


async def reset(handler: RawHandler, stream: SocketStream) -> None:
    """Close with SO_LINGER 0: the client sees a TCP reset instead of an answer."""
    sock = stream.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


def endless(*, declared: bool) -> Behaviour:
    """Answer 200 with a body that never ends: with a huge Content-Length, or chunked."""

    async def behave(handler: RawHandler, stream: SocketStream) -> None:
        framing = f"Content-Length: {STREAM_CAP}" if declared else "Transfer-Encoding: chunked"
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
        chunk = b"[" + b"1," * 32767 + b"1"  # JSON text: only the size can be refused
        frame = chunk if declared else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent = 0
        try:
            await stream.send(head.encode())
            while sent < STREAM_CAP:
                await stream.send(frame)
                sent += len(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        handler.sent.append(sent)

    return behave


@asynccontextmanager
async def raw_handler(behaviour: Behaviour) -> AsyncIterator[RawHandler]:
    """Serve ``behaviour`` on a free 127.0.0.1 port for the block's duration."""
    recorder = RawHandler()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    recorder.url = f"http://127.0.0.1:{port}"

    async def serve(stream: SocketStream) -> None:
        async with stream:
            try:
                await _read_head(stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            recorder.requests += 1
            recorder.arrived.set()
            await behaviour(recorder, stream)

    async with listener, anyio.create_task_group() as tg:  # the listener closes last
        tg.start_soon(listener.serve, serve)
        try:
            yield recorder
        finally:
            tg.cancel_scope.cancel()
