"""The service's HTTP/1.1 connections: httptools parses each request, the ASGI app answers it.

uvicorn runs the server (the socket, the lifespan, signals, graceful shutdown) and creates one
:class:`HttpProtocol` per connection, in place of its own ``HttpToolsProtocol``. That one
costs about 109,000 instructions per request for an app that does nothing (a sixth of an
average request of ``bench.workflows``); this one 72,000, with the behaviour the service needs:

- Keep-alive as the request asks (HTTP/1.1 by default), closed after ``timeout_keep_alive``
  seconds idle; ``Connection: close`` on either side closes the connection after the answer.
- Pipelined requests are answered in order; reading pauses while some wait their turn.
- The body reaches the app as it arrives (``http.request`` messages); reading pauses while
  more than :data:`BODY_BUFFER` bytes wait for the app. ``Expect: 100-continue`` is answered
  when the app first asks for the body. Once the body is read, ``receive`` waits until the
  client leaves or the answer is complete, then says ``http.disconnect``.
- An answer goes out in one write when its body comes in one message (every JSON answer):
  the status line and headers wait for the body. Without ``Content-Length`` it is chunked;
  an answer to ``HEAD`` has no body. ``send`` waits while the client does not read.
- A request httptools cannot parse is answered ``400`` and the connection closed. An
  upgrade request (the service has no WebSockets) is answered as plain HTTP, and the
  connection closes after it.
- An app that fails before its answer started gets a ``500`` sent for it (and logged); after,
  the connection is closed.
"""

import asyncio
import http
import logging
import re
import urllib.parse
from collections import deque
from typing import Any, cast

import httptools
import uvicorn
from starlette.types import ASGIApp, Message
from uvicorn.server import ServerState

log = logging.getLogger(__name__)

BODY_BUFFER = 65_536
"""Bytes of request body held for the app before reading from the client pauses."""

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}
_STATUS_LINE = {
    code: f"HTTP/1.1 {code} {_PHRASES.get(code, '')}\r\n".encode() for code in range(100, 600)
}
_BAD_HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_INVALID = b"Invalid HTTP request received."
_ERROR_500 = b"Internal Server Error"


def _address(transport: asyncio.BaseTransport, name: str) -> tuple[str, int] | None:
    address = transport.get_extra_info(name)
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


class HttpProtocol(asyncio.Protocol):
    """One client connection (see the module's docstring); uvicorn's protocol interface."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app: ASGIApp = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.keep_alive_seconds = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        # As uvicorn: answer the first of pipelined requests that ends with Connection: close.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.parsing: _Exchange | None = None  # the request whose body is being read
        self.answering: _Exchange | None = None  # the request being answered
        self.waiting: deque[_Exchange] = deque()  # pipelined requests, in order
        self.reading_paused = False
        self.writing_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.idle_since: float | None = None  # when the last answer was sent, while idle
        self.idle_timer: asyncio.TimerHandle | None = None
        self.closing = False  # close once the current answer is sent (shutdown, an upgrade)

    # ------------------------------------------------------------------ the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server = _address(transport, "sockname")
        self.client = _address(transport, "peername")
        self.server_state.connections.add(self)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._disarm_idle()
        for exchange in (self.answering, self.parsing, *self.waiting):
            if exchange is not None and not exchange.complete:
                exchange.disconnected = True
                exchange.wake()
        self.waiting.clear()
        self.resume_writing()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def data_received(self, data: bytes) -> None:
        self.idle_since = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No upgrade is offered: the request is answered as plain HTTP, and what follows
            # it on the connection belongs to another protocol.
            self.closing = True
            if self.parsing is not None and self.parsing.more_body:
                self.parsing.more_body = False
                self.parsing.wake()
        except httptools.HttpParserError:
            self._refuse()

    def shutdown(self) -> None:
        """The server stops: close now if idle, else once the current answer is sent."""
        self.closing = True
        if self.answering is None:
            self._close()
        else:
            self.answering.keep_alive = False

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drained is not None:
            if not self.drained.done():
                self.drained.set_result(None)
            self.drained = None

    async def drain(self) -> None:
        """Wait until the client has read enough of what was written."""
        if self.drained is None:
            self.drained = self.loop.create_future()
        await self.drained

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        url = httptools.parse_url(self.url)
        raw_path = url.path
        path = raw_path.decode("ascii")  # not ASCII: the parser's error, answered 400
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": parser.get_http_version(),
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        keep_alive = parser.should_keep_alive() and not self.closing
        exchange = _Exchange(self, scope, keep_alive, self.expect_continue)
        self.parsing = exchange
        if self.answering is None:
            self._start(exchange)
        else:
            self.waiting.append(exchange)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None or exchange.complete:
            return
        exchange.chunks.append(body)
        exchange.buffered += len(body)
        if exchange.buffered > BODY_BUFFER:
            self._pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is None:
            return
        exchange.more_body = False
        exchange.wake()
        self.parsing = None

    # ------------------------------------------------------------------ helpers

    def _start(self, exchange: "_Exchange") -> None:
        self.answering = exchange
        task = self.loop.create_task(exchange.run(self.app))
        self.server_state.tasks.add(task)  # uvicorn waits for them at shutdown
        exchange.task = task

    def answered(self, exchange: "_Exchange") -> None:
        """``exchange``'s answer is sent: close, start the next request or wait for one."""
        self.server_state.total_requests += 1
        if not exchange.keep_alive or self.closing:
            self._close()
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.answering = None
        if self.waiting:
            self._start(self.waiting.popleft())
        else:
            self.idle_since = self.loop.time()
            if self.idle_timer is None:
                self.idle_timer = self.loop.call_later(self.keep_alive_seconds, self._idle_check)
        if not self.waiting:
            self.resume_reading()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _idle_check(self) -> None:
        """Close the connection if it stayed idle long enough, else look again when it would.

        One timer per connection, armed when it goes idle and left to run while it is busy:
        arming and cancelling one per request cost more than the rest of the check.
        """
        self.idle_timer = None
        if self.idle_since is None:
            return  # busy (or a request on its way): the next answer arms it again
        left = self.idle_since + self.keep_alive_seconds - self.loop.time()
        if left <= 0:
            self._close()
        else:
            self.idle_timer = self.loop.call_later(left, self._idle_check)

    def _disarm_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _close(self) -> None:
        self._disarm_idle()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self) -> None:
        log.debug("invalid HTTP request from %s", self.client)
        self.write(
            _STATUS_LINE[400]
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_INVALID)
            + _INVALID
        )
        self._close()


