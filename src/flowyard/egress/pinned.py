"""Connections to public addresses only, and to exactly the addresses that were checked.

Checking a name and then letting the HTTP client resolve it again is passed by a name that
answers a public address first and 127.0.0.1 second (DNS rebinding). Here the check is the
connect step itself: the delivery client (:mod:`flowyard.egress.http1`) asks
:meth:`PublicNetwork.checked` where a new connection to the URL's host may go, and it resolves
that name once, judges every address, and gives those addresses, which the client connects to.
The TLS server name and certificate check, the ``Host`` header and the pool of kept-alive
connections still go by the URL's host; a pooled connection was checked when it was opened.
"""

import socket
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import ip_address

import anyio

from flowyard.egress.addresses import IPAddress, refusal
from flowyard.egress.connection import ConnectError

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


class PublicNetwork:
    """Where new connections may go: public addresses only.

    Args:
        own_hosts: names and addresses of this server, resolved once at first use and refused
            whatever their range (a public address of the server itself is no handler).
        resolver: the one DNS lookup per new connection.
        refuse: the judgement of each resolved address.
    """

    def __init__(
        self,
        *,
        own_hosts: Iterable[str] = (),
        resolver: Resolver = resolve,
        refuse: Refusal = refusal,
    ) -> None:
        self._own_hosts = tuple(own_hosts)
        self._own: frozenset[IPAddress] | None = None
        self._resolve = resolver
        self._refuse = refuse

    async def checked(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` once; its addresses, if every one of them may be called.

        Raises:
            AddressBlocked: one address is refused (all are judged, so that a name answering
                a public and a private address cannot win by the order it answers in).
            ConnectError: the name does not resolve.
        """
        try:
            found = await self._resolve(host, port)
        except OSError as exc:
            raise ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not found:
            raise ConnectError(f"cannot resolve {host}: no address")
        own = await self._own_addresses()
        for text in found:
            address = ip_address(text)
            why = self._refuse(address, own)
            if why is not None:
                raise AddressBlocked(f"{host} resolves to non-public address {address} ({why})")
        return found

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
