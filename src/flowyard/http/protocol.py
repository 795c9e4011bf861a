"""The service's HTTP/1.1 connections: httptools parses each request, the ASGI app answers it.

uvicorn runs the server (the socket, the lifespan, signals, graceful shutdown) and creates one
:class:`HttpProtocol` per connection, in place of its own ``HttpToolsProtocol``. That one
costs about 109,000 instructions per request for an app that does nothing (a sixth of an
average request of ``bench.workflows``); this one 72,000, with the behaviour the service needs:

- Keep-alive as the request asks (HTTP/1.1 by default; HTTP/1.0 only with ``Connection:
  keep-alive``, which the answer then repeats), closed after ``timeout_keep_alive`` seconds
  idle (a new connection counts as idle until its first byte); ``Connection: close`` on
  either side closes the connection after the answer.
- Pipelined requests are answered in order; reading pauses while some wait their turn.
- The body reaches the app as it arrives (``http.request`` messages); reading pauses while
  more than :data:`BODY_BUFFER` bytes wait for the app. ``Expect: 100-continue`` is answered
  when the app first asks for the body. Once the body is read, ``receive`` waits until the
  client leaves or the answer is complete, then says ``http.disconnect``.
- An answer goes out in one write when its body comes in one message (every JSON answer):
  the status line and headers wait for the body. Without ``Content-Length`` it is chunked;
  an answer to ``HEAD`` has no body. ``send`` waits while the client does not read.
- The limits of :mod:`flowyard.http.limits` hold while the bytes arrive: a target over 8 KiB
  is ``414``, a header section over 64 KiB or 100 fields ``431``, a head slower than the read
  timeout or a body that stalls longer ``408``; each answer closes the connection. Header
  values lose their surrounding whitespace. A connection whose answer waits unread for the
  write timeout is aborted, its buffers freed.
- A request httptools cannot parse is answered ``400`` and the connection closed, after the
  answers to the requests before it. An upgrade request (the service has no WebSockets) is
  answered as plain HTTP with ``connection: close``, and the connection closes after it.
- An app that fails before its answer started gets a ``500`` sent for it (and logged); after,
  the connection is closed.
- Every answer carries ``x-request-id``: the request's own ``X-Request-Id`` when it sent one
  sane one, else a new one (:func:`flowyard.logs.request_id_from`); the app's answers get it
  in :class:`Exchange`, which binds it for the app's log lines, and refusals in
  :meth:`~flowyard.http.refusals.Refusals._refuse`.

A closed connection drops its parser, its requests and its timers, so reference counting
frees it at once: the service raises the cycle collector's threshold (``cli/serve.py``), and
what a connection held must not wait for a collection.
"""

import asyncio
import functools
import logging
import urllib.parse
from collections import deque
from typing import Any, cast

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.server import ServerState

from flowyard.http import limits
from flowyard.http.exchange import Exchange, access_log
from flowyard.http.refusals import Refusals
from flowyard.logs import COUNTER, PREFIX, SANE_ID

log = logging.getLogger(__name__)

