"""The ``flowyard`` command. Each subcommand lives in its own module, which adds its parser with
``register(commands)`` and sets ``run`` (a function of the parsed arguments returning the exit
status)."""

import argparse
import os
import sys
from collections.abc import Sequence

from flowyard import __version__
from flowyard.cli import (
    blueprints,
    cluster,
    db,
    demo,
    executions,
    jobs,
    keys,
    schedules,
    serve,
    webhooks,
    worker,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowyard", description="Flowyard: DAG workflows over a job queue, in one process."
    )
    parser.add_argument("--version", action="version", version=f"flowyard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (
        serve,
        keys,
        db,
        executions,
        blueprints,
        schedules,
        jobs,
        webhooks,
        worker,
        cluster,
        demo,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``flowyard jobs list | head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status
