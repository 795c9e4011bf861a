"""What every attack of ``bench.abuse`` gets: the server, two projects' keys, the scale."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx
from anyio.abc import SocketStream

from bench.common import Server, summary_ms

Figures = dict[str, Any]
T = TypeVar("T")


@dataclass
class Target:
    """The server under attack.

    ``key_a`` belongs to the attacker's project, ``key_b`` to the well-behaved client's.
    ``read_timeout`` is the ``--read-timeout`` the server was started with (None when the
    server has no such option). ``held`` are connections an attack leaves open for the driver
    to close after its second RSS reading.
    """

    server: Server
    key_a: str
    key_b: str
    scale: float
    read_timeout: float | None = None
    unread_hold: float = 50.0
    held: list[SocketStream] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def count(self, full: int, minimum: int = 1) -> int:
        """``full`` scaled down by ``scale`` (at least ``minimum``)."""
        return max(minimum, math.ceil(full * self.scale))

    def client(self, key: str | None = None, timeout: float = 30) -> httpx.AsyncClient:
        """An HTTP client of the attacker's project (or of ``key``'s)."""
        return httpx.AsyncClient(
            base_url=self.server.url,
            headers={"authorization": f"Bearer {key or self.key_a}"},
            timeout=timeout,
        )


@dataclass(frozen=True)
class Attack:
    """One attack: server options it needs, a preparation not measured, and the attack itself.

    ``run`` returns its figures with ``attack_ok``: whether the server answered as it should
    (the RSS and latency targets are checked by the driver for every attack).
    """

    name: str
    item: int
    run: Callable[[Target, Any], Awaitable[Figures]]
    prepare: Callable[[Target], Awaitable[Any]] | None = None
    server_args: Callable[[set[str]], list[str]] = lambda _options: []


def statuses(values: Iterable[str | int]) -> dict[str, int]:
    """A count of status codes (or outcomes), sorted by name."""
    return dict(sorted(Counter(str(v) for v in values).items()))


def ms(values_s: list[float]) -> dict[str, float | None]:
    """p50 / p99 / max in milliseconds."""
    return summary_ms(values_s)


async def run_limited(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run ``calls`` with at most ``limit`` at once; their results in order."""
    results: list[Any] = [None] * len(calls)
    limiter = anyio.CapacityLimiter(limit)

    async def one(index: int) -> None:
        async with limiter:
            results[index] = await calls[index]()

    async with anyio.create_task_group() as tg:
        for index in range(len(calls)):
            tg.start_soon(one, index)
    return results
