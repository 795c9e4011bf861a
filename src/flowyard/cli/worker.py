"""``flowyard worker module:object``: run a :class:`flowyard.worker.Worker` from the user's code.

Like uvicorn's ``module:app``: the current directory is put on ``sys.path``, ``module`` is
imported and ``object`` (a dotted attribute path) is a ``Worker`` or a zero-argument callable
returning one. ``--url`` and ``--api-key`` are set as ``FLOWYARD_URL`` and ``FLOWYARD_API_KEY``
before the import, so a Worker built without them (the usual way) uses them; one built with an
explicit URL or key keeps its own.
"""

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from flowyard.cli.common import described, env, fail
from flowyard.cli.remote import connection_options, print_api_error
from flowyard.client import FlowyardAPIError
from flowyard.worker import Worker


class TargetError(Exception):
    """``module:object`` does not name a Worker; the message says why."""


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    worker = commands.add_parser(
        "worker",
        parents=[connection_options()],
        help="run pull-queue handlers: a Worker from your code",
        description="Import MODULE (from the current directory first) and run OBJECT, a "
        "flowyard.worker.Worker or a zero-argument callable returning one, until SIGTERM "
        "or SIGINT (held jobs are finished and acked first).",
    )
    worker.add_argument("target", metavar="MODULE:OBJECT", help="e.g. myapp.jobs:worker")
    worker.add_argument(
        "--concurrency", type=_positive, help=described("jobs run at once", "the Worker's own")
    )
    worker.add_argument(
        "--log-level",
        default=env("log_level", "info"),
        help=described("logging level", "info", "log_level"),
    )
    worker.set_defaults(run=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    """Load the Worker and run it; its exit status (0 after a graceful stop)."""
    # The options' defaults come from these very variables, so setting them is a no-op
    # unless an option was given.
    os.environ["FLOWYARD_URL"] = args.url
    if args.api_key:
        os.environ["FLOWYARD_API_KEY"] = args.api_key
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per long-poll
    try:
        worker = load(args.target)
    except TargetError as exc:
        fail(str(exc))
        return 2
    if not worker.api_key:
        fail("no API key: pass --api-key or set FLOWYARD_API_KEY")
        return 2
    if args.concurrency is not None:
        worker.concurrency = args.concurrency
    try:
        return worker.run()
    except FlowyardAPIError as exc:  # a claim refused for good (bad key, missing scope ...)
        print_api_error(exc)
        return 1


def load(target: str) -> Worker:
    """The Worker ``module:object`` names (see the module's docstring)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise TargetError(f"expected MODULE:OBJECT, e.g. myapp.jobs:worker (got {target!r})")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not _is_part_of(exc.name, module_name):
            raise  # the module itself imports something missing: its traceback helps
        raise TargetError(f"cannot import {module_name!r}: {exc}") from None
    found: Any = module
    for name in attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise TargetError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(found, Worker) and callable(found):
        found = found()
    if not isinstance(found, Worker):
        raise TargetError(f"{target} is not a flowyard.worker.Worker ({type(found).__name__})")
    if not found.routes:
        raise TargetError(f"{target} has no handlers registered")
    return found


def _is_part_of(missing: str, module_name: str) -> bool:
    """Whether ``missing`` is ``module_name`` or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")
