"""Instructions the server executes per diamond execution (or per pull job), counted by
valgrind (callgrind).

Run ``python -m bench.instructions --help``. On this VM the same code runs 15-40% faster or
slower from one minute to the next, so timings cannot tell a 5% change from noise; the count
of instructions is the same from run to run (within about 0.5% here), whatever else the
machine does. It measures work, not time: it cannot see system calls, waits or contention.

The server runs under ``valgrind --tool=callgrind`` (about 50 times slower), with the diamond
blueprint of ``bench.workflows``. Lanes (threads in this process, ``bench.workers.PullLane``:
one exchange per batch, or with ``--protocol ack`` a claim, then an ack per job)
and trigger threads (at most ``--backlog`` executions unfinished) drive ``--warmup``
executions, then the counters are zeroed, ``--executions`` more run, and the counts are
dumped. Printed: instructions per execution for the whole server, its event-loop thread
(the first) and its busiest other thread (the writer). One JSON line on stdout.

``--workload jobs`` counts the path of ``bench.jobs`` instead: one connection creates pull
jobs 100 at a time (``POST /infra/jobs/batch``), claims them 100 at a time and acks each;
``--executions`` is then the number of jobs counted, and the figures are per job.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    add_server_options,
    begin,
    create_key,
    databases,
    log,
    running_server,
)
from bench.workers import PROTOCOLS, Poster, PullLane, auth_headers, trigger_executions
from bench.workflows import QUEUE, create_diamond, step_value

READY_TIMEOUT_S = 300.0  # the server starts slowly under valgrind
JOBS_BATCH = 100


def _lanes(
    url: str, key: str, args: argparse.Namespace, stop: threading.Event, done: list[int]
) -> tuple[list[threading.Thread], Callable[[], int]]:
    """Threads that claim and ack until ``stop``; ``done[0]`` counts D steps acked. Also
    returns a function that counts the requests the lanes sent so far."""
    lock = threading.Lock()
    pulls: list[PullLane] = []

    def work(job: dict[str, Any], sent: float) -> Any:
        value, _ = step_value(job["workflow"]["step_id"], job["payload"])
        return {"v": value, "ack_sent_at": 0.0}

    def acked(job: dict[str, Any], *_: float) -> None:
        if job["workflow"]["step_id"] == "D":
            with lock:
                done[0] += 1

    def failed(what: str, status: int, content: bytes) -> None:
        raise RuntimeError(f"{what} {status}: {content[:200]!r}")

    def lane() -> None:
        with Poster(url, auth_headers(key), "wire", 120.0) as post:
            pull = PullLane(post, QUEUE, 20, 1, protocol=args.protocol)
            with lock:
                pulls.append(pull)
            pull.run(stop, work, acked, failed)

    threads = [threading.Thread(target=lane, daemon=True) for _ in range(args.lanes)]
    return threads, lambda: sum(pull.requests for pull in pulls)


def _jobs(url: str, key: str, count: int) -> None:
    """Create ``count`` pull jobs (a batch of 100 at a time), claim and ack each of them."""
    with Poster(url, auth_headers(key), "wire", 120.0) as post:
        for start in range(0, count, JOBS_BATCH):
            size = min(JOBS_BATCH, count - start)
            trigger = {"type": "pull", "queue": QUEUE}
            jobs = [{"trigger": trigger, "payload": {"n": start + i}} for i in range(size)]
            body = orjson.dumps({"jobs": jobs})
            status, content = post("/infra/jobs/batch", body)
            if status != 202:
                raise RuntimeError(f"batch {status}: {content[:200]!r}")
            claim = orjson.dumps({"queue": QUEUE, "count": size})
            acked = 0
            while acked < size:
                status, content = post("/infra/jobs/claim", claim)
                if status != 200:
                    raise RuntimeError(f"claim {status}: {content[:200]!r}")
                for job in orjson.loads(content):
                    ack = {"status": "completed", "result": {"ok": True}}
                    ack["claim_token"] = job["claim_token"]
                    status, content = post(f"/infra/jobs/{job['id']}/ack", orjson.dumps(ack))
                    if status != 200:
                        raise RuntimeError(f"ack {status}: {content[:200]!r}")
                    acked += 1


Runner = tuple[Callable[[int, int], None], Callable[[], None]]
"""What a workload gives: run ``count`` units (numbered from ``start``), and stop."""


def _diamond(url: str, key: str, args: argparse.Namespace) -> Runner:
    """Diamond executions, triggered by threads and run by ``--lanes`` claim loops."""
    blueprint_id = create_diamond(url, key)
    stop, done = threading.Event(), [0]
    threads, requests = _lanes(url, key, args, stop, done)
    for thread in threads:
        thread.start()

    def run(count: int, start: int) -> None:
        base = done[0]
        sent = requests()
        trigger_executions(
            url,
            key,
            blueprint_id,
            count,
            args.trigger_threads,
            time.monotonic() + 3600,
            start=start,
            gate=lambda issued: issued - (done[0] - base) < args.backlog,
        )
        while done[0] < base + count:
            time.sleep(0.01)
        # The lanes' requests and the triggers, per execution.
        args.requests_per_execution = round((requests() - sent + count) / count, 2)

    def finish() -> None:
        stop.set()
        time.sleep(1.5)  # let the lanes' last long-polls end

    return run, finish


def _jobs_workload(url: str, key: str, args: argparse.Namespace) -> Runner:
    return (lambda count, start: _jobs(url, key, count)), (lambda: None)


def _counts(out: Path) -> dict[str, int]:
    """Instructions per thread (``"01"``, ``"02"``, ...) from the dump after zeroing."""
    counts: dict[str, int] = {}
    for path in out.parent.glob(f"{out.name}.1-*"):
        for line in path.read_text().splitlines():
            if line.startswith("summary:"):
                counts[path.name.rsplit("-", 1)[1]] = int(line.split()[1])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--workload", choices=["diamond", "jobs"], default="diamond")
    parser.add_argument("--executions", type=int, default=300, help="executions (or jobs) counted")
    parser.add_argument(
        "--warmup", type=int, default=40, help="executions (or jobs) before counting"
    )
    parser.add_argument("--lanes", type=int, default=8, help="claim loops (threads)")
    parser.add_argument("--trigger-threads", type=int, default=3)
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="exchange",
        help="exchange: acks ride with the next claim (POST /infra/jobs/exchange); ack: a claim,"
        " then one ack per job (default: exchange)",
    )
    parser.add_argument("--backlog", type=int, default=40, help="unfinished executions at most")
    add_server_options(parser)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        parser.error("needs valgrind (apt-get install valgrind)")
    _, result = begin(
        args,
        "instructions",
        workload=args.workload,
        executions=args.executions,
        lanes=args.lanes,
        backlog=args.backlog,
        protocol=args.protocol,
    )
    workdir = Path(tempfile.mkdtemp(prefix="flowyard-callgrind-"))
    out = workdir / "callgrind.out"
    prefix = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
    prefix.append(f"--callgrind-out-file={out}")
    with (
        databases(args) as fresh_database,
        running_server(
            sync=args.sync,
            extra_args=args.server_arg,
            prefix=prefix,
            ready_timeout=READY_TIMEOUT_S,
            db=fresh_database(),
        ) as server,
    ):
        key = create_key(server.db)
        runners = {"diamond": _diamond, "jobs": _jobs_workload}
        run, stop = runners[args.workload](server.url, key, args)
        run(args.warmup, 0)
        subprocess.run(
            ["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True
        )
        log(f"counting {args.executions} ({args.workload})")
        began = time.monotonic()
        run(args.executions, args.warmup)
        seconds = time.monotonic() - began
        subprocess.run(
            ["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True
        )
        stop()
    counts = _counts(out)
    shutil.rmtree(workdir, ignore_errors=True)
    if "01" not in counts:
        raise RuntimeError("no callgrind dump found")
    unit = "job" if args.workload == "jobs" else "execution"
    per = {thread: count / args.executions / 1e6 for thread, count in counts.items()}
    others = sorted((v for k, v in per.items() if k != "01"), reverse=True)
    result |= {
        "counted_s": round(seconds, 1),
        f"minstr_per_{unit}": round(sum(per.values()), 3),
        f"minstr_per_{unit}_event_loop": round(per["01"], 3),
        f"minstr_per_{unit}_writer": round(others[0] if others else 0.0, 3),
        f"minstr_per_{unit}_other_threads": round(sum(others[1:]), 3),
    }
    if args.workload == "diamond":
        result["requests_per_execution"] = args.requests_per_execution
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
