"""Attacks 6 and 7 of ``bench.abuse``: answers nobody reads, and answers overtaken by an error.

6. ``unread_answers``: 100 pull jobs with 240 KiB payloads make ``GET /infra/jobs?limit=100``
   a 24 MiB answer; 8 clients ask for it and never read (receive buffers shrunk to 4 KiB)
   nor close. The server must drop them (DESIGN: an answer not read within 30 s goes with
   its connection), and what it built for them must go with them. The clients are held until
   the server has closed every connection, or ``--unread-hold`` seconds.
7. ``pipelined_garbage``: a valid ``POST /infra/jobs`` and bytes that are no request, in one
   ``send``. The POST's answer must come first, then the ``400``; the job exists either way.
"""

from __future__ import annotations

import socket
import time

import anyio
from anyio.abc import SocketAttribute, SocketStream

from bench.abuse_target import Attack, Figures, Target, run_limited, statuses
from bench.abuse_wire import close, connect, parse_answers, read_until_closed, request, send
from bench.common import proc_rss_mb

PAYLOAD_KIB = 240
QUEUE = "big"
_CLOSED = (7, 8)  # TCP_CLOSE, TCP_CLOSE_WAIT (include/net/tcp_states.h)


async def fill(target: Target) -> int:
    """Create the large jobs (not measured); the size of the list answer in bytes."""
    jobs = target.count(100)
    pad = "A" * (PAYLOAD_KIB * 1024 - 64)
    async with target.client() as client:
        for i in range(jobs):
            body = {"trigger": {"type": "pull", "queue": QUEUE}, "payload": {"n": i, "pad": pad}}
            (await client.post("/infra/jobs", json=body)).raise_for_status()
        answer = await client.get("/infra/jobs", params={"queue": QUEUE, "limit": 100})
        answer.raise_for_status()
        return len(answer.content)


def closed_by_server(stream: SocketStream) -> bool:
    """Whether the server closed (FIN: ``CLOSE_WAIT``) or reset (``CLOSE``) the connection."""
    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
    return raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in _CLOSED


async def unread_answers(target: Target, answer_bytes: int) -> Figures:
    """The clients ask and never read; held until the server closed every one (or ``hold``).

    The connections are left open for the driver, which closes them after its second RSS
    reading: the memory must be freed because the server dropped the connections, not
    because the clients went away.
    """
    clients = 8
    data = request(
        "GET", f"/infra/jobs?queue={QUEUE}&limit=100", [("authorization", f"Bearer {target.key_a}")]
    )

    async def ask() -> SocketStream | None:
        try:
            stream = await connect(target.port)
        except (OSError, TimeoutError):
            return None
        raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await send(stream, data, timeout=5)
        return stream

    began = time.monotonic()
    streams = [s for s in await run_limited([ask] * clients, clients) if s is not None]
    target.held.extend(streams)
    peak = 0.0
    while time.monotonic() < began + target.unread_hold:
        peak = max(peak, proc_rss_mb(target.server.pid))
        if all(closed_by_server(s) for s in streams):
            break
        await anyio.sleep(0.1)
    closed = sum(1 for s in streams if closed_by_server(s))
    return {
        "clients": clients,
        "answer_mib": round(answer_bytes / 1024 / 1024, 1),
        "held_s": round(time.monotonic() - began, 2),
        "closed_by_server": closed,
        "rss_peak_while_held_mib": round(peak, 1),
        "attack_ok": closed == clients,
    }


async def pipelined_garbage(target: Target, _: None) -> Figures:
    """Rounds of POST + garbage in one packet; the answers' order, and whether each job exists."""
    rounds = target.count(50)
    auth = ("authorization", f"Bearer {target.key_a}")
    sequences: list[str] = []
    for i in range(rounds):
        body = f'{{"trigger": {{"type": "pull", "queue": "pipeline-{i}"}}}}'.encode()
        packet = request("POST", "/infra/jobs", [auth, ("content-type", "application/json")], body)
        packet += b"\x01NOT HTTP\r\n\r\n"
        try:
            stream = await connect(target.port)
        except (OSError, TimeoutError):
            sequences.append("connect_error")
            continue
        try:
            await send(stream, packet, timeout=5)
            output, ending = await read_until_closed(stream, timeout=5)
        finally:
            await close(stream)
        answers = [str(a.status) for a in parse_answers(output)]
        sequences.append(",".join(answers) + ("" if ending == "closed" else f",{ending}"))
    missing = set(range(rounds))
    async with target.client() as client:
        # a creation may still be committing when its connection closed: look again for 2 s
        deadline = time.monotonic() + 2
        while missing and time.monotonic() < deadline:
            for i in sorted(missing):
                listed = await client.get("/infra/jobs", params={"queue": f"pipeline-{i}"})
                if listed.status_code == 200 and listed.json().get("jobs"):
                    missing.discard(i)
            if missing:
                await anyio.sleep(0.2)
    created = rounds - len(missing)
    ordered = sum(1 for s in sequences if s == "202,400")
    return {
        "rounds": rounds,
        "answer_sequences": statuses(sequences),
        "jobs_created": created,
        "ordered": ordered == rounds,
        "ordered_rounds": ordered,
        "attack_ok": ordered == rounds,
    }


ATTACKS = [
    Attack(name="unread_answers", item=6, run=unread_answers, prepare=fill),
    Attack(name="pipelined_garbage", item=7, run=pipelined_garbage),
]
