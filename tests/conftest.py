"""Shared fixtures: the real service on a real socket, real push handlers, real processes."""

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import uvicorn
from anyio.abc import ByteStream, Listener, SocketAttribute
from anyio.streams.tls import TLSListener
from bench import postgres
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.actors.supervisor import Supervisor
from flowyard.client import AsyncClient, Client
from flowyard.clock import SYSTEM_CLOCK, Clock
from flowyard.http.app import create_app
from flowyard.http.protocol import protocol_class
from flowyard.settings import Settings
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.sdk_support import Api

pytest_plugins = ["tests.dashboard_support"]  # the browser and page fixtures


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=("sqlite", "postgresql"),
        default=os.environ.get("FLOWYARD_TEST_STORE", "sqlite"),
        help="the store of the services the tests start (env FLOWYARD_TEST_STORE; sqlite)",
    )


_CLUSTER: list[str] = []
"""With ``--store postgresql``: the URL of this test process's throwaway cluster."""


@pytest.fixture(scope="session", autouse=True)
def _store_cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    """With ``--store postgresql``, one throwaway PostgreSQL cluster per test process."""
    if request.config.getoption("--store") != "postgresql":
        yield
        return
    with postgres.postgres_cluster() as url:
        _CLUSTER.append(url)
        yield
        _CLUSTER.clear()


def fresh_db(tmp_path: Path, name: str = "flowyard.db") -> str:
    """A new, empty database for a test: a file in ``tmp_path``, or with ``--store
    postgresql`` a new database in the test process's cluster."""
    if _CLUSTER:
        return str(postgres.create_database(_CLUSTER[0]))
    return str(tmp_path / name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve_tcp(
    handle: Callable[[ByteStream], Awaitable[None]],
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    """Serve raw TCP (over TLS with ``tls``), ``handle`` per connection, while the block runs;
    yields the port."""
    tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
    listener: Listener[Any] = tcp if tls is None else TLSListener(tcp, tls, False)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield tcp.extra(SocketAttribute.local_port)
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app with uvicorn on a free 127.0.0.1 port; yields its base URL."""
    sock = _bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", http=protocol_class()
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.005)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@dataclass
class Service:
    """A running Flowyard with one project's key and a client that sends it."""

    url: str
    db: str
    key: str
    project_id: str
    client: httpx.AsyncClient
    supervisor: Supervisor

    def new_key(self, project: str = "other", scopes: list[str] | None = None, **kw: Any) -> str:
        """Another key, in this or another project, straight in the database."""
        return create_key_sync(self.db, project, scopes or list(ALL_SCOPES), **kw).key

    def client_for(self, key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@asynccontextmanager
async def running_service(
    tmp_path: Path, clock: Clock = SYSTEM_CLOCK, **overrides: Any
) -> AsyncIterator[Service]:
    """The service on a free port; ``clock`` (e.g. a ``FakeClock``) drives its timers; on a
    fresh database unless ``db`` is given (start one twice on the same ``db`` to restart it)."""
    db = overrides.pop("db", None) or fresh_db(tmp_path)
    port = free_port()
    values: dict[str, Any] = {"db": db, "port": port, "retry_base_seconds": 0.05, **overrides}
    settings = Settings(**values)
    created = create_key_sync(db, "test", list(ALL_SCOPES))
    supervisor = Supervisor(settings, clock)
    app = create_app(settings, supervisor)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", http=protocol_class()
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not (server.started and supervisor.ready.is_set()):
                await anyio.sleep(0.005)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {created.key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            try:
                yield Service(url, db, created.key, created.record.project_id, client, supervisor)
            finally:
                supervisor.jobs.begin_shutdown()
                server.should_exit = True


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """Flowyard in this process on a real socket, with a fresh SQLite file."""
    async with running_service(tmp_path) as svc:
        yield svc


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, service: Service) -> AsyncIterator[Api]:
    """The same test body on :class:`Client` (in a thread) and :class:`AsyncClient`."""
    if request.param == "sync":
        client = Client(service.url, service.key)
        try:
            yield Api(client, sync=True)
        finally:
            client.close()
    else:
        async with AsyncClient(service.url, service.key) as aclient:
            yield Api(aclient, sync=False)


@pytest.fixture
def service_with(tmp_path: Path) -> Callable[..., Any]:
    """``async with service_with(retry_base_seconds=1) as svc``: custom settings (and
    ``clock=FakeClock()`` for timers that move only when the test advances the clock)."""
    return lambda **overrides: running_service(tmp_path, **overrides)


@dataclass
class Delivery:
    """One request a handler received."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class Handler:
    """Scripted push handlers on 127.0.0.1 that record what they receive.

    ``answers[path]`` is a list of ``(status, json_body, delay_seconds)`` used in order (the
    last one repeats); a path with no script answers ``200 {"ok": true}``.
    """

    url: str = ""
    answers: dict[str, list[tuple[int, Any, float]]] = field(default_factory=dict)
    received: list[Delivery] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    def at(self, path: str) -> str:
        return f"{self.url}{path}"

    def script(self, path: str, *answers: tuple[int, Any, float]) -> str:
        self.answers[path] = list(answers)
        return self.at(path)

    def to(self, path: str) -> list[Delivery]:
        return [d for d in self.received if d.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 10) -> list[Delivery]:
        with anyio.fail_after(timeout):
            while len(self.to(path)) < count:
                await self.arrived.wait()
                self.arrived = anyio.Event()
        return self.to(path)

    async def endpoint(self, request: Request) -> Response:
        path = request.url.path
        self.received.append(Delivery(path, dict(request.headers), await request.body()))
        self.arrived.set()
        script = self.answers.get(path)
        status, body, delay = (200, {"ok": True}, 0.0)
        if script:
            status, body, delay = script.pop(0) if len(script) > 1 else script[0]
        if delay:
            await anyio.sleep(delay)
        content = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return Response(content, status, media_type="application/json")


@pytest.fixture
async def handler() -> AsyncIterator[Handler]:
    """A real HTTP handler server on 127.0.0.1."""
    recorder = Handler()
    app = Starlette(routes=[Route("/{path:path}", recorder.endpoint, methods=["POST"])])
    async with serve_app(app) as url:
        recorder.url = url
        yield recorder


@dataclass
class ServerProcess:
    """``flowyard serve`` as a child process."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        self.proc.terminate()
        return self.proc.wait(30)


def start_server(db: str, tmp_path: Path, *args: str, port: int | None = None) -> ServerProcess:
    """Start ``python -m flowyard serve`` on ``db`` and wait for its listening line."""
    port = port or free_port()
    log_path = tmp_path / f"server-{port}-{os.urandom(3).hex()}.log"
    with open(log_path, "wb") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowyard", "serve", "--db", db, "--port", str(port), *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(1000):
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text())
        if "flowyard listening on" in log_path.read_text():
            ready = httpx.get(f"{url}/readyz", timeout=5)
            if ready.status_code == 200:
                return ServerProcess(proc, url, log_path)
        import time

        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("server did not start: " + log_path.read_text())


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real server processes; every one still running is killed at the end."""
    started: list[ServerProcess] = []

    def start(db: str, *args: str, port: int | None = None) -> ServerProcess:
        server = start_server(db, tmp_path, *args, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
