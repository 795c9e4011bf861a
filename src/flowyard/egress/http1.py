"""The HTTP/1.1 client of push deliveries and webhooks: kept-alive connections, httptools.

Every job step pushed to a handler and every webhook event is one POST, so the client's cost per
request is paid per job and per event, on the event loop that also answers the API. httpx (the
SDK's client) costs about forty times this client's CPU per small POST, aiohttp about six
times (``python -m bench.http_clients``; figures in ``bench/README.md``, "The push and
webhook client"). It does only what a delivery needs: a POST with a body, its answer's status
and the start of its body, kept-alive connections per origin, TLS, and a timeout around the
whole exchange. Parsing the answer is httptools' (llhttp, uvicorn's parser);
``tests/test_http1_client.py`` holds it to httpx's reading of the same byte streams.

Redirects are never followed and proxies are never used. Where the connection goes is decided
by ``addresses`` (the public-network check resolves the name once and returns the addresses
it checked; by default the name is handed to the event loop) and opened by ``opener``.
"""

import asyncio
import base64
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import quote, unquote, urlsplit

import anyio
import certifi
import httptools
import msgspec

from flowyard import __version__

IDLE_SECONDS = 5.0
"""A kept-alive connection unused for this long is closed instead of reused."""
MAX_IDLE_PER_ORIGIN = 64
"""Idle connections kept per origin; more are closed when released."""
_MAX_TARGETS = 4096
"""Parsed URLs kept (a handler URL is parsed once, not once per request)."""

Origin = tuple[str, str, int]
"""``(scheme, host, port)``."""
Addresses = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port)`` to the addresses (or the name) to connect to, in order."""
Opener = Callable[
    [Callable[[], asyncio.Protocol], str, int, ssl.SSLContext | None, str | None],
    Awaitable[asyncio.Protocol],
]
"""``(protocol factory, address, port, TLS context, TLS server name)`` to the connected protocol."""


class HttpError(Exception):
    """No usable answer: the connection could not be made, broke, or the answer is malformed."""


class ConnectError(HttpError):
    """The connection could not be made (the name, the address, or the TLS handshake)."""


class RemoteProtocolError(HttpError):
    """The connection closed before a complete answer, or the answer is not HTTP/1.1."""


class InvalidUrl(ValueError):
    """The URL cannot be requested (scheme, host, port or header text)."""


class Answer(msgspec.Struct, frozen=True, gc=False):
    """An answer: its status and up to ``max_body`` bytes of its body (``complete`` False when
    the body was longer; the rest was not read)."""

    status: int
    body: bytes
    complete: bool = True


class _Target(msgspec.Struct, frozen=True, gc=False):
    origin: Origin
    tls_name: str | None
    head: bytes  # request line, Host, User-Agent, and Authorization from the URL's userinfo


async def _default_addresses(host: str, port: int) -> list[str]:
    return [host]


async def open_connection(
    factory: Callable[[], asyncio.Protocol],
    address: str,
    port: int,
    tls: ssl.SSLContext | None,
    server_name: str | None,
) -> asyncio.Protocol:
    """The default :data:`Opener`: the event loop's connection to ``address``."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        factory, address, port, ssl=tls, server_hostname=server_name
    )
    return protocol


def default_tls() -> ssl.SSLContext:
    """Certificates checked against certifi's roots, as httpx does."""
    return ssl.create_default_context(cafile=certifi.where())