BODY_BUFFER = 65_536
"""Bytes of request body held for the app before reading from the client pauses."""

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_OWS = b" \t"
_NOTED = frozenset((b"host", b"x-request-id", b"expect", b"transfer-encoding"))
"""The fields :meth:`HttpProtocol.on_header` looks at."""


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request over a limit."""


def _address(transport: asyncio.BaseTransport, name: str) -> tuple[str, int] | None:
    address = transport.get_extra_info(name)
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


_TIMED_OUT = limits.request_timeout(limits.READ_TIMEOUT)


class HttpProtocol(Refusals):
    """One client connection (see the module's docstring); uvicorn's protocol interface.

    ``read_timeout`` and ``write_timeout`` are :mod:`~flowyard.http.limits`' unless given;
    :func:`protocol_class` gives others.
    """

    __deletable__ = ("parser",)  # see connection_lost

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        read_timeout: float = limits.READ_TIMEOUT,
        write_timeout: float = limits.WRITE_TIMEOUT,
    ) -> None:
        if not config.loaded:
            config.load()
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        if read_timeout == limits.READ_TIMEOUT:
            self.timed_out = _TIMED_OUT
        else:
            self.timed_out = limits.request_timeout(read_timeout)
        self.app: ASGIApp = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        # Typed int but often a float (tests): read untyped, or compiled code refuses a float.
        self.keep_alive_seconds = float(cast(Any, config).timeout_keep_alive)
        self.access_log = access_log.isEnabledFor(logging.DEBUG)  # once per connection
        self.parser = httptools.HttpRequestParser(self)
        # As uvicorn: answer the first of pipelined requests that ends with Connection: close.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.hosts = 0  # Host fields in the head being read
        self.sent_id: bytes | None = None  # its X-Request-Id; b"" once sent twice
        self.expect_continue = False
        self.parsing: Exchange | None = None  # the request whose body is being read
        self.answering: Exchange | None = None  # the request being answered
        self.waiting: deque[Exchange] = deque()  # pipelined requests, in order
        self.reading_paused = False
        self.writing_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.last_read = 0.0  # when bytes last arrived
        self.head_since: float | None = None  # when the head being read began
        self.head_unparsed = 0  # bytes of that head read so far, while it spans reads
        self.message_ended = False  # a request ended in the bytes being parsed
        self.refused: bytes | None = None  # the answer to a request over a limit
        self.refusal: bytes | None = None  # the last answer, once those before it are sent
        self.idle_since: float | None = None  # when the last answer was sent, while idle
        self.timer: asyncio.TimerHandle | None = None  # idle and read timeouts
        self.timer_due = 0.0  # when it fires
        self.write_timer: asyncio.TimerHandle | None = None
        self.closing = False  # close once the current answer is sent (shutdown, an upgrade)
        self.lingering = False  # refused: reading only to drop what arrives, then closing

    # ------------------------------------------------------------------ the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server = _address(transport, "sockname")
        self.client = _address(transport, "peername")
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        self.idle_since = now = self.loop.time()
        self._arm(now + self.keep_alive_seconds, now)

    def connection_lost(self, exc: Exception | None) -> None:
        # Everything that points back here is let go, so the connection is freed now,
        # not at the next run of the cycle collector.
        self.server_state.connections.discard(self)
        self._disarm()
        for exchange in (self.answering, self.parsing, *self.waiting):
            if exchange is not None and not exchange.complete:
                exchange.disconnected = True
                exchange.wake()
        self.waiting.clear()
        self.answering = self.parsing = None
        self.resume_writing()
        self.transport = None
        del self.parser  # it holds this protocol's methods; no byte is parsed after this

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # the connection was refused and is closing: what arrives is dropped
        self.last_read = self.loop.time()
        self.idle_since = None
        self.message_ended = False
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
            self._refuse(self.refused or limits.INVALID)
            return
        # A head still incomplete is counted as it arrives, so it is refused before the
        # parser holds much of it. Bytes that also held the end of an earlier request are
        # not counted (their share is unknown): at most one read more gets through.
        if self.head_since is not None and not self.message_ended:
            self.head_unparsed += len(data)
            if self.head_unparsed > limits.MAX_HEAD_BYTES:
                self._refuse(limits.HEADERS_TOO_LARGE)

    def shutdown(self) -> None:
        """The server stops: close now if idle, else once the current answer is sent."""
        self.closing = True
        if self.answering is None:
            self.close()
        else:
            self.answering.keep_alive = False

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self.write_timeout, self._unread)

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
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
        self.header_bytes = 0
        self.hosts = 0
        self.sent_id = None
        self.expect_continue = False
        self.head_since = now = self.last_read
        self.head_unparsed = 0
        due = now + self.read_timeout
        if self.timer is None or self.timer_due > due:
            self._arm(due, now)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > limits.MAX_TARGET:
            self.refused = limits.URI_TOO_LONG
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.rstrip(_OWS)  # the parser dropped the leading OWS
        headers = self.headers
        headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self.header_bytes > limits.MAX_HEADER_BYTES or len(headers) > limits.MAX_HEADER_FIELDS:
            self.refused = limits.HEADERS_TOO_LARGE
            raise _Refused
        if name not in _NOTED:
            return  # one look-up for most fields instead of four comparisons
        if name == b"host":
            self.hosts += 1
        elif name == b"x-request-id":
            self.sent_id = value if self.sent_id is None else b""  # two: neither is used
        elif name == b"expect":
            self.expect_continue = value.lower() == b"100-continue"
        elif name == b"transfer-encoding" and value.lower() != b"chunked":
            # httptools would hand the app a body still in this coding (gzip, ...).
            self.refused = limits.UNKNOWN_CODING
            raise _Refused

    def on_headers_complete(self) -> None:
        self.head_since = None
        parser = self.parser
        version = parser.get_http_version()
        if self.hosts != 1 and (self.hosts or version != "1.0"):
            self.refused = limits.ONE_HOST  # RFC 9112 §3.2: a 400, nothing else
            raise _Refused
        if version != "1.1" and version != "1.0":
            raise _Refused  # HTTP/0.9 (a request line without a version)
        raw_path = self.url
        query = b""
        if raw_path[:1] != b"/" or b"?" in raw_path or b"#" in raw_path:
            # Not a bare path (most requests are). Its parts are read untyped: the stubs say
            # bytes where a part absent is None, which compiled code would refuse.
            url: Any = httptools.parse_url(raw_path)
            raw_path = url.path
            query = url.query or b""
        path = raw_path.decode("ascii")  # not ASCII: the parser's error, answered 400
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        keep_alive = parser.should_keep_alive() and not (self.closing or parser.should_upgrade())
        # logs.request_id_from, inline: this runs for every request.
        sent = self.sent_id
        if sent is not None and SANE_ID.fullmatch(sent) is not None:
            request_id = sent.decode("ascii")
        else:
            request_id = f"{PREFIX}{next(COUNTER):x}"
        exchange = Exchange(self, scope, keep_alive, self.expect_continue, request_id)
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
        self.message_ended = True
        exchange = self.parsing
        if exchange is None:
            return
        exchange.more_body = False
        exchange.wake()
        self.parsing = None

    # ------------------------------------------------------------------ helpers

    def _start(self, exchange: Exchange) -> None:
        self.answering = exchange
        task = self.loop.create_task(exchange.run(self.app))
        self.server_state.tasks.add(task)  # uvicorn waits for them at shutdown
        exchange.task = task

    def answered(self, exchange: Exchange) -> None:
        """``exchange``'s answer is sent: close, start the next request or wait for one."""
        self.server_state.total_requests += 1
        if not exchange.keep_alive or self.closing:
            self.close()
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.answering = None
        if self.waiting:
            self._start(self.waiting.popleft())
        elif self.refusal is not None:  # the broken request after this one
            self._send_refusal(self.refusal)
            return
        else:
            self.idle_since = now = self.loop.time()
            self._arm(now + self.keep_alive_seconds, now)
        if not self.waiting:
            self.resume_reading()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and self.refusal is None:
            self.reading_paused = False
            self.transport.resume_reading()
            # The client was not read while paused: its read timeout starts over.
            self.last_read = now = self.loop.time()
            if self.head_since is not None:
                self.head_since = now
            self._arm(now + self.read_timeout, now)

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _disarm(self) -> None:
        for timer in (self.timer, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.write_timer = None

    def close(self) -> None:
        """Close the connection once what was written is sent (or the write timeout ends)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def protocol_class(
    read_timeout: float = limits.READ_TIMEOUT, write_timeout: float = limits.WRITE_TIMEOUT
) -> type[asyncio.Protocol]:
    """:class:`HttpProtocol` with these timeouts, for ``uvicorn.Config(http=...)``.

    uvicorn only calls what it is given, with keyword arguments, so this is a factory rather
    than a subclass (a class compiled with mypyc cannot be subclassed at run time).
    """
    factory = functools.partial(
        HttpProtocol, read_timeout=read_timeout, write_timeout=write_timeout
    )
    return cast(type[asyncio.Protocol], factory)
