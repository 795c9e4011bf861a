"""Raw HTTP/1.1 on a socket: send exactly the bytes a test names, read one answer back."""

import json
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import SocketStream


@dataclass
class Answer:
    """One answer read off the wire."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_head(method: str, target: str, *headers: str) -> bytes:
    """A request line and header section, ``Host`` first, ending with the blank line."""
    lines = [f"{method} {target} HTTP/1.1", "Host: flowyard", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_answer(stream: SocketStream) -> Answer:
    """The next answer on ``stream`` (one with a ``Content-Length``, as every JSON one)."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive()
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = bytearray(rest)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += await stream.receive()
    return Answer(int(lines[0].split()[1]), headers, bytes(body[:length]))


async def exchange(url: str, data: bytes) -> Answer:
    """Connect to ``url`` (``http://host:port``), send ``data``, read one answer."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(data)
        return await read_answer(stream)
