"""An HTTP client that connects only to public addresses, and to exactly the one it checked.

Checking a name and then letting the HTTP client resolve it again is passed by a name that
answers a public address first and 127.0.0.1 second (DNS rebinding). Here the check is the
connect step itself: httpcore asks its network backend for a connection to the URL's host,
and :class:`PublicNetwork` resolves that name once, judges every address, and connects to one
of those addresses. The TLS server name and certificate check, the ``Host`` header and the
connection pool still go by the URL's host, as in any httpx client; a pooled connection was
checked when it was opened.
"""

import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import ip_address

import anyio
import httpcore
import httpx

from flowyard.egress.addresses import IPAddress, refusal

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port)`` to the addresses to try, in order, as text."""

Refusal = Callable[[IPAddress, frozenset[IPAddress]], str | None]
"""``(address, the server's own addresses)`` to why it may not be called, or None."""


class AddressBlocked(Exception):
    """A URL's host resolves to an address the server may not call."""


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, each once, in the resolver's order."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PublicNetwork(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that opens connections to public addresses only.

    Args:
        own_hosts: names and addresses of this server, resolved once at first use and refused
            whatever their range (a public address of the server itself is no handler).
        resolver: the one DNS lookup per new connection.
        refuse: the judgement of each resolved address.
        connect: the backend that opens the socket, given an address, never a name.
    """

    def __init__(
        self,
        *,
        own_hosts: Iterable[str] = (),
        resolver: Resolver = resolve,
        refuse: Refusal = refusal,
        connect: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._own_hosts = tuple(own_hosts)
        self._own: frozenset[IPAddress] | None = None
        self._resolve = resolver
        self._refuse = refuse
        self._connect = connect or httpcore.AnyIOBackend()

    async def checked(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` once; its addresses, if every one of them may be called.

        Raises:
            AddressBlocked: one address is refused (all are judged, so that a name answering
                a public and a private address cannot win by the order it answers in).
            httpcore.ConnectError: the name does not resolve.
        """
        try:
            found = await self._resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not found:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        own = await self._own_addresses()
        for text in found:
            address = ip_address(text)
            why = self._refuse(address, own)
            if why is not None:
                raise AddressBlocked(f"{host} resolves to non-public address {address} ({why})")
        return found

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first checked address of ``host`` that accepts, never to a name."""
        failure: httpcore.ConnectError | None = None
        for address in await self.checked(host, port):
            try:
                return await self._connect.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # checked() returns at least one address
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._connect.sleep(seconds)

    async def _own_addresses(self) -> frozenset[IPAddress]:
        if self._own is None:
            own: set[IPAddress] = set()
            for host in self._own_hosts:
                try:
                    own.update(ip_address(text) for text in await self._resolve(host, 0))
                except OSError:  # a name that does not resolve cannot be connected to either
                    continue
            self._own = frozenset(own)
        return self._own


def public_client(
    network: PublicNetwork, *, limits: httpx.Limits, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection is opened by ``network``.

    Redirects are not followed, and proxies from the environment are not used: the
    connection goes to the address that was checked, or nowhere.
    """
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    # httpx takes no network backend (encode/httpx#3749 is open): its pool is replaced by an
    # identical one but for the backend. tests/test_egress.py fails if httpx stops using it.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=network,
    )
    return httpx.AsyncClient(transport=transport, follow_redirects=False)
