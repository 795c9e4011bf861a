"""The HTTP/1.1 client of push deliveries and webhooks: kept-alive connections, httptools.

Every job step pushed to a handler and every webhook event is one POST, so the client's cost per
request is paid per job and per event, on the event loop that also answers the API. httpx (the
SDK's client) costs about forty times this client's CPU per small POST, aiohttp about six
times (``python -m bench.http_clients``; figures in ``bench/README.md``, "The push and
webhook client"). It does only what a delivery needs: a POST with a body, its answer's status
and the start of its body, kept-alive connections per origin, TLS, and a timeout around the
whole exchange. Parsing the answer is httptools' (llhttp, uvicorn's parser);
``tests/test_http1_client.py`` holds it to httpx's reading of the same byte streams.

The nodes of a cluster forward requests to each other with the same client
(:meth:`Http1Client.request`: any method, the answer's headers too), on its own pool: a node
URL is no handler, so that client has no public-network check.

Redirects are never followed and proxies are never used. Where the connection goes is decided
by ``addresses`` (the public-network check resolves the name once and returns the addresses
it checked; by default the name is handed to the event loop) and opened by ``opener``.
"""

import asyncio
import base64
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import quote, unquote, urlsplit

import anyio
import certifi
import msgspec

from flowyard import __version__
from flowyard.egress.connection import (
    Answer,
    ConnectError,
    Connection,
    Origin,
    RemoteProtocolError,
)

IDLE_SECONDS = 5.0
"""A kept-alive connection unused for this long is closed instead of reused."""
MAX_IDLE_PER_ORIGIN = 64
"""Idle connections kept per origin; more are closed when released."""
_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")
"""Bytes a request target may not hold as they are (httptools' parser refuses them too)."""
_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
"""A byte a header name may not hold (RFC 9110 §5.1: a token)."""
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""A byte a header value may not hold: a line break would start a header of its own."""
_MAX_TARGETS = 4096
"""Parsed URLs kept (a handler URL is parsed once, not once per request)."""

Addresses = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port)`` to the addresses (or the name) to connect to, in order."""
Opener = Callable[
    [Callable[[], asyncio.Protocol], str, int, ssl.SSLContext | None, str | None],
    Awaitable[asyncio.Protocol],
]
"""``(protocol factory, address, port, TLS context, TLS server name)`` to the connected protocol."""


class InvalidUrl(ValueError):
    """The URL cannot be requested (scheme, host, port or header text)."""


class _Target(msgspec.Struct, frozen=True, gc=False):
    origin: Origin
    tls_name: str | None
    head: bytes  # request line, Host, User-Agent, and Authorization from the URL's userinfo
    fields: bytes  # the same without the request line: any request to the origin starts so


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
    """POSTs (and, between the nodes of a cluster, any request: :meth:`request`) over
    kept-alive HTTP/1.1 connections, one request at a time on each.

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
        self._idle: dict[Origin, list[Connection]] = {}
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
        return await self._send(target, request, timeout, max_body, False)

    async def request(
        self,
        method: str,
        base_url: str,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        *,
        timeout: float,
        max_body: int,
    ) -> Answer:
        """Send ``method target`` to the origin of ``base_url`` with ``headers`` and ``body``
        (``Content-Length``, ``Host`` and ``User-Agent`` are added, so ``headers`` must not
        hold them); the answer with its header fields, read within ``timeout`` seconds.

        The answer to a ``HEAD`` would be read as if it had the body its ``Content-Length``
        names: send a ``GET`` instead and drop its body.

        Raises:
            InvalidUrl: the URL, the target or a header cannot be sent.
            HttpError: no usable answer (:class:`ConnectError`, :class:`RemoteProtocolError`).
            TimeoutError: no complete answer within ``timeout``.
        """
        if method == "HEAD" or not method.isalpha() or not method.isascii():
            raise InvalidUrl(f"cannot send the method {method!r}")
        if not target.startswith(b"/") or _UNSAFE_TARGET.search(target):
            raise InvalidUrl(f"invalid request target {target[:100]!r}")
        origin = self._target(base_url)
        lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n", origin.fields]
        for name, value in headers:
            if not name or _BAD_NAME.search(name) or _BAD_VALUE.search(value):
                raise InvalidUrl(f"cannot send the header {name[:100]!r}")
            lines += (name, b": ", value, b"\r\n")
        lines += (b"content-length: %d\r\n\r\n" % len(body), body)
        return await self._send(origin, b"".join(lines), timeout, max_body, True)

    async def _send(
        self, target: _Target, request: bytes, timeout: float, max_body: int, headers: bool
    ) -> Answer:
        deadline = asyncio.get_running_loop().time() + timeout
        connection = self._reuse(target.origin)
        if connection is not None:
            try:
                return await self._exchange(connection, request, max_body, deadline, headers)
            except RemoteProtocolError:
                if connection.received:
                    raise
                # The origin closed a kept-alive connection as the request was sent: the
                # request never reached it, so it goes once more on a new connection.
        with anyio.fail_after(deadline - asyncio.get_running_loop().time()):
            connection = await self._connect(target)
        return await self._exchange(connection, request, max_body, deadline, headers)

    async def _exchange(
        self,
        connection: Connection,
        request: bytes,
        max_body: int,
        deadline: float,
        headers: bool = False,
    ) -> Answer:
        try:
            answer = await connection.exchange(request, max_body, deadline, headers=headers)
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

    def _reuse(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        oldest = time.monotonic() - IDLE_SECONDS
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= oldest:
                return connection
            connection.close()
        return None

    async def _connect(self, target: _Target) -> Connection:
        scheme, host, port = target.origin
        tls = None
        if scheme == "https":
            tls = self._tls or default_tls()
            self._tls = tls
        failure: Exception | None = None
        for address in await self._addresses(host, port):
            try:
                protocol = await self._open(
                    lambda: Connection(target.origin), address, port, tls, target.tls_name
                )
            except (OSError, ssl.SSLError) as exc:  # refused, unreachable, certificate
                failure = exc
                continue
            assert isinstance(protocol, Connection)
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
    lines = [f"Host: {authority}", f"User-Agent: flowyard/{__version__}"]
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines.append("Authorization: Basic " + base64.b64encode(credentials.encode()).decode())
    fields = _ascii("".join(line + "\r\n" for line in lines))
    tls_name = ascii_host if scheme == "https" else None
    head = _ascii(f"POST {path} HTTP/1.1\r\n") + fields
    return _Target((scheme, ascii_host, port), tls_name, head, fields)


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
