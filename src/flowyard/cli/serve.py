"""``flowyard serve``: the HTTP API, dashboard, actors, timers and storage in one process."""

import argparse
import enum
import gc
import logging
import signal
import socket
import sys

import anyio
import uvicorn

from flowyard import logs
from flowyard.actors.supervisor import Supervisor
from flowyard.cli import processes
from flowyard.cli.common import DEFAULTS, described, env, fail, positive_int
from flowyard.cluster.shards import MAX_SHARDS
from flowyard.http.app import create_app
from flowyard.http.inflight import InflightLimit
from flowyard.http.protocol import protocol_class
from flowyard.settings import Settings
from flowyard.storage.files import DatabaseInUse, lock_server
from flowyard.storage.stores import is_postgres

log = logging.getLogger("flowyard")

# At shutdown, requests still running after this long are stopped and answered 503. It stays
# well below the 10 s `docker stop` waits between SIGTERM and SIGKILL (Kubernetes waits 30 s),
# leaving time to stop the engines, drain the writer and close the database.
GRACE_SECONDS = 5
SWITCH_INTERVAL_SECONDS = 0.001
"""How long the event loop's thread may keep the GIL while the writer thread waits for it.

The writer needs the GIL back after every commit to wake its callers and start the next
one; Python's default (5 ms) would let a busy event loop hold every commit up that long."""
GC_THRESHOLD = (50_000, 10, 10)
"""When Python's cycle collector runs: after 50,000 more container objects (not 700).

Nearly everything here is freed by reference counting the moment it is dropped; the
collector only looks for cycles. At the default threshold it ran 860 times in a 10 s run of
``bench.workflows`` and took half a second of the event loop's time, to find 139 objects.
What start-up loaded (modules, routes, rehydrated state) is frozen out of its sight once the
service is up (``gc.freeze``)."""


def plain_enum_lookups() -> bool:
    """Let enum members be read like any class attribute; whether it was done.

    Python 3.11's ``EnumType`` still defines ``__getattr__``, a fallback to the member map
    from before members were stored on their class (3.11 stores every one; 3.12 dropped the
    fallback). A class whose type defines ``__getattr__`` has every attribute read routed
    through a slow generic hook: ``JobStatus.RUNNING`` costs four times a plain class
    attribute, and the state machine and the job engine read a few hundred of them per
    execution. The fallback is dropped here, unless an enum loaded by then lacks a member
    on its class.
    """
    if "__getattr__" not in vars(enum.EnumType):
        return False
    if any(name not in vars(cls) for cls in _enum_classes(enum.Enum) for name in cls._member_map_):
        return False
    del enum.EnumType.__getattr__  # type: ignore[attr-defined]
    return True


def _enum_classes(base: type[enum.Enum]) -> list[type[enum.Enum]]:
    """Every subclass of ``base`` loaded so far, at any depth."""
    found: list[type[enum.Enum]] = []
    sub: type[enum.Enum]
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_enum_classes(sub))
    return found


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    serve = commands.add_parser("serve", help="run the service (API, actors, timers, storage)")
    add_settings(serve)
    processes.add_option(serve)  # N > 1: cli/processes.py starts N of these as nodes
    serve.set_defaults(
        run=lambda args: (
            processes.run_nodes(serve, args) if args.processes > 1 else run(settings_from(args))
        )
    )


