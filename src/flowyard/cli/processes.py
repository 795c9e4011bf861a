"""``flowyard serve --processes N``: N cluster nodes on one machine, kept running.

One server process uses about one core (one event loop, one writer); a cluster on one
PostgreSQL database (DESIGN §11) is how one machine's other cores join in. The parent binds
nothing and opens no database: it starts N ``flowyard serve`` children on consecutive ports,
each a node with its own ``--node-url``, forwards SIGTERM and SIGINT to them, and starts a
child again when it dies while the parent is not stopping (the other nodes take its shards
over meanwhile). The children run in a process group of their own, so that a terminal's
Ctrl-C reaches each of them once, through the parent; on Linux they are stopped if the
parent dies.
"""

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from flowyard.cli.common import positive_int
from flowyard.storage.stores import is_postgres

log = logging.getLogger("flowyard.processes")

USAGE_ERROR = 2
POLL_SECONDS = 0.1
"""How often the parent looks for a child that exited."""
QUICK_EXIT_SECONDS = 10.0
"""A child that exits sooner than this after its start did not get going: it counts towards
:data:`MAX_QUICK_EXITS`, and its next start waits longer."""
MAX_QUICK_EXITS = 5
"""A child that exits quickly this many times in a row will not start (a wrong option, an
unreachable database): the parent stops the others and exits 1."""
RESTART_DELAY_SECONDS = 0.5
"""The wait before a quick exit's restart; it doubles with each quick exit in a row."""
SECRET_OPTIONS = {"db": "FLOWYARD_DB", "metrics_token": "FLOWYARD_METRICS_TOKEN"}
"""Options handed to the children in their environment, so no password shows in ``ps``."""
OWN_OPTIONS = {"help", "processes", "port", "node_url"}
"""Options the parent sets per child (or that are the parent's own)."""
_PR_SET_PDEATHSIG = 1


def add_option(parser: argparse.ArgumentParser) -> None:
    """``--processes`` of ``flowyard serve``."""
    from flowyard.cli.common import described, env

    parser.add_argument(
        "--processes",
        type=positive_int,
        default=env("processes", "1"),
        help=described(
            "with a postgresql:// --db, run this many cluster nodes on --port, --port+1, ...,"
            " each with its own --node-url, started again if one dies; SIGTERM/SIGINT stop"
            " them all",
            1,
            "processes",
        ),
    )


def refusal(args: argparse.Namespace) -> str | None:
    """Why ``--processes`` cannot run with these options (exit status 2), or None."""
    count: int = args.processes
    if not is_postgres(args.db):
        return (
            f"--processes {count} needs a postgresql:// --db: a SQLite file is served by one"
            " process (drop --processes, or move the data with `flowyard db copy`)"
        )
    if args.port < 1:
        return (
            f"--processes needs a --port from 1 (not {args.port}): the nodes listen on --port,"
            " --port+1, ..."
        )
    if args.port + count - 1 > 65535:
        return f"--port {args.port} leaves no room for {count} consecutive ports"
    if args.node_url:
        return "--node-url is set per process with --processes: leave it out"
    return None


def node_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace, port: int, url: str
) -> list[str]:
    """The command line of the node on ``port``: ``flowyard serve`` with the parent's options
    (but those of :data:`SECRET_OPTIONS`), ``--port`` and ``--node-url``."""
    # A single-file build is itself the ``flowyard`` command; Python needs ``-m flowyard``.
    frozen = getattr(sys, "frozen", False)
    command = [sys.executable] if frozen else [sys.executable, "-m", "flowyard"]
    command.append("serve")
    for action in parser._actions:
        name = action.dest
        if not action.option_strings or name in OWN_OPTIONS or name in SECRET_OPTIONS:
            continue
        value = getattr(args, name, None)
        if value is None:
            continue
        option = action.option_strings[-1]
        if action.nargs == 0:  # a flag: given when it differs from its default
            if value != action.default:
                command.append(option)
        else:
            command.append(f"{option}={value}")
    return [*command, "--processes=1", f"--port={port}", f"--node-url={url}"]


def node_environment(args: argparse.Namespace) -> dict[str, str]:
    """The parent's environment with the options of :data:`SECRET_OPTIONS` as variables."""
    environment = dict(os.environ)
    for name, variable in SECRET_OPTIONS.items():
        value = getattr(args, name, None)
        if value is None:
            environment.pop(variable, None)
        else:
            environment[variable] = str(value)
    return environment


