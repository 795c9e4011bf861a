"""The ``flowyard`` command: ``serve`` and ``keys create|list|revoke``."""

import argparse
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import uvicorn

from flowyard.actors.supervisor import Supervisor
from flowyard.clock import rfc3339
from flowyard.http.app import create_app
from flowyard.http.protocol import CorkedHttpToolsProtocol
from flowyard.settings import Settings
from flowyard.storage.projects import (
    ALL_SCOPES,
    SCOPES,
    ApiKey,
    create_key_sync,
    list_keys_sync,
    revoke_key_sync,
)

log = logging.getLogger("flowyard")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FLOWYARD_{name.upper()}", default)


def _parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="flowyard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service (API, actors, timers, storage)")
    serve.add_argument("--host", default=_env("host", defaults.host))
    serve.add_argument("--port", type=int, default=int(_env("port", str(defaults.port))))
    serve.add_argument("--db", default=_env("db", defaults.db))
    serve.add_argument("--sync", choices=["full", "normal"], default=_env("sync", defaults.sync))
    serve.add_argument(
        "--retry-base-seconds",
        type=float,
        default=float(_env("retry_base_seconds", str(defaults.retry_base_seconds))),
    )
    serve.add_argument(
        "--handler-network",
        choices=["any", "public"],
        default=_env("handler_network", defaults.handler_network),
    )
    serve.add_argument(
        "--callback-window-seconds",
        type=float,
        default=float(_env("callback_window_seconds", str(defaults.callback_window_seconds))),
    )
    serve.add_argument(
        "--push-concurrency",
        type=int,
        default=int(_env("push_concurrency", str(defaults.push_concurrency))),
    )
    serve.add_argument("--log-level", default=_env("log_level", defaults.log_level))
    serve.add_argument(
        "--public-url",
        default=_env("public_url", "") or None,
        help="base URL handlers use to call back (default: http://HOST:PORT)",
    )

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a project (if needed) and a key")
    create.add_argument("--db", default=_env("db", defaults.db))
    create.add_argument("--project", required=True)
    create.add_argument("--scope", action="append", dest="scopes", choices=SCOPES)
    create.add_argument("--admin", action="store_true")
    create.add_argument("--name", default="")
    listing = key_commands.add_parser("list", help="list keys, newest first (never the secrets)")
    listing.add_argument("--db", default=_env("db", defaults.db))
    listing.add_argument("--project", help="only this project's keys (by name)")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    revoke = key_commands.add_parser(
        "revoke", help="revoke a key (a running server refuses it within a second)"
    )
    revoke.add_argument("--db", default=_env("db", defaults.db))
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.add_argument("--json", action="store_true", help="the key record as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        settings = Settings(
            host=args.host,
            port=args.port,
            db=args.db,
            sync=args.sync,
            retry_base_seconds=args.retry_base_seconds,
            handler_network=args.handler_network,
            callback_window_seconds=args.callback_window_seconds,
            push_concurrency=args.push_concurrency,
            log_level=args.log_level,
            public_url=args.public_url,
        )
        return serve(settings)
    if args.command == "keys" and args.keys_command == "create":
        created = create_key_sync(
            args.db, args.project, args.scopes or list(ALL_SCOPES), admin=args.admin, name=args.name
        )
        record = created.record
        print(f"project {record.project_id} key {record.id} scopes {' '.join(record.scopes)}")
        print(created.key)
        return 0
    if args.command == "keys" and args.keys_command == "list":
        return list_keys(args.db, args.project, as_json=args.json)
    if args.command == "keys" and args.keys_command == "revoke":
        return revoke_key(args.db, args.key_id, as_json=args.json)
    return 2


_KEY_COLUMNS = (
    "id",
    "project",
    "name",
    "scopes",
    "admin",
    "created_at",
    "last_used_at",
    "revoked_at",
)


def _key_record(key: ApiKey, project: str) -> dict[str, Any]:
    return {
        "id": key.id,
        "project_id": key.project_id,
        "project": project,
        "name": key.name,
        "scopes": list(key.scopes),
        "admin": key.admin,
        "created_at": rfc3339(key.created_at),
        "last_used_at": rfc3339(key.last_used_at),
        "revoked_at": rfc3339(key.revoked_at),
    }


def _print_keys(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(records, indent=2))
        return
    rows = [list(_KEY_COLUMNS)]
    for record in records:
        cells = {
            **record,
            "scopes": ",".join(record["scopes"]),
            "admin": "yes" if record["admin"] else "no",
        }
        rows.append([str(cells[column] or "-") for column in _KEY_COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_KEY_COLUMNS))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _no_database(db: str) -> bool:
    if os.path.exists(db):
        return False
    print(f"flowyard: no database at {db}", file=sys.stderr)
    return True


def list_keys(db: str, project: str | None, *, as_json: bool) -> int:
    """``flowyard keys list``: every key (of one project), newest first, straight from the file."""
    if _no_database(db):
        return 1
    try:
        keys = list_keys_sync(db, project)
    except LookupError as exc:
        print(f"flowyard: {exc.args[0]}", file=sys.stderr)
        return 1
    _print_keys([_key_record(key, name) for key, name in keys], as_json)
    return 0


def revoke_key(db: str, key_id: str, *, as_json: bool) -> int:
    """``flowyard keys revoke``: revoke in the file. A running server refuses the key within a
    second (the lifetime of its key cache). Revoking a revoked key changes nothing."""
    if _no_database(db):
        return 1
    try:
        key, project, already = revoke_key_sync(db, key_id)
    except LookupError as exc:
        print(f"flowyard: {exc.args[0]}", file=sys.stderr)
        return 1
    if already:
        print(f"flowyard: key {key_id} was already revoked", file=sys.stderr)
    record = _key_record(key, project)
    if as_json:
        print(json.dumps(record, indent=2))
    else:
        _print_keys([record], as_json=False)
    return 0


def serve(settings: Settings) -> int:
    """Bind, run until SIGTERM/SIGINT, shut down gracefully; exit status 0."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    settings = Settings(**{**_as_dict(settings), "port": port})
    supervisor = Supervisor(settings)
    app = create_app(settings, supervisor)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        backlog=4096,
        http=CorkedHttpToolsProtocol,
    )
    server = _Server(config, supervisor, f"http://{_shown(settings.host)}:{port}")

    def graceful(signum: int, frame: object) -> None:
        server.should_exit = True

    # uvicorn re-raises a SIGTERM/SIGINT it handled once it has shut down, with the handler
    # that was installed before it: with the default one the process would die of the signal
    # (status -15) instead of exiting 0. This one also covers signals before uvicorn starts.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, graceful)

    anyio.run(server.serve, [sock], backend_options={"use_uvloop": True})
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server, announcing itself when listening and ending long-polls at shutdown."""

    def __init__(self, config: uvicorn.Config, supervisor: Supervisor, url: str) -> None:
        super().__init__(config)
        self._supervisor = supervisor
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        print(f"flowyard listening on {self._url}", file=sys.stderr, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._supervisor.jobs.begin_shutdown()  # answer open long-polls before waiting on them
        await super().shutdown(sockets)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _as_dict(settings: Settings) -> dict[str, object]:
    return {field: getattr(settings, field) for field in settings.__struct_fields__}