class _Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of the app's call."""

    __slots__ = (
        "buffered",
        "chunked",
        "chunks",
        "complete",
        "connection",
        "disconnected",
        "expect_continue",
        "head",
        "keep_alive",
        "more_body",
        "read_all",
        "remaining",
        "scope",
        "started",
        "task",
        "waiter",
    )

    def __init__(
        self, connection: HttpProtocol, scope: dict[str, Any], keep_alive: bool, expect: bool
    ) -> None:
        self.connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.more_body = True  # the parser has not seen the body's end
        self.read_all = False  # the app was given the body's end
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.started = False
        self.complete = False
        self.head = b""  # status line and headers, sent with the first piece of the body
        self.chunked = False
        self.remaining = -1  # Content-Length still to send; -1: no Content-Length
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException:
            log.exception("the app failed on %s %s", self.scope["method"], self.scope["path"])
            if not self.started:
                await self._send_500()
            else:
                self.connection._close()
        else:
            if not self.disconnected and not self.started:
                log.error("the app returned without answering %s", self.scope["path"])
                await self._send_500()
            elif not self.disconnected and not self.complete:
                log.error("the app returned before its answer ended: %s", self.scope["path"])
                self.connection._close()
        finally:
            self.connection.server_state.tasks.discard(self.task)

    async def receive(self) -> Message:
        connection = self.connection
        if self.expect_continue:
            self.expect_continue = False
            connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not (self.disconnected or self.complete):
            if self.chunks or (not self.more_body and not self.read_all):
                chunks = self.chunks
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.chunks = []
                self.buffered = 0
                self.read_all = not self.more_body
                connection.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            connection.resume_reading()
            self.waiter = connection.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        connection = self.connection
        if connection.writing_paused and not self.disconnected:
            await connection.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, not {kind}")
            self.head = self._head(message["status"], message.get("headers", ()))
            self.started = True
            self.expect_continue = False
            return
        if self.complete:
            raise RuntimeError(f"{kind} after the answer was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, not {kind}")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            body = b""
            self.remaining = 0  # its Content-Length tells what a GET would get
        elif self.chunked:
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (
                b"" if more_body else b"0\r\n\r\n"
            )
        elif self.remaining >= 0:
            if len(body) > self.remaining:
                raise RuntimeError("the body is longer than its Content-Length")
            self.remaining -= len(body)
        if self.head:
            body = self.head + body
            self.head = b""
        if body:
            connection.write(body)
        if not more_body:
            if self.remaining > 0:
                raise RuntimeError("the body is shorter than its Content-Length")
            self.complete = True
            self.wake()
            connection.answered(self)

    def _head(self, status: int, headers: Any) -> bytes:
        parts = [_STATUS_LINE[status]]
        for name, value in self.connection.server_state.default_headers:  # Date, Server
            parts += (name, b": ", value, b"\r\n")
        closes = self.chunked = False
        self.remaining = -1
        for name, value in headers:
            if _BAD_HEADER_VALUE.search(value):
                raise RuntimeError(f"invalid value for the header {name!r}")
            lowered = name.lower()
            if lowered == b"content-length":
                self.remaining = int(value)
            elif lowered == b"transfer-encoding" and value.lower() == b"chunked":
                self.chunked = True
            elif lowered == b"connection" and b"close" in [
                token.strip().lower() for token in value.split(b",")
            ]:
                self.keep_alive = False
                closes = True
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not closes:
            parts.append(b"connection: close\r\n")
        if (
            self.remaining < 0
            and not self.chunked
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _send_500(self) -> None:
        self.keep_alive = False
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(_ERROR_500)),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": _ERROR_500})
