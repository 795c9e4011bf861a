"""Abuse benchmark: the attacks of the hardening work, against a real server, one at a time.

Run ``python -m bench.abuse --help``. Each attack gets a fresh server (``python -m flowyard
serve`` on a new SQLite file, 127.0.0.1 only) with two projects: the attacker's and a
well-behaved client's. For each:

1. The attack's preparation, if any (not measured).
2. The well-behaved client starts in its own process (``bench/abuse_good.py``: small
   authenticated GETs and POSTs of the other project on one keep-alive connection); after
   ``--settle`` seconds the server's RSS (``VmRSS``) is read.
3. The attack runs (about 10 s at most; each bounded in count and time) and closes its
   connections (``unread_answers`` waits up to ``--unread-hold`` seconds for the server to
   close them, and leaves them open until after the reading); after ``--settle`` seconds
   the RSS is read again. The RSS is also sampled every 100 ms from the first reading to the
   second (``rss_peak_mib``).
4. Reported: ``rss_before_mib``, ``rss_after_mib``, ``growth_mib``, the well-behaved calls
   that started between the attack's start and the second RSS reading, whose settle is part
   of the attack's effect (``good_calls``, ``good_p50_ms``, ``good_p99_ms``, ``good_errors``:
   anything but a 2xx), the attack's own figures, and ``ok``: growth under
   ``--max-growth-mib`` (50), p99 under ``--max-p99-ms`` (50), no error for the well-behaved
   client, the server still up, and the attack answered as the contract says (``attack_ok``).

Exactly one JSON line goes to stdout; progress goes to stderr. Exit status 1 when an attack
is not ``ok``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import anyio
import anyio.to_thread
import orjson

from bench import abuse_answers, abuse_handlers, abuse_headers, abuse_stalls
from bench.abuse_good import GoodClient, good_figures
from bench.abuse_target import Attack, Figures, Target
from bench.abuse_wire import close
from bench.common import (
    add_server_options,
    begin,
    create_key,
    databases,
    log,
    machine_busy_seconds,
    proc_rss_mb,
    server_env,
    start_server,
    stop_server,
)

ATTACKS: list[Attack] = [
    abuse_handlers.ATTACK,
    *abuse_headers.ATTACKS,
    abuse_stalls.ATTACK,
    *abuse_answers.ATTACKS,
]
ATTACK_LIMIT_S = 60.0
"""An attack still running after this long is cut short (and not ``ok``)."""


def serve_options() -> set[str]:
    """The options ``flowyard serve --help`` lists: attacks use the ones this server has."""
    help_text = subprocess.run(
        [sys.executable, "-m", "flowyard", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
    ).stdout
    return {word.strip("[],") for word in help_text.split() if word.startswith(("--", "[--"))}


async def sample_peak(pid: int, peak: list[float], stop: anyio.Event) -> None:
    """Keep the highest RSS seen in ``peak[0]`` until ``stop``."""
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], proc_rss_mb(pid))
        except (OSError, RuntimeError):
            return
        with anyio.move_on_after(0.1):
            await stop.wait()


async def measure(attack: Attack, target: Target, settle: float) -> Figures:
    """Steps 1-4 of the module's docstring for one attack on its own server."""
    pid = target.server.pid
    state = await attack.prepare(target) if attack.prepare else None
    good = await anyio.to_thread.run_sync(GoodClient.start, target.port, target.key_b)
    figures: Figures = {}
    try:
        await anyio.sleep(settle)
        before = proc_rss_mb(pid)
        peak = [before]
        busy = machine_busy_seconds()
        began = time.monotonic()
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample_peak, pid, peak, stop)
            try:
                with anyio.fail_after(ATTACK_LIMIT_S):
                    figures = await attack.run(target, state)
                figures["attack_s"] = round(time.monotonic() - began, 2)
                await anyio.sleep(settle)
                after = proc_rss_mb(pid)
                ended = time.monotonic()
            finally:
                stop.set()
        figures["machine_busy_cpus"] = round((machine_busy_seconds() - busy) / (ended - began), 2)
    finally:
        for stream in target.held:
            await close(stream)
        samples = await anyio.to_thread.run_sync(good.stop)
    return {
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "growth_mib": round(after - before, 1),
        "rss_peak_mib": round(peak[0], 1),
        **good_figures(samples, began, ended),
        **figures,
    }


