"""``--handler-network public``: only public addresses, and exactly the address that was checked.

The dispatcher is driven with scripted resolvers (a name that answers a public address first
and 127.0.0.1 second: DNS rebinding) over real sockets; the table of refused ranges is checked
address by address; a real ``flowyard serve --handler-network public`` refuses handlers aimed
at its own machine, also through the ranges Python 3.11's ``is_global`` lets through.
"""

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import trustme
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream

from flowyard.actors.dispatcher import Dispatcher, Outcome
from flowyard.egress.addresses import IPAddress, refusal
from flowyard.egress.http1 import open_connection
from flowyard.egress.pinned import PublicNetwork
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import Handler, ServerProcess, serve_tcp

PUBLIC = "93.184.215.14"


@dataclass
class Recorder:
    """A plain HTTP/1.1 server on one address that records the request heads it gets."""

    host: str
    port: int
    heads: list[bytes] = field(default_factory=list)

    async def answer(self, stream: ByteStream) -> None:
        async with stream:
            buffered = BufferedByteReceiveStream(stream)
            head = await buffered.receive_until(b"\r\n\r\n", 65536)
            lengths = [line for line in head.lower().split(b"\r\n") if b"content-length:" in line]
            await buffered.receive_exactly(int(lengths[0].split(b":")[1]))
            self.heads.append(head)
            body = msgspec.json.encode({"answered_on": self.host})
            await stream.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )


@asynccontextmanager
async def listening(
    host: str, port: int = 0, tls: ssl.SSLContext | None = None
) -> AsyncIterator[Recorder]:
    """A :class:`Recorder` serving on ``host`` (over TLS with ``tls``) while the block runs."""
    heard = Recorder(host, port)
    async with serve_tcp(heard.answer, host, port, tls) as heard.port:
        yield heard


class Rebinding:
    """A resolver whose names answer ``first`` to the first lookup and ``then`` afterwards."""

    def __init__(self, first: list[str], then: Iterable[str] = ("127.0.0.1",)) -> None:
        self.first, self.then = first, list(then)
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.first if len(self.asked) == 1 else self.then


class Sockets:
    """An opener that records where it was asked to connect, and connects there on this
    machine instead: ``PUBLIC`` goes to ``far`` (127.0.0.3), any other address to itself."""

    def __init__(self, far: str = "127.0.0.3") -> None:
        self.far = far
        self.connected: list[tuple[str, int]] = []

    async def __call__(
        self,
        factory: Callable[[], asyncio.Protocol],
        address: str,
        port: int,
        tls: ssl.SSLContext | None,
        server_name: str | None,
    ) -> asyncio.Protocol:
        self.connected.append((address, port))
        local = self.far if address == PUBLIC else address
        return await open_connection(factory, local, port, tls, server_name)


def only(allowed: str) -> Callable[[IPAddress, frozenset[IPAddress]], str | None]:
    """A judgement that takes ``allowed`` for the one public address: loopback can be served."""
    return lambda address, own: None if str(address) == allowed else "not the allowed one"


async def post(dispatcher: Dispatcher, url: str) -> Outcome:
    try:
        return await dispatcher.post(url, b"{}", {}, "secret", 5)
    finally:
        await dispatcher.aclose()


# ------------------------------------------------------------------------ the address connected to


async def test_a_rebinding_name_is_connected_to_at_the_public_address_it_was_checked_at() -> None:
    async with (
        listening("127.0.0.3") as far,
        listening("127.0.0.1", far.port) as loopback,
    ):
        resolver = Rebinding([PUBLIC])
        sockets = Sockets()
        network = PublicNetwork(resolver=resolver)
        outcome = await post(
            Dispatcher(handler_network="public", network=network, opener=sockets),
            f"http://rebind.test:{loopback.port}/handler",
        )
    assert outcome.kind == "completed", outcome.error
    assert outcome.result is not None
    assert msgspec.json.decode(outcome.result) == {"answered_on": "127.0.0.3"}
    assert sockets.connected == [(PUBLIC, loopback.port)]  # the address, never the name
    assert resolver.asked == ["rebind.test"]  # one lookup: none left for the rebinding answer
    assert loopback.heads == []