def add_settings(parser: argparse.ArgumentParser) -> None:
    """The service's options, each also read from ``FLOWYARD_<OPTION>``."""
    d = DEFAULTS
    parser.add_argument(
        "--host",
        default=env("host", d.host),
        help=described("address to listen on", d.host, "host"),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env("port", str(d.port))),
        help=described("port to listen on; 0 picks a free one", d.port, "port"),
    )
    parser.add_argument(
        "--db",
        default=env("db", d.db),
        help=described(
            "the SQLite file, created (0600) if missing, one server per file; or a"
            " postgresql://user@host:port/db URL",
            d.db,
            "db",
        ),
    )
    parser.add_argument(
        "--sync",
        choices=["full", "normal"],
        default=env("sync", d.sync),
        help=described("SQLite durability: full fsyncs every commit", d.sync, "sync"),
    )
    parser.add_argument(
        "--retry-base-seconds",
        type=float,
        default=float(env("retry_base_seconds", str(d.retry_base_seconds))),
        help=described(
            "base of the jobs' retry backoff, in seconds",
            d.retry_base_seconds,
            "retry_base_seconds",
        ),
    )
    parser.add_argument(
        "--webhook-retry-base-seconds",
        type=_positive_seconds,
        default=env("webhook_retry_base_seconds", f"{d.webhook_retry_base_seconds:g}"),
        help=described(
            "base of the webhook deliveries' retry backoff, in seconds",
            f"{d.webhook_retry_base_seconds:g}",
            "webhook_retry_base_seconds",
        ),
    )
    parser.add_argument(
        "--handler-network",
        choices=["any", "public"],
        default=env("handler_network", d.handler_network),
        help=described(
            "public refuses handler URLs on loopback, private or link-local addresses",
            d.handler_network,
            "handler_network",
        ),
    )
    parser.add_argument(
        "--callback-window-seconds",
        type=float,
        default=float(env("callback_window_seconds", str(d.callback_window_seconds))),
        help=described(
            "how long a handler that answered 202 has to call back",
            d.callback_window_seconds,
            "callback_window_seconds",
        ),
    )
    parser.add_argument(
        "--push-concurrency",
        type=int,
        default=int(env("push_concurrency", str(d.push_concurrency))),
        help=described("push deliveries in flight at once", d.push_concurrency, "push_concurrency"),
    )
    parser.add_argument(
        "--max-inflight",
        type=positive_int,
        default=env("max_inflight", str(d.max_inflight)),  # a string: checked as given
        help=described(
            "requests worked on at once; more are answered 503 with Retry-After",
            d.max_inflight,
            "max_inflight",
        ),
    )
    parser.add_argument(
        "--log-level",
        default=env("log_level", d.log_level),
        help=described("logging level", d.log_level, "log_level"),
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=env("log_format", d.log_format),
        help=described("text lines, or one JSON object per line", d.log_format, "log_format"),
    )
    parser.add_argument(
        "--metrics-token",
        default=env("metrics_token", "") or None,
        help=described(
            "when set, GET /metrics needs 'Authorization: Bearer TOKEN'",
            "none: /metrics is open",
            "metrics_token",
        ),
    )
    parser.add_argument(
        "--max-inflight-per-project",
        type=positive_int,
        default=env("max_inflight_per_project", "") or None,  # None: half of --max-inflight
        help=described(
            "of those, how many one project may hold",
            "half of --max-inflight",
            "max_inflight_per_project",
        ),
    )
    parser.add_argument(
        "--public-url",
        default=env("public_url", "") or None,
        help=described("base URL handlers use to call back", "http://HOST:PORT", "public_url"),
    )
    parser.add_argument(
        "--read-timeout",
        type=_positive_seconds,
        default=env("read_timeout", f"{DEFAULTS.read_timeout_seconds:g}"),
        help="seconds a request's head may take to arrive, and its body may stall; then 408"
        " (default: 10, env FLOWYARD_READ_TIMEOUT)",
    )
    parser.add_argument(
        "--node-url",
        default=env("node_url", "") or None,
        help=described(
            "this node's base URL as the other nodes reach it: the server joins the cluster"
            " of its PostgreSQL database (DESIGN §11)",
            "none, a server of its own",
            "node_url",
        ),
    )
    parser.add_argument(
        "--shards",
        type=_shard_count,
        default=env("shards", str(d.shards)),
        help=described(
            "shards of a new PostgreSQL database, fixed from then on", d.shards, "shards"
        ),
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """The :class:`Settings` the options of :func:`add_settings` name."""
    return Settings(
        host=args.host,
        port=args.port,
        db=args.db,
        sync=args.sync,
        retry_base_seconds=args.retry_base_seconds,
        handler_network=args.handler_network,
        callback_window_seconds=args.callback_window_seconds,
        push_concurrency=args.push_concurrency,
        max_inflight=args.max_inflight,
        max_inflight_per_project=args.max_inflight_per_project,
        log_level=args.log_level,
        log_format=args.log_format,
        metrics_token=args.metrics_token,
        public_url=args.public_url,
        read_timeout_seconds=args.read_timeout,
        webhook_retry_base_seconds=args.webhook_retry_base_seconds,
        node_url=args.node_url,
        shards=args.shards,
    )


def run(settings: Settings) -> int:
    """Bind, run until SIGTERM/SIGINT, shut down gracefully; exit status 0 (1 if it crashed)."""
    handler = logs.configure(settings.log_level, settings.log_format)
    # With JSON logs every line of stderr is one JSON object, a refusal to start too.
    refuse = _failed_as_json if settings.log_format == "json" else fail
    if settings.node_url is not None and not is_postgres(settings.db):
        refuse("--node-url makes a cluster node: it needs a postgresql:// --db")
        return 2
    if settings.node_url is not None and not settings.node_url.startswith(("http://", "https://")):
        refuse(f"--node-url must be an http:// or https:// URL, not {settings.node_url!r}")
        return 2
    # First of all: a second server on the file must stop before it binds or opens anything.
    try:
        lock_server(settings.db)  # held until the process exits
    except DatabaseInUse:
        refuse(f"database {settings.db} is in use by another flowyard process")
        return 1
    except OSError as exc:
        refuse(f"cannot open the database {settings.db}: {exc.strerror or exc}")
        return 1
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:  # the port is taken, the host is not ours, ...
        sock.close()
        where = f"{_shown(settings.host)}:{settings.port}"
        refuse(f"cannot listen on {where}: {exc.strerror or exc}")
        return 1
    port = sock.getsockname()[1]
    settings = Settings(**{**_as_dict(settings), "port": port})
    supervisor = Supervisor(settings)
    requests = InflightLimit(
        create_app(settings, supervisor),
        settings.max_inflight,
        settings.max_inflight_per_project,
        supervisor.metrics,
    )
    config = uvicorn.Config(
        requests,
        log_level="warning",
        log_config=None,  # its lines go through the handler of logs.configure
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACE_SECONDS + 3,  # a backstop: ours answers 503 first
        proxy_headers=False,
        server_header=False,
        date_header=False,
        backlog=4096,
        http=protocol_class(settings.read_timeout_seconds),
    )
    url = f"http://{_shown(settings.host)}:{port}"
    server = _Server(config, supervisor, requests, url, handler, settings.log_format)

    def graceful(signum: int, frame: object) -> None:
        server.should_exit = True

    # uvicorn re-raises a SIGTERM/SIGINT it handled once it has shut down, with the handler
    # that was installed before it: with the default one the process would die of the signal
    # (status -15) instead of exiting 0. This one also covers signals before uvicorn starts.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, graceful)

    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.set_threshold(*GC_THRESHOLD)
    plain_enum_lookups()
    anyio.run(server.serve, [sock], backend_options={"use_uvloop": True})
    return 0 if supervisor.failure is None else 1  # a crashed core service: restart me


class _Server(uvicorn.Server):
    """uvicorn's server, announcing itself when listening; at shutdown it answers long-polls
    at once and stops requests that outlast :data:`GRACE_SECONDS` with a 503.

    uvicorn's shutdown stops accepting, closes idle connections, waits for the requests in
    flight (their commits finish), then runs the lifespan's shutdown: the supervisor stops
    the engines and lets the writer commit what it holds.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        supervisor: Supervisor,
        requests: InflightLimit,
        url: str,
        handler: logging.Handler,
        log_format: str,
    ) -> None:
        super().__init__(config)
        self._supervisor = supervisor
        self._requests = requests
        self._url = url
        self._handler = handler
        self._log_format = log_format
        supervisor.on_failure = lambda: setattr(self, "should_exit", True)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await self._supervisor.open_store()
        except DatabaseInUse as exc:  # a PostgreSQL database (a file is locked before this)
            (_failed_as_json if self._log_format == "json" else fail)(str(exc))
            self._supervisor.failure = str(exc)
            self.should_exit = True
            return
        await super().startup(sockets)
        gc.freeze()  # what start-up loaded (and rehydrated) stays: the collector skips it
        listening = f"flowyard listening on {self._url}"
        if self._log_format == "json":  # every line of stderr is then one JSON object
            logs.announce(self._handler, "flowyard", listening)
        else:
            print(listening, file=sys.stderr, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._supervisor.jobs.begin_shutdown()  # answer open long-polls before waiting on them
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._cut_off_after, GRACE_SECONDS)
            await super().shutdown(sockets)
            tg.cancel_scope.cancel()
        log.info("shut down")

    async def _cut_off_after(self, seconds: int) -> None:
        await anyio.sleep(seconds)
        stopped = await self._requests.cut_off()
        if stopped:
            log.warning(
                "shutdown: %d request(s) still running after %gs answered 503", stopped, seconds
            )


def _failed_as_json(message: str) -> None:
    """Why the server cannot start, as an ERROR line of the JSON log."""
    log.error(message)


def _shard_count(text: str) -> int:
    count = positive_int(text)
    if count > MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SHARDS} shards")
    return count


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _as_dict(settings: Settings) -> dict[str, object]:
    return {field: getattr(settings, field) for field in settings.__struct_fields__}
