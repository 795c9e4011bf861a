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
from flowyard.cli.common import fail
from flowyard.cli.serve_options import add_settings, settings_from
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


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _as_dict(settings: Settings) -> dict[str, object]:
    return {field: getattr(settings, field) for field in settings.__struct_fields__}