async def test_a_rebinding_name_through_the_system_resolver_never_reaches_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default resolver and connector, as ``flowyard serve`` uses them: one lookup.

    The name answers 127.0.0.2 (taken as public here, so that no traffic leaves the machine)
    first and 127.0.0.1 afterwards; only 127.0.0.2 may hear the request.
    """
    lookups: list[str] = []
    system = socket.getaddrinfo

    def rebinding(host: bytes | str | None, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (b"rebind.test", "rebind.test"):
            lookups.append("rebind.test")
            host = "127.0.0.2" if len(lookups) == 1 else "127.0.0.1"
        return system(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    async with (
        listening("127.0.0.2") as checked,
        listening("127.0.0.1", checked.port) as loopback,
    ):
        network = PublicNetwork(refuse=only("127.0.0.2"))
        outcome = await post(
            Dispatcher(handler_network="public", network=network),
            f"http://rebind.test:{checked.port}/",
        )
    assert outcome.kind == "completed", outcome.error
    assert lookups == ["rebind.test"]
    assert len(checked.heads) == 1
    assert loopback.heads == []


async def test_a_pinned_request_reaches_the_checked_address_over_real_sockets() -> None:
    async with (
        listening("127.0.0.2") as checked,
        listening("127.0.0.1", checked.port) as loopback,
    ):
        network = PublicNetwork(resolver=Rebinding(["127.0.0.2"]), refuse=only("127.0.0.2"))
        url = f"http://rebind.test:{checked.port}/handler"
        outcome = await post(Dispatcher(handler_network="public", network=network), url)
        assert outcome.kind == "completed", outcome.error
        assert outcome.result is not None
        assert msgspec.json.decode(outcome.result) == {"answered_on": "127.0.0.2"}
        [head] = checked.heads
        assert f"host: rebind.test:{checked.port}\r\n".encode() in head.lower()  # name kept
        # The connection closed: the next one is checked again, and now the name is refused.
        again = await post(Dispatcher(handler_network="public", network=network), url)
        assert again.kind == "failed"
        assert again.error == (
            "handler_blocked: rebind.test resolves to non-public address 127.0.0.1"
            " (not the allowed one)"
        )
    assert loopback.heads == []
    assert len(checked.heads) == 1


async def test_every_address_of_a_name_is_checked_before_any_connection() -> None:
    sockets = Sockets()
    network = PublicNetwork(resolver=Rebinding([PUBLIC, "10.0.0.1"]))
    dispatcher = Dispatcher(handler_network="public", network=network, opener=sockets)
    outcome = await post(dispatcher, "http://two.test/")
    assert outcome.error == (
        "handler_blocked: two.test resolves to non-public address 10.0.0.1 (private)"
    )
    assert sockets.connected == []


async def test_the_servers_own_public_address_is_refused() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return [PUBLIC]  # the handler's name and the server's own name: the same machine

    sockets = Sockets()
    network = PublicNetwork(own_hosts=["me.test"], resolver=resolver)
    dispatcher = Dispatcher(handler_network="public", network=network, opener=sockets)
    outcome = await post(dispatcher, "http://h.test/")
    assert outcome.error == (
        f"handler_blocked: h.test resolves to non-public address {PUBLIC}"
        " (the server's own address)"
    )
    assert sockets.connected == []


async def test_a_name_that_does_not_resolve_is_a_connection_error() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    network = PublicNetwork(resolver=resolver)
    dispatcher = Dispatcher(handler_network="public", network=network, opener=Sockets())
    outcome = await post(dispatcher, "http://n.test/")
    assert outcome.kind == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("connection_error: ConnectError: cannot resolve n.test")


@pytest.mark.parametrize(("certified", "verified"), [("handler.test", True), ("other", False)])
async def test_tls_to_a_pinned_address_checks_the_certificate_against_the_url_host(
    certified: str, verified: bool
) -> None:
    ca = trustme.CA()
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(certified).configure_cert(server_tls)
    names: list[str | None] = []
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)
    network = PublicNetwork(resolver=Rebinding(["127.0.0.2"]), refuse=only("127.0.0.2"))
    async with listening("127.0.0.2", tls=server_tls) as server:
        dispatcher = Dispatcher(handler_network="public", network=network, tls=client_tls)
        outcome = await post(dispatcher, f"https://handler.test:{server.port}/handler")
        if verified:
            assert outcome.kind == "completed", outcome.error
            assert outcome.result is not None
            assert msgspec.json.decode(outcome.result) == {"answered_on": "127.0.0.2"}
        else:
            assert outcome.kind == "failed"
            assert outcome.error is not None and "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert names == ["handler.test"]  # the server name sent is the URL's, not the address


# ------------------------------------------------------------------------ the table of ranges

REFUSED = {
    "0.0.0.0": "this network",
    "0.1.2.3": "this network",
    "10.20.30.40": "private",
    "100.64.0.1": "shared address space",
    "100.127.255.254": "shared address space",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "169.254.169.254": "link-local",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.0.0.8": "IETF protocol assignments",
    "192.0.2.1": "documentation",
    "192.88.99.1": "6to4 relay",
    "192.168.1.1": "private",
    "198.18.0.1": "benchmarking",
    "198.19.255.255": "benchmarking",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "::": "unspecified",
    "::1": "loopback",
    "::127.0.0.1": "IPv4-compatible",
    "::8.8.8.8": "IPv4-compatible",
    "::ffff:127.0.0.1": "IPv4-mapped, loopback",
    "::ffff:10.0.0.1": "IPv4-mapped, private",
    "::ffff:169.254.169.254": "IPv4-mapped, link-local",
    "::ffff:0.0.0.0": "IPv4-mapped, this network",
    "::ffff:0:7f00:1": "IPv4-translated",
    "64:ff9b::7f00:1": "NAT64",
    "64:ff9b::808:808": "NAT64",  # even a public IPv4 behind it: the translator is inside
    "64:ff9b:1::1": "local-use NAT64",
    "100::1": "discard-only",
    "2001::1": "Teredo",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "2001:2::1": "IETF protocol assignments",
    "2001:10::1": "IETF protocol assignments",
    "2001:db8::1": "documentation",
    "2002:7f00:1::1": "6to4",
    "2002:808:808::1": "6to4",
    "3fff::1": "documentation",
    "5f00::1": "segment routing",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "4000::1": "outside the global unicast space",
    "e000::1": "outside the global unicast space",
}

ALLOWED = [
    PUBLIC,
    "8.8.8.8",
    "1.1.1.1",
    "100.128.0.1",  # just past the shared address space
    "172.32.0.1",  # just past 172.16.0.0/12
    "2606:4700:4700::1111",
    "2a00:1450:4001:82b::200e",
    "::ffff:8.8.8.8",  # mapped: judged as the IPv4 address it reaches
]


@pytest.mark.parametrize(("address", "why"), REFUSED.items())
def test_every_non_global_range_is_refused(address: str, why: str) -> None:
    reason = refusal(ip_address(address))
    assert reason is not None and why in reason, (address, reason)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ip_address(address)) is None


def test_own_addresses_are_refused_whatever_their_range() -> None:
    own = frozenset({ip_address("8.8.8.8"), ip_address("2606:4700:4700::1111")})
    assert refusal(ip_address("8.8.8.8"), own) == "the server's own address"
    assert refusal(ip_address("::ffff:8.8.8.8"), own) == "IPv4-mapped, the server's own address"
    assert refusal(ip_address("2606:4700:4700::1111"), own) == "the server's own address"
    assert refusal(ip_address("1.1.1.1"), own) is None


# ------------------------------------------------------------------------ the real server

INWARD = [
    "{handler}/direct",  # 127.0.0.1
    "http://localhost:{port}/named",
    "http://[64:ff9b::7f00:1]:{port}/nat64",  # is_global on Python 3.11: True
    "http://[2002:7f00:1::1]:{port}/sixtofour",
    "http://[fec0::1]:{port}/site-local",
    "http://[::127.0.0.1]:{port}/compatible",
    "http://[::ffff:0:7f00:1]:{port}/translated",
]


async def test_a_public_handler_network_server_refuses_handlers_aimed_inward(
    tmp_path: Path, server_process: Callable[..., ServerProcess], handler: Handler
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "egress", list(ALL_SCOPES)).key
    server = await anyio.to_thread.run_sync(
        lambda: server_process(db, "--handler-network", "public")
    )
    port = handler.url.rsplit(":", 1)[1]
    urls = [url.format(handler=handler.url, port=port) for url in INWARD]
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        created = []
        for url in urls:
            body = {"trigger": {"type": "immediate"}, "handler": url, "max_attempts": 1}
            response = await client.post("/infra/jobs", json=body)
            assert response.status_code == 202, response.text
            created.append(response.json()["id"])
        for url, job_id in zip(urls, created, strict=True):
            with anyio.fail_after(15):
                while (job := (await client.get(f"/infra/jobs/{job_id}")).json())[
                    "status"
                ] != "failed":
                    await anyio.sleep(0.02)
            assert job["error"].startswith("handler_blocked: "), (url, job["error"])
            [run] = (await client.get(f"/infra/jobs/{job_id}/runs")).json()["runs"]
            assert run["error"] == job["error"] and run["handler_status"] is None
    assert handler.received == []