def run_attack(
    attack: Attack, args: argparse.Namespace, options: set[str], db: str | None
) -> Figures:
    """One attack on a fresh server (on ``db``), always stopped at the end; its figures, ``ok``."""
    extra = attack.server_args(options)
    read_timeout = None
    if "--read-timeout" in extra:
        read_timeout = float(extra[extra.index("--read-timeout") + 1])
    log(f"attack {attack.item} {attack.name}: server {' '.join(extra) or '(defaults)'}")
    figures: Figures = {"item": attack.item, "server_args": extra}
    try:
        server = start_server(sync=args.sync, extra_args=[*args.server_arg, *extra], db=db)
    except (RuntimeError, OSError) as exc:
        log(f"attack {attack.name}: the server did not start: {exc!r}")
        return figures | {"error": repr(exc)[:500], "ok": False}
    try:
        key_a = create_key(server.db, "attacker")
        key_b = create_key(server.db, "bystander")
        target = Target(server, key_a, key_b, args.scale, read_timeout, args.unread_hold)
        figures |= anyio.run(measure, attack, target, args.settle)
    except Exception as exc:  # the attack's figure is the failure; the other attacks still run
        log(f"attack {attack.name} broke off: {exc!r}")
        figures["error"] = repr(exc)[:500]
    finally:
        figures["server_survived"] = server.proc.poll() is None
        figures["server_exit"] = stop_server(server)
    p99 = figures.get("good_p99_ms")
    figures["ok"] = bool(
        "error" not in figures
        and figures["server_survived"]
        and figures.get("growth_mib", 1e9) < args.max_growth_mib
        and p99 is not None
        and p99 < args.max_p99_ms
        and figures.get("good_errors") == 0
        and figures.get("attack_ok")
    )
    log(f"attack {attack.name}: ok={figures['ok']}")
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.abuse", description=__doc__.split("\n\n")[0]
    )
    names = [attack.name for attack in ATTACKS]
    parser.add_argument(
        "--only", action="append", choices=names, help="run only this attack (repeatable)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every count by this (0 < s <= 1)"
    )
    parser.add_argument(
        "--settle", type=float, default=1.5, help="seconds of quiet before each RSS reading"
    )
    parser.add_argument(
        "--unread-hold",
        type=float,
        default=50.0,
        help="seconds the unread_answers clients wait for the server to drop them",
    )
    parser.add_argument("--max-growth-mib", type=float, default=50.0, help="RSS growth target")
    parser.add_argument("--max-p99-ms", type=float, default=50.0, help="well-behaved p99 target")
    add_server_options(parser)
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1 or not 0 <= args.settle <= 30:
        parser.error("--scale must be in (0, 1] and --settle in [0, 30]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began, result = begin(args, "abuse", scale=args.scale)
    result["targets"] = {"growth_mib": args.max_growth_mib, "good_p99_ms": args.max_p99_ms}
    options = serve_options()
    result["read_timeout_option"] = "--read-timeout" in options
    attacks: dict[str, Any] = {}
    with databases(args) as fresh_database:
        for attack in ATTACKS:
            if args.only is None or attack.name in args.only:
                attacks[attack.name] = run_attack(attack, args, options, fresh_database())
    result["attacks"] = attacks
    result["ok"] = all(figures["ok"] for figures in attacks.values())
    result["duration_s"] = round(time.monotonic() - began, 1)
    print(orjson.dumps(result).decode(), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
