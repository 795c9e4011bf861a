"""Attacks 2-4 of ``bench.abuse``: oversized header sections.

2. ``big_tokens``: requests with unique 1 MiB bearer tokens, each on its own connection. The
   contract: a credential over 256 characters is 401 at once, a header section over 64 KiB is
   431, and failed lookups never grow memory without bound.
3. ``big_headers_closed``: connections that each send a 2 MiB header and close without
   reading: what a connection held must be freed when it closes, not at the cycle collector's
   next run.
4. ``huge_header``: one 64 MiB header while the well-behaved client runs: 431, and the event
   loop does not stall while it arrives.
"""

from __future__ import annotations

import time
from functools import partial

from bench.abuse_target import Attack, Figures, Target, ms, run_limited, statuses
from bench.abuse_wire import Exchange, close, connect, exchange, send
from bench.common import HOST

MIB = 1024 * 1024


def big_header(path: str, name: str, prefix: str, size: int) -> bytes:
    """``GET path`` whose header ``name`` is ``prefix`` padded to ``size`` bytes."""
    head = f"GET {path} HTTP/1.1\r\nhost: {HOST}\r\n{name}: {prefix}".encode()
    return head + b"A" * max(0, size - len(prefix)) + b"\r\n\r\n"


async def big_tokens(target: Target, _: None) -> Figures:
    """Unique 1 MiB bearer tokens, four connections at a time; 401 or 431 every time."""
    count = target.count(160)

    async def one(i: int) -> Exchange:  # built when sent: the 160 MiB are never held at once
        data = big_header("/infra/jobs?limit=1", "authorization", f"Bearer sk_live_{i:08d}", MIB)
        return await exchange(target.port, data, timeout=10)

    results = await run_limited([partial(one, i) for i in range(count)], 4)
    answered = [r for r in results if r.answer is not None]
    return {
        "requests": count,
        "statuses": statuses(r.status for r in results),
        "answer_ms": ms([r.seconds for r in answered]),
        "answered_before_whole_token": sum(1 for r in answered if r.sent < MIB),
        "attack_ok": bool(answered)
        and all(r.answer is not None and r.answer.status in (401, 431) for r in answered),
    }


async def big_headers_closed(target: Target, _: None) -> Figures:
    """2 MiB header sections on connections closed right after, ten at a time."""
    count = target.count(150)
    data = big_header("/infra/jobs?limit=1", "x-pad", "", 2 * MIB)
    sent_whole = 0
    connect_errors = 0

    async def one() -> None:
        nonlocal sent_whole, connect_errors
        try:
            stream = await connect(target.port)
        except (OSError, TimeoutError):
            connect_errors += 1
            return
        try:
            if await send(stream, data, timeout=10) == len(data):
                sent_whole += 1
        finally:
            await close(stream)

    await run_limited([one] * count, 10)
    return {
        "connections": count,
        "header_mib": 2,
        "sent_whole": sent_whole,
        "connect_errors": connect_errors,
        "attack_ok": connect_errors == 0,
    }


async def huge_header(target: Target, _: None) -> Figures:
    """One 64 MiB header on one connection; its answer and how much of it the server took."""
    size = max(MIB, int(64 * MIB * min(1.0, target.scale)))
    data = big_header("/livez", "x-pad", "", size)
    began = time.monotonic()
    result = await exchange(target.port, data, timeout=30)
    return {
        "header_mib": round(size / MIB, 1),
        "status": result.status,
        "answer_s": round(time.monotonic() - began, 3),
        "sent_mib": round(result.sent / MIB, 1),
        "attack_ok": result.status == "431",
    }


ATTACKS = [
    Attack(name="big_tokens", item=2, run=big_tokens),
    Attack(name="big_headers_closed", item=3, run=big_headers_closed),
    Attack(name="huge_header", item=4, run=huge_header),
]
