"""The ``flowyard`` command: ``serve`` and ``keys``."""

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

import anyio
import uvicorn

from flowyard.actors.supervisor import Supervisor
from flowyard.http.app import create_app
from flowyard.http.protocol import CorkedHttpToolsProtocol
from flowyard.settings import Settings
from flowyard.storage.projects import ALL_SCOPES, create_key_sync

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
    create.add_argument("--scope", action="append", dest="scopes")
    create.add_argument("--admin", action="store_true")
    create.add_argument("--name", default="")
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
    return 2


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
