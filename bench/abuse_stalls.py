"""Attack 5 of ``bench.abuse``: requests that stop half-way, and bodies read before a signature.

- ``stalled_bodies``: connections of the attacker's project that send a whole ``POST
  /infra/jobs`` head announcing a 4 KiB body, a few bytes of it, and stop. More of them than
  ``--max-inflight`` (256): one project must not lock the other out (the well-behaved client
  belongs to the other project, and counts a 503 as an error).
- ``stalled_heads``: connections that send half a request head and stop.
- ``callbacks``: ``POST`` to the push callback route with a bad signature, announcing a 1 MiB
  body and sending the first 64 KiB: the signature must be checked before the body is read,
  so the refusal comes without the rest.

Each stalled connection should get ``408`` after ``--read-timeout`` (the server is started
with ``--read-timeout 2`` when it has the option) and be closed; one refused by the in-flight
cap gets ``503``. Connections still open without an answer when the hold ends count as
``none``.
"""

from __future__ import annotations

import time
from functools import partial

import anyio
from anyio.abc import SocketStream

from bench.abuse_target import Attack, Figures, Target, ms, run_limited, statuses
from bench.abuse_wire import (
    Exchange,
    Progress,
    close,
    connect,
    parse_answers,
    read_answer,
    read_until_closed,
    request,
    send,
)

READ_TIMEOUT = 2.0
"""``--read-timeout`` given to the server, when it has the option."""

MIB = 1024 * 1024


async def _open_stalled(target: Target, data: bytes) -> SocketStream | None:
    try:
        stream = await connect(target.port)
    except (OSError, TimeoutError):
        return None
    if await send(stream, data, timeout=5) < len(data):
        await close(stream)
        return None
    return stream


async def _outcome(stream: SocketStream | None, until: float) -> str:
    """What a stalled connection got before ``until``: a status, ``closed`` or ``none``."""
    if stream is None:
        return "not_opened"
    try:
        data, ending = await read_until_closed(stream, max(0.1, until - time.monotonic()))
    finally:
        await close(stream)
    answers = parse_answers(data)
    if answers:
        return str(answers[0].status)
    return "none" if ending == "timeout" else ending


async def _callback(target: Target, i: int) -> tuple[Exchange, bool]:
    """A 1 MiB callback with a bad signature: its answer, and whether it came early."""
    body = b'{"status": "completed", "result": "' + b"A" * (MIB - 40) + b'"}'
    path = f"/infra/jobs/job_{i:026d}/runs/run_{i:026d}/callback?sig=bad"
    data = request("POST", path, [("content-type", "application/json")], body)
    began = time.monotonic()
    early_part = len(data) - len(body) + 64 * 1024
    try:
        stream = await connect(target.port)
    except (OSError, TimeoutError):
        return Exchange(None, 0, 0.0), False
    progress = Progress()
    try:
        await send(stream, data[:early_part], timeout=5, progress=progress)
        answer = await read_answer(stream, timeout=3)
        early = answer is not None
        if answer is None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(send, stream, data, 10, progress)
                answer = await read_answer(stream, timeout=10)
                tg.cancel_scope.cancel()
    finally:
        await close(stream)
    return Exchange(answer, progress.sent, time.monotonic() - began), early


async def stalled(target: Target, _: None) -> Figures:
    """Open the stalled connections and the callbacks, hold, then see what each got."""
    bodies = target.count(300)
    heads = target.count(50)
    callbacks = target.count(20)
    auth = ("authorization", f"Bearer {target.key_a}")
    body_start = b'{"trigger": {"type": "pull", "queue": "stalled"}, "payload": "'
    body_head = request("POST", "/infra/jobs", [auth], body_start, length=4096)
    half_head = b"GET /infra/jobs?limit=1 HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bea"
    opened: list[SocketStream | None] = await run_limited(
        [partial(_open_stalled, target, body_head)] * bodies
        + [partial(_open_stalled, target, half_head)] * heads,
        50,
    )
    held_since = time.monotonic()
    # Long enough for a 408 after the read timeout, and for a lock-out to show if there is one
    hold = max(6.0, (target.read_timeout or 0) + 4)
    until = held_since + hold
    outcomes = [""] * len(opened)
    callback_results: list[tuple[Exchange, bool]] = []

    async def watch(index: int, stream: SocketStream | None) -> None:
        outcomes[index] = await _outcome(stream, until)

    async def call_back() -> None:
        callback_results.extend(
            await run_limited([partial(_callback, target, i) for i in range(callbacks)], 10)
        )

    async with anyio.create_task_group() as tg:
        for index, stream in enumerate(opened):
            tg.start_soon(watch, index, stream)
        tg.start_soon(call_back)
    answered_ok = all(o in ("408", "503") for o in outcomes)
    callbacks_early = sum(1 for _, early in callback_results if early)
    return {
        "read_timeout_s": target.read_timeout,
        "held_s": round(time.monotonic() - held_since, 2),
        "stalled_bodies": bodies,
        "stalled_heads": heads,
        "stalled_body_statuses": statuses(outcomes[:bodies]),
        "stalled_head_statuses": statuses(outcomes[bodies:]),
        "callbacks": callbacks,
        "callback_statuses": statuses(e.status for e, _ in callback_results),
        "callback_answered_before_body": callbacks_early,
        "callback_answer_ms": ms([e.seconds for e, _ in callback_results if e.answer]),
        "attack_ok": answered_ok and callbacks_early == callbacks,
    }


ATTACK = Attack(
    name="stalled",
    item=5,
    run=stalled,
    server_args=lambda options: (
        ["--read-timeout", f"{READ_TIMEOUT:g}"] if "--read-timeout" in options else []
    ),
)
