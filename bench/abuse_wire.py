"""Raw HTTP/1.1 on anyio sockets for ``bench.abuse``: requests no well-behaved client would send.

An attack needs bytes an HTTP library refuses to produce (a 64 MiB header, half a request
head, garbage after a valid request) and must keep going when the server answers early and
closes. Every operation here runs under a timeout and turns a broken connection into a
figure instead of an exception. Only 127.0.0.1 is ever connected to.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import SocketStream

from bench.common import HOST

CHUNK = 256 * 1024
"""Bytes per ``send``: large enough to be fast, small enough to notice an early answer."""

GONE = (
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    anyio.IncompleteRead,
)
"""What a socket operation raises when the other side reset or closed the connection."""


@dataclass
class Answer:
    """One HTTP response as read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes


def request(
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    length: int | None = None,
) -> bytes:
    """A request head (and body); ``length`` announces another Content-Length than ``body``'s."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {HOST}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or length is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_answers(data: bytes) -> list[Answer]:
    """Every complete response in ``data`` (a connection's whole output), in order.

    A response without ``Content-Length`` runs to the end of the data; a truncated one is left
    out.
    """
    answers: list[Answer] = []
    rest = data
    while rest:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = rest[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            break
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            body, rest = rest[start:], b""
        elif len(rest) - start < int(length):
            break
        else:
            body, rest = rest[start : start + int(length)], rest[start + int(length) :]
        answers.append(Answer(int(parts[1]), headers, body))
    return answers


async def connect(port: int, timeout: float = 5.0) -> SocketStream:
    """A new TCP connection to the server on 127.0.0.1."""
    with anyio.fail_after(timeout):
        return await anyio.connect_tcp(HOST, port)


@dataclass
class Progress:
    """Bytes of a request sent so far (readable after the sender was cancelled)."""

    sent: int = 0


async def send(
    stream: SocketStream, data: bytes, timeout: float, progress: Progress | None = None
) -> int:
    """Send ``data`` in chunks; the bytes sent before the server closed (or all of them)."""
    progress = progress or Progress()
    try:
        with anyio.fail_after(timeout):
            while progress.sent < len(data):
                await stream.send(data[progress.sent : progress.sent + CHUNK])
                progress.sent += min(CHUNK, len(data) - progress.sent)
    except (*GONE, TimeoutError):
        pass
    return progress.sent


async def read_until_closed(stream: SocketStream, timeout: float) -> tuple[bytes, str]:
    """Everything the server sends until it closes or ``timeout`` passes, and how it ended:
    ``closed``, ``reset`` or ``timeout``."""
    chunks: list[bytes] = []
    ending = "closed"
    try:
        with anyio.fail_after(timeout):
            while True:
                chunks.append(await stream.receive())
    except anyio.EndOfStream:
        ending = "closed"
    except TimeoutError:
        ending = "timeout"
    except GONE:
        ending = "reset"
    return b"".join(chunks), ending


async def read_answer(stream: SocketStream, timeout: float) -> Answer | None:
    """The next whole response, or None if the connection ended or ``timeout`` passed first."""
    data = b""
    try:
        with anyio.fail_after(timeout):
            while True:
                answers = parse_answers(data)
                if answers and "content-length" in answers[0].headers:
                    return answers[0]
                data += await stream.receive()
    except (*GONE, TimeoutError):
        answers = parse_answers(data)
        return answers[0] if answers else None


@dataclass
class Exchange:
    """How one hostile request went: its answer, bytes sent, seconds to the answer."""

    answer: Answer | None
    sent: int
    seconds: float

    @property
    def status(self) -> str:
        """The answer's status code, or ``none`` when the connection ended without one."""
        return str(self.answer.status) if self.answer is not None else "none"


async def exchange(port: int, data: bytes, timeout: float) -> Exchange:
    """Connect, send ``data`` while already reading, and stop sending once the answer came.

    A server that answers early (431, 408, a refused signature) and closes is seen answering
    instead of as a failed send; whatever was not sent by then stays unsent.
    """
    began = time.monotonic()
    try:
        stream = await connect(port, timeout)
    except (*GONE, TimeoutError):
        return Exchange(None, 0, time.monotonic() - began)
    progress = Progress()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(send, stream, data, timeout, progress)
            answer = await read_answer(stream, timeout)
            tg.cancel_scope.cancel()
    finally:
        await close(stream)
    return Exchange(answer, progress.sent, time.monotonic() - began)


async def close(stream: SocketStream) -> None:
    """Close a connection, whatever state it is in."""
    with anyio.move_on_after(2, shield=True), contextlib.suppress(*GONE):
        await stream.aclose()
