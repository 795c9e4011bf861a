"""A webhook receiver for the benchmarks: answers every delivery 200 and records its arrival.

Run as its own process (``python -m bench.webhook_receiver --port N``) so that its CPU is not
the benchmark's: an asyncio protocol over httptools (uvloop when installed), the cheapest
HTTP/1.1 server at hand, so that the receiver is not what bounds the deliveries. It binds
127.0.0.1 only.

Every ``POST`` but to the control paths is a delivery: its arrival (``time.time()`` once the
body is in), ``X-Flowyard-Event-Id``, ``X-Flowyard-Delivery-Id``, ``X-Flowyard-Topic``,
``X-Flowyard-Signature`` and body are kept as they came, to be checked after the run.
Control paths: ``GET /_count`` answers ``{requests, events, topics}`` (distinct event ids,
and distinct event ids per topic) and ``POST /_take`` answers the records kept since the last
take and forgets them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from typing import Any, cast

import httptools
import orjson

HOST = "127.0.0.1"
_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
_BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class Records:
    """What the deliveries brought, since the last take.

    A delivery is kept as it came (arrival, the header dict, the body); the text is decoded
    only when the counts or the records are asked for, so that a delivery costs the receiver
    as little CPU as it can (it shares the machine with the server it measures).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.raw: list[tuple[float, dict[bytes, bytes], bytes]] = []
        self.rows: list[tuple[float, str, str, str, str, str]] = []
        self.events: set[str] = set()
        self.topics: dict[str, set[str]] = {}

    def add(self, arrival: float, headers: dict[bytes, bytes], body: bytes) -> None:
        self.raw.append((arrival, headers, body))

    def _decode(self) -> None:
        for arrival, headers, body in self.raw:
            event_id = headers.get(b"x-flowyard-event-id", b"").decode("latin-1")
            topic = headers.get(b"x-flowyard-topic", b"").decode("latin-1")
            self.events.add(event_id)
            self.topics.setdefault(topic, set()).add(event_id)
            self.rows.append(
                (
                    arrival,
                    event_id,
                    headers.get(b"x-flowyard-delivery-id", b"").decode("latin-1"),
                    topic,
                    headers.get(b"x-flowyard-signature", b"").decode("latin-1"),
                    body.decode("utf-8", "replace"),
                )
            )
        self.raw.clear()

    def count(self) -> bytes:
        self._decode()
        topics = {topic: len(ids) for topic, ids in self.topics.items()}
        return orjson.dumps(
            {"requests": len(self.rows), "events": len(self.events), "topics": topics}
        )

    def take(self) -> bytes:
        self._decode()
        out = orjson.dumps({"rows": self.rows})
        self.clear()
        return out


class Connection(asyncio.Protocol):
    """One keep-alive connection: each complete request is recorded and answered at once."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes; they have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_BAD)
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        arrival = time.time()
        if self.transport is None:
            return
        method = self.parser.get_method()
        if self.url == b"/_count":
            self._answer(self.records.count())
        elif self.url == b"/_take" and method == b"POST":
            self._answer(self.records.take())
        else:
            self.records.add(arrival, self.headers, b"".join(self.body))
            self.transport.write(_OK)
        if not self.parser.should_keep_alive():
            self.transport.close()

    def _answer(self, body: bytes) -> None:
        assert self.transport is not None
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        self.transport.write(head % len(body) + body)


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    records = Records()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    server = await loop.create_server(lambda: Connection(records), HOST, port, backlog=1024)
    async with server:
        await stopped.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhook_receiver", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    with contextlib.suppress(ImportError):
        import uvloop

        options["loop_factory"] = uvloop.new_event_loop
    with asyncio.Runner(**options) as runner:
        runner.run(serve(args.port))


if __name__ == "__main__":
    main()
