"""One kept-alive HTTP/1.1 connection of the delivery client, read with httptools.

:class:`Connection` carries one exchange at a time: it writes a request, feeds what arrives to
httptools' response parser, and settles the exchange's future with an :class:`Answer` or an
error (the connection's end, a malformed answer, the deadline). The pool around it and the
requests' bytes are :mod:`flowyard.egress.http1`'s.
"""

import asyncio

import httptools
import msgspec

Origin = tuple[str, str, int]
"""``(scheme, host, port)``."""


class HttpError(Exception):
    """No usable answer: the connection could not be made, broke, or the answer is malformed."""


class ConnectError(HttpError):
    """The connection could not be made (the name, the address, or the TLS handshake)."""


class RemoteProtocolError(HttpError):
    """The connection closed before a complete answer, or the answer is not HTTP/1.1."""


class Answer(msgspec.Struct, frozen=True, gc=False):
    """An answer: its status and up to ``max_body`` bytes of its body (``complete`` False when
    the body was longer; the rest was not read); its header fields only when asked for."""

    status: int
    body: bytes
    complete: bool = True
    headers: list[tuple[bytes, bytes]] = msgspec.field(default_factory=list)


class Connection(asyncio.Protocol):
    """One connection, one exchange at a time; httptools calls the ``on_*`` methods."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reusable = False
        self.received = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Answer] | None = None
        self._status = 0
        self._body = bytearray()
        self._max_body = 0
        self._headers: list[tuple[bytes, bytes]] | None = None  # kept only when asked for
        self._framed = False  # Content-Length or chunked: the end is not the connection's

    # ------------------------------------------------------------------ the exchange

    async def exchange(
        self, request: bytes, max_body: int, deadline: float, *, headers: bool = False
    ) -> Answer:
        """Send ``request``; its answer (with its header fields if ``headers``), or
        TimeoutError once the loop's clock is past ``deadline`` (a timer handle, cheaper than
        a cancel scope per request)."""
        if self.closed or self.transport is None:
            raise RemoteProtocolError("the connection is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        self._status, self._body, self._max_body = 0, bytearray(), max_body
        self._headers = [] if headers else None
        self._framed = self.received = self.reusable = False
        timer = loop.call_at(deadline, self._expire, waiter)
        self.transport.write(request)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _expire(self, waiter: "asyncio.Future[Answer]") -> None:
        if waiter is self._waiter:
            self._settle(None, TimeoutError())
            self.close()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _settle(self, answer: Answer | None, error: Exception | None = None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if answer is not None:
            waiter.set_result(answer)
        else:
            waiter.set_exception(error or RemoteProtocolError("no answer"))

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes; they have the same methods.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: this connection cannot be trusted
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._settle(None, RemoteProtocolError("the answer switched protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            refused = exc.__context__  # what an ``on_*`` method raised, if one did
            if not isinstance(refused, RemoteProtocolError):
                refused = RemoteProtocolError(f"malformed answer: {exc}")
            self._settle(None, refused)
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles what is waiting

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is None:
            return
        if self._status and not self._framed:  # the answer's body ends with the connection
            self._settle(self._answer())
        else:
            reason = f": {exc}" if exc is not None else ""
            self._settle(
                None, RemoteProtocolError(f"the connection closed before the answer{reason}")
            )

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None:
            # An answer after the one asked for, in the same read: nobody asked for it, and
            # the next request on this connection would be read as its continuation.
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers is not None:
            self._headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        if self._status < 100:  # llhttp reads any three digits; RFC 9110 §15 starts at 100
            raise RemoteProtocolError(f"malformed answer: status {self._status:03d}")
        if self._status < 200:
            return
        # No body can follow these answers to a POST: httptools ends them at once.
        if self._status in (204, 304):
            self._framed = True

    def on_body(self, body: bytes) -> None:
        room = self._max_body - len(self._body)
        if len(body) <= room:
            self._body += body
            return
        self._body += body[:room]
        self._settle(self._answer(complete=False))
        self.close()  # the rest is not read: the connection cannot carry another exchange

    def on_message_complete(self) -> None:
        status = self._status
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._status, self._framed = 0, False
            self._body.clear()
            if self._headers is not None:
                self._headers.clear()
            return
        self.reusable = self.parser.should_keep_alive() and not self.closed
        self._settle(self._answer())

    def _answer(self, complete: bool = True) -> Answer:
        if self._headers is None:
            return Answer(self._status, bytes(self._body), complete)
        return Answer(self._status, bytes(self._body), complete, self._headers)
