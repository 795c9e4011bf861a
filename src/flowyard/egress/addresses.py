"""The addresses ``--handler-network public`` refuses: one table, and the rule that reads it.

Pure: no I/O. ``ipaddress.is_global`` is not used: on Python 3.11 it lets NAT64, 6to4,
site-local and other ranges through that lead back into the server's own network.
"""

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address

REFUSED: tuple[tuple[IPv4Network | IPv6Network, str], ...] = tuple(
    (ip_network(network), why)
    for network, why in (
        # IPv4
        ("0.0.0.0/8", "this network"),  # 0.0.0.0 included: it connects to this host
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),  # 169.254.169.254: cloud metadata services
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved, broadcast included"),
        # IPv6 (an IPv4-mapped address, ::ffff:a.b.c.d, is judged by its IPv4 address)
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b::/96", "NAT64"),  # the translator would connect to any IPv4, private too
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),  # a tunnel whose far end the server does not choose
        ("2001::/23", "IETF protocol assignments"),  # benchmarking, ORCHID and others
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),  # embeds an IPv4 address, private ones too
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing (SRv6)"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
"""Every range that is not globally routable, with why; IPv6 outside 2000::/3 is refused too."""

GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
"""The only IPv6 space allocated for global unicast: an address outside it reaches no one."""


def refusal(address: IPAddress, own: frozenset[IPAddress] = frozenset()) -> str | None:
    """Why ``address`` may not be called under ``--handler-network public``, or None.

    Args:
        address: a resolved address (IPv6 scope ids are ignored).
        own: the server's own addresses, refused whatever their range.
    """
    if isinstance(address, IPv6Address):
        address = IPv6Address(address.packed)  # drops a scope id such as %eth0
        if address.ipv4_mapped is not None:
            why = refusal(address.ipv4_mapped, own)
            return None if why is None else f"IPv4-mapped, {why}"
    if address in own:
        return "the server's own address"
    for network, why in REFUSED:
        if address.version == network.version and address in network:
            return why
    if isinstance(address, IPv6Address) and address not in GLOBAL_UNICAST_V6:
        return "outside the global unicast space 2000::/3"
    return None
