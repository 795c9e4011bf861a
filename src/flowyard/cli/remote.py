"""What the commands that talk to a running server share: ``--url``, ``--api-key`` and
``--json``, paging options, the SDK client, and API errors printed as one clear message."""

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import httpx

from flowyard.cli.common import described, env, fail, print_table
from flowyard.cli.display import note, print_json
from flowyard.client import Client, ConnectionFailed, FlowyardAPIError, Page, RetryPolicy
from flowyard.client.core import DEFAULT_URL
from flowyard.client.errors import reason

T = TypeVar("T")
Command = Callable[[Client, argparse.Namespace], int]

RETRY = RetryPolicy(max_retries=2, max_wait=10.0, backoff=0.25)
"""A person waits at the terminal: a couple of quick retries on 429, 503 or a refused
connection, then the error, rather than the SDK's minute of patience."""


def connection_options() -> argparse.ArgumentParser:
    """``--url`` and ``--api-key`` (from ``FLOWYARD_URL`` / ``FLOWYARD_API_KEY``), as a parent
    parser so that they are accepted after the subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        default=env("url", DEFAULT_URL),
        help=described("the server's base URL", DEFAULT_URL, "url"),
    )
    parent.add_argument(
        "--api-key",
        default=env("api_key", ""),
        help=described("the project's API key", "none: the command exits 2", "api_key"),
    )
    return parent


def remote_options() -> argparse.ArgumentParser:
    """:func:`connection_options` plus ``--json``."""
    parent = argparse.ArgumentParser(add_help=False, parents=[connection_options()])
    parent.add_argument(
        "--json",
        action="store_true",
        help=described("print the API's JSON objects instead of tables", "off"),
    )
    return parent


def add_paging(parser: argparse.ArgumentParser) -> None:
    """``--limit N`` (one page, newest first) or ``--all`` (every page)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--limit", type=int, default=25, help=described("how many, 1..100, newest first", 25)
    )
    group.add_argument(
        "--all", action="store_true", help=described("every one, following cursors", "off")
    )


def fetch(
    args: argparse.Namespace,
    listing: Callable[..., Page[T]],
    iterate: Callable[..., Iterator[T]],
    **filters: Any,
) -> Page[T]:
    """One page (``--limit``) or, with ``--all``, every item as one page without a cursor."""
    if args.all:
        return Page(list(iterate(**filters)))
    return listing(limit=args.limit, **filters)


def print_page(
    args: argparse.Namespace,
    key: str,
    page: Page[T],
    columns: Sequence[str],
    row: Callable[[T], Sequence[object]],
) -> None:
    """A list as the API answers it (``{key: [...], next_cursor}``) or as a table, with a
    note on stderr when there are more."""
    if args.json:
        print_json({key: page.items, "next_cursor": page.next_cursor})
        return
    print_table(columns, [row(item) for item in page.items])
    if page.next_cursor is not None:
        note(f"(more {key}: use --all, or a larger --limit)")


def remote(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap ``command(client, args)``: check the key, open the client, and turn API and
    connection errors into one message on stderr and exit status 1 (no traceback)."""

    def run(args: argparse.Namespace) -> int:
        if not args.api_key:
            fail("no API key: pass --api-key or set FLOWYARD_API_KEY")
            return 2
        try:
            with Client(args.url, args.api_key, retry=RETRY) as client:
                return command(client, args)
        except ConnectionFailed as exc:
            fail(f"cannot reach the server at {args.url}: {reason(exc.cause)}")
        except FlowyardAPIError as exc:
            print_api_error(exc)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            fail(f"request to {args.url} failed: {exc or type(exc).__name__}")
        except KeyboardInterrupt:
            return 130  # Ctrl-C: the shell's status for SIGINT, without a traceback
        return 1

    return run


def print_api_error(exc: FlowyardAPIError) -> None:
    """``flowyard: <code>: <message>``, then one ``  <path>: <message>`` line per detail that
    the message does not already say (the API's message repeats the first problem)."""
    fail(f"{exc.code}: {exc.message}")
    for detail in exc.details:
        line = f"{detail.get('path', '$')}: {detail.get('message', '')}"
        if line not in exc.message:
            print(f"  {line}", file=sys.stderr)