class Http1Client:
    """POSTs over kept-alive HTTP/1.1 connections, one request at a time on each.

    Args:
        addresses: where a host may be connected to (see the module's docstring).
        opener: opens one connection to one address.
        tls: the context of ``https`` URLs (certifi's roots by default).
    """

    def __init__(
        self,
        *,
        addresses: Addresses = _default_addresses,
        opener: Opener = open_connection,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._addresses = addresses
        self._open = opener
        self._tls = tls
        self._idle: dict[Origin, list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._closed = False

    async def aclose(self) -> None:
        """Close every idle connection; requests in flight close theirs when they end."""
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        *,
        timeout: float,
        max_body: int,
    ) -> Answer:
        """POST ``body`` with ``headers`` (``Content-Length``, ``Host`` and ``User-Agent`` are
        added); the answer, read within ``timeout`` seconds in all (connecting included).

        Raises:
            InvalidUrl: the URL or a header cannot be sent.
            HttpError: no usable answer (:class:`ConnectError`, :class:`RemoteProtocolError`).
            TimeoutError: no complete answer within ``timeout``.
            AddressBlocked: (from ``addresses``) the host may not be called.
        """
        target = self._target(url)
        request = b"".join((target.head, _header_lines(headers, len(body)), body))
        deadline = asyncio.get_running_loop().time() + timeout
        connection = self._reuse(target.origin)
        if connection is not None:
            try:
                return await self._exchange(connection, request, max_body, deadline)
            except RemoteProtocolError:
                if connection.received:
                    raise
                # The origin closed a kept-alive connection as the request was sent: the
                # request never reached it, so it goes once more on a new connection.
        with anyio.fail_after(deadline - asyncio.get_running_loop().time()):
            connection = await self._connect(target)
        return await self._exchange(connection, request, max_body, deadline)

    async def _exchange(
        self, connection: "_Connection", request: bytes, max_body: int, deadline: float
    ) -> Answer:
        try:
            answer = await connection.exchange(request, max_body, deadline)
        except BaseException:
            connection.close()
            raise
        if connection.reusable and not self._closed:
            idle = self._idle.setdefault(connection.origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                connection.idle_since = time.monotonic()
                idle.append(connection)
                return answer
        connection.close()
        return answer

    def _reuse(self, origin: Origin) -> "_Connection | None":
        idle = self._idle.get(origin)
        oldest = time.monotonic() - IDLE_SECONDS
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= oldest:
                return connection
            connection.close()
        return None

    async def _connect(self, target: _Target) -> "_Connection":
        scheme, host, port = target.origin
        tls = None
        if scheme == "https":
            tls = self._tls or default_tls()
            self._tls = tls
        failure: Exception | None = None
        for address in await self._addresses(host, port):
            try:
                protocol = await self._open(
                    lambda: _Connection(target.origin), address, port, tls, target.tls_name
                )
            except (OSError, ssl.SSLError) as exc:  # refused, unreachable, certificate
                failure = exc
                continue
            assert isinstance(protocol, _Connection)
            return protocol
        raise ConnectError(f"cannot connect to {host}:{port}: {failure}") from failure

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            target = self._targets[url] = _parse(url)
        return target


def _parse(url: str) -> _Target:
    """The origin and the constant start of a request to ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise InvalidUrl(f"invalid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise InvalidUrl("the URL must be http(s) with a host")
    try:  # an A-label is checked by decoding it, as httpx does
        ascii_host = host.encode("idna").decode("ascii")
        if "xn--" in ascii_host:
            ascii_host.encode("ascii").decode("idna")
    except UnicodeError as exc:
        raise InvalidUrl(f"invalid host {host!r}: {exc}") from exc
    default_port = 443 if scheme == "https" else 80
    port = port if port is not None else default_port
    shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    authority = shown if port == default_port else f"{shown}:{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~-._")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=~-._?")
    lines = [f"POST {path} HTTP/1.1", f"Host: {authority}", f"User-Agent: flowyard/{__version__}"]
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines.append("Authorization: Basic " + base64.b64encode(credentials.encode()).decode())
    head = "".join(line + "\r\n" for line in lines)
    tls_name = ascii_host if scheme == "https" else None
    return _Target((scheme, ascii_host, port), tls_name, _ascii(head))


def _header_lines(headers: Iterable[tuple[str, str]], length: int) -> bytes:
    lines = [f"{name}: {value}" for name, value in headers]
    text = "".join(lines)
    if "\r" in text or "\n" in text:
        raise InvalidUrl("a header holds a line break")
    return _ascii("".join(line + "\r\n" for line in lines) + f"Content-Length: {length}\r\n\r\n")


def _ascii(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise InvalidUrl(f"not ASCII: {text[exc.start : exc.end]!r}") from exc


class _Connection(asyncio.Protocol):
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
        self._framed = False  # Content-Length or chunked: the end is not the connection's

    # ------------------------------------------------------------------ the exchange

    async def exchange(self, request: bytes, max_body: int, deadline: float) -> Answer:
        """Send ``request``; its answer, or TimeoutError once the loop's clock is past
        ``deadline`` (a timer handle, cheaper than a cancel scope per request)."""
        if self.closed or self.transport is None:
            raise RemoteProtocolError("the connection is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        self._status, self._body, self._max_body = 0, bytearray(), max_body
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
            self._settle(Answer(self._status, bytes(self._body)))
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
        self._settle(Answer(self._status, bytes(self._body), complete=False))
        self.close()  # the rest is not read: the connection cannot carry another exchange

    def on_message_complete(self) -> None:
        status = self._status
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._status, self._framed = 0, False
            self._body.clear()
            return
        self.reusable = self.parser.should_keep_alive() and not self.closed
        self._settle(Answer(status, bytes(self._body)))
