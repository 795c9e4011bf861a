"""``flowyard demo``: the service with an order-fulfillment workflow running through it.

It starts ``flowyard serve`` as a child process, creates a key for the ``demo`` project,
registers the blueprint, runs its workers here, triggers orders and reports each execution as
it ends. ``--exit`` stops once they have all ended (status 0 only if each ended as planned);
otherwise the server and the workers run on, for the dashboard, until Ctrl-C or SIGTERM.
"""

import argparse
import logging
import sqlite3
import sys

import anyio

from flowyard.cli.common import DEFAULTS, described, env
from flowyard.demo.server import ServerChild, ServerFailed
from flowyard.demo.session import Session, say
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from flowyard.storage.stores import shown

PROJECT = "demo"


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    demo = commands.add_parser(
        "demo", help="run the service with a demo workflow, its workers and some executions"
    )
    demo.add_argument(
        "--port",
        type=int,
        default=int(env("port", str(DEFAULTS.port))),
        help=described("port of the server; 0 picks a free one", DEFAULTS.port, "port"),
    )
    demo.add_argument(
        "--db",
        default=env("db", DEFAULTS.db),
        help=described("the SQLite file, or a postgresql:// URL", DEFAULTS.db, "db"),
    )
    demo.add_argument(
        "--executions",
        type=_executions,
        default=20,
        help=described("orders to trigger, 1..1000", 20),
    )
    demo.add_argument(
        "--exit",
        action="store_true",
        help=described(
            "stop once every execution has ended; exit 1 unless each ended as planned", "off"
        ),
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help=described("with --exit, the longest wait for the executions, in seconds", 120),
    )
    demo.set_defaults(run=run)


def _executions(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be 1..1000")
    return value


def run(args: argparse.Namespace) -> int:
    """Key, server, session; the server is stopped whatever happens to the session."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        key = create_key_sync(args.db, PROJECT, list(ALL_SCOPES), name="demo")
    except sqlite3.Error as exc:
        print(f"flowyard demo: cannot use the database {shown(args.db)}: {exc}", file=sys.stderr)
        return 1
    try:
        server = ServerChild.start(args.db, args.port)
    except ServerFailed as exc:
        print(f"flowyard demo: {exc}", file=sys.stderr)
        return 1
    say(f"server pid {server.pid} listening on {server.url} (database {shown(args.db)})")
    say(f"project {PROJECT}, key {key.record.id}")
    session = Session(server.url, key.key, args.executions, args.exit, args.timeout)
    try:
        status = anyio.run(session.run)
    finally:
        say("stopping the server")
        stopped = server.stop()
    if stopped != 0:
        say(f"the server exited with status {stopped}")
        return 1
    return status