@dataclass
class Node:
    """One child: where it listens, its process, and how its last starts went."""

    number: int
    port: int
    url: str
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_exits: int = 0
    start_at: float = 0.0  # when to start it again (a monotonic time)
    statuses: list[int] = field(default_factory=list)


class Nodes:
    """The children, started, watched, restarted and stopped from the main thread."""

    def __init__(self, nodes: Sequence[Node], environment: dict[str, str]) -> None:
        self.nodes = list(nodes)
        self.environment = environment
        self.stopping: int | None = None  # the signal that stops them, once one came
        self.failed = False

    def forward(self, signum: int, frame: object) -> None:
        """SIGTERM or SIGINT to the parent: pass it on to every child, start no more."""
        if self.stopping is None:
            log.info("%s: stopping %d processes", signal.Signals(signum).name, len(self.nodes))
        self.stopping = signum
        for node in self.nodes:
            self._signal(node, signum)

    def run(self) -> int:
        """Start every node, keep them running until a signal, then wait for them all: 0 when
        each one's last exit was 0, else 1."""
        for node in self.nodes:
            self._start(node)
        # Until a signal (or a node that will not start) ends it and every node has exited;
        # a node waiting to be started again has no process but is not done.
        while not (
            (self.stopping is not None or self.failed)
            and all(node.proc is None for node in self.nodes)
        ):
            time.sleep(POLL_SECONDS)
            for node in self.nodes:
                self._check(node)
        if self.failed:
            return 1
        return 0 if all(node.statuses[-1:] == [0] for node in self.nodes) else 1

    def _start(self, node: Node) -> None:
        node.proc = subprocess.Popen(
            node.command,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=_end_with_parent if sys.platform == "linux" else None,
        )
        node.started = time.monotonic()
        log.info("started node %d (pid %d) on %s", node.number, node.proc.pid, node.url)
        if self.stopping is not None:  # the signal came while it was being started
            self._signal(node, self.stopping)

    def _check(self, node: Node) -> None:
        if node.proc is None:
            if self.stopping is None and not self.failed and time.monotonic() >= node.start_at:
                self._start(node)
            return
        status = node.proc.poll()
        if status is None:
            return
        node.proc = None
        node.statuses.append(status)
        if self.stopping is not None or self.failed:
            log.info("node %d exited with status %d", node.number, status)
            return
        quick = time.monotonic() - node.started < QUICK_EXIT_SECONDS
        node.quick_exits = node.quick_exits + 1 if quick else 0
        if node.quick_exits >= MAX_QUICK_EXITS:
            log.error(
                "node %d exited %d times within %gs of its start (last status %d): stopping",
                node.number,
                node.quick_exits,
                QUICK_EXIT_SECONDS,
                status,
            )
            self.failed = True
            for other in self.nodes:
                self._signal(other, signal.SIGTERM)
            return
        delay = RESTART_DELAY_SECONDS * 2 ** (node.quick_exits - 1) if quick else 0.0
        node.start_at = time.monotonic() + delay
        log.warning(
            "node %d (%s) exited unexpectedly with status %d; starting it again in %gs",
            node.number,
            node.url,
            status,
            delay,
        )
        if not delay:
            self._start(node)

    @staticmethod
    def _signal(node: Node, signum: int) -> None:
        if node.proc is not None:
            node.proc.send_signal(signum)  # nothing, if it has exited: the next check sees it


def run_nodes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``flowyard serve --processes N`` with N > 1; the exit status."""
    from flowyard import logs
    from flowyard.cli.common import fail

    logs.configure(args.log_level, args.log_format)
    problem = refusal(args)
    if problem is not None:
        (log.error if args.log_format == "json" else fail)(problem)
        return USAGE_ERROR
    host = _reachable(args.host)
    nodes = []
    for number in range(1, args.processes + 1):
        port = args.port + number - 1
        url = f"http://{host}:{port}"
        nodes.append(Node(number, port, url, node_command(parser, args, port, url)))
    supervisor = Nodes(nodes, node_environment(args))
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, supervisor.forward)
    return supervisor.run()


def _reachable(host: str) -> str:
    """``host`` as the other nodes on this machine reach it: a wildcard address is loopback."""
    address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{address}]" if ":" in address else address


def _end_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
