"""A throwaway PostgreSQL cluster: initdb in a temporary folder, loopback only, removed after.

``with postgres_cluster() as url:`` finds PostgreSQL's binaries (``PATH``, then
``/usr/lib/postgresql/*/bin``, newest first), creates a cluster in a new temporary folder,
starts it with ``pg_ctl`` on a free port of 127.0.0.1 (its unix socket in that folder, trust
auth, PostgreSQL's default durability: ``fsync`` and ``synchronous_commit`` on), creates the
database ``flowyard`` and yields ``postgresql://postgres@127.0.0.1:PORT/flowyard``. At the
end, however the block ended, the server is stopped (``-m fast``, then ``-m immediate``, then
SIGKILL) and the folder removed. :func:`create_database` adds a fresh database to a running
cluster, for tests that each want their own.

PostgreSQL refuses to run as root: as root, the folder is given to the ``postgres`` user and
``initdb`` and the server run as that user. No system service is used or started.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOST = "127.0.0.1"
USER = "postgres"
"""The cluster's superuser, and the system user that runs it when we are root."""
DATABASE = "flowyard"
START_TIMEOUT = 60
STOP_TIMEOUT = 30
PORT_TRIES = 3
"""Starts tried on fresh ports (another process may take a free port before the server)."""
SEARCH = Path("/usr/lib/postgresql")
_PROGRAMS = ("initdb", "pg_ctl", "postgres", "createdb")

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SETTINGS = """
# Set by bench/postgres.py: loopback only, socket in the cluster's folder, default durability.
listen_addresses = '{host}'
unix_socket_directories = '{socket_dir}'
fsync = on
synchronous_commit = on
full_page_writes = on
"""


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be run here (not installed, or no user to run it as)."""


@dataclass(frozen=True)
class Binaries:
    """The folder of ``initdb``, ``pg_ctl``, ``postgres`` and ``createdb``; who runs them."""

    bin_dir: Path
    run_as: str | None
    """The system user that runs ``initdb`` and the server (None: ourselves)."""

    def path(self, name: str) -> str:
        return str(self.bin_dir / name)


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where it lives, its port and its postmaster's pid."""

    binaries: Binaries
    folder: Path
    port: int
    pid: int

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return database_url(self.port, DATABASE)

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a fresh random name unless ``name``); its URL."""
        return _create_database(self.binaries, self.port, name)


def database_url(port: int, name: str) -> str:
    return f"postgresql://{USER}@{HOST}:{port}/{name}"


def find_binaries() -> Binaries:
    """PostgreSQL's server binaries: on ``PATH``, else the newest ``/usr/lib/postgresql/*/bin``.

    Raises:
        PostgresUnavailable: no ``initdb`` with ``pg_ctl``, ``postgres`` and ``createdb``
            beside it, or we are root and there is no ``postgres`` user to run the server as.
    """
    bin_dir = _find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL is not installed: no initdb on PATH nor in "
            f"{SEARCH}/*/bin (Debian: apt-get install postgresql)"
        )
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            raise PostgresUnavailable(
                f"PostgreSQL refuses to run as root and there is no {USER!r} user to run it as"
            ) from None
        run_as = USER
    return Binaries(bin_dir, run_as)


def _find_bin_dir() -> Path | None:
    candidates = []
    initdb = shutil.which("initdb")
    if initdb:
        # /usr/local/bin/initdb may be a link into /usr/lib/postgresql/N/bin: the other
        # programs live beside the real file.
        candidates += [Path(initdb).resolve().parent, Path(initdb).parent]
    versions = []
    with contextlib.suppress(OSError):
        for entry in SEARCH.iterdir():
            if entry.name.replace(".", "").isdigit():
                versions.append((tuple(int(p) for p in entry.name.split(".") if p), entry))
    candidates += [entry / "bin" for _, entry in sorted(versions, reverse=True)]
    for bin_dir in candidates:
        if all(os.access(bin_dir / name, os.X_OK) for name in _PROGRAMS):
            return bin_dir
    return None


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A fresh cluster for the block; yields the URL of its database ``flowyard``."""
    with running_cluster() as cluster:
        yield cluster.url


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A fresh cluster for the block (see the module's docstring); yields its :class:`Cluster`."""
    binaries = find_binaries()
    folder = Path(tempfile.mkdtemp(prefix="flowyard-pg-"))
    cluster: Cluster | None = None
    try:
        if binaries.run_as is not None:
            shutil.chown(folder, binaries.run_as, binaries.run_as)
        _initdb(binaries, folder)
        cluster = _start(binaries, folder)
        _create_database(binaries, cluster.port, DATABASE)
        yield cluster
    finally:
        try:
            if cluster is not None or (folder / "data" / "postmaster.pid").exists():
                _stop(binaries, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def create_database(url: str, name: str | None = None) -> str:
    """Create a database in the running cluster of ``url`` (a random name unless ``name``).

    Returns:
        The new database's URL (same host, port and user as ``url``).
    """
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"no port in {url!r}")
    return _create_database(find_binaries(), port, name)


# ------------------------------------------------------------------------------ the steps


def _create_database(binaries: Binaries, port: int, name: str | None) -> str:
    name = name or f"flowyard_{secrets.token_hex(6)}"
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    _run(
        binaries,
        [binaries.path("createdb"), "-h", HOST, "-p", str(port), "-U", USER, name],
        as_owner=False,
    )
    return database_url(port, name)


def _initdb(binaries: Binaries, folder: Path) -> None:
    data = folder / "data"
    _run(
        binaries,
        [
            binaries.path("initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            # Only initdb's own final flush of the new files; the server runs with fsync on.
            "--no-sync",
        ],
    )
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(_SETTINGS.format(host=HOST, socket_dir=folder))


def _start(binaries: Binaries, folder: Path) -> Cluster:
    """Start the server on a free port (another one if the port was taken meanwhile)."""
    data = folder / "data"
    log_path = folder / "server.log"
    for attempt in range(PORT_TRIES):
        port = _free_port()
        log_path.unlink(missing_ok=True)  # so that its tail tells about this attempt only
        command = [binaries.path("pg_ctl"), "start", "-D", str(data), "-l", str(log_path)]
        command += ["-w", "-t", str(START_TIMEOUT), "-o", f"-p {port}"]
        try:
            _run(binaries, command, timeout=START_TIMEOUT + 10)
        except RuntimeError:
            if attempt + 1 < PORT_TRIES and _port_taken(log_path):
                _stop(binaries, folder)
                continue
            raise RuntimeError(f"PostgreSQL did not start:\n{_tail(log_path)}") from None
        return Cluster(binaries, folder, port, _postmaster_pid(data))
    raise AssertionError("unreachable")


def _stop(binaries: Binaries, folder: Path) -> None:
    """Stop the server: fast, then immediate, then SIGKILL to the postmaster."""
    data = folder / "data"
    pid = _postmaster_pid(data)
    for mode in ("fast", "immediate"):
        command = [binaries.path("pg_ctl"), "stop", "-D", str(data), "-m", mode]
        with contextlib.suppress(RuntimeError):
            _run(binaries, [*command, "-w", "-t", str(STOP_TIMEOUT)], timeout=STOP_TIMEOUT + 10)
        if not pid or not is_running(pid):
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (one nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _postmaster_pid(data: Path) -> int:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return 0


def _run(
    binaries: Binaries, command: list[str], *, as_owner: bool = True, timeout: float = 120
) -> None:
    """Run one of PostgreSQL's programs; RuntimeError with its output if it fails."""
    options: dict[str, Any] = {}
    if as_owner and binaries.run_as is not None:
        options = {"user": binaries.run_as, "group": binaries.run_as, "extra_groups": []}
    # PG* variables (PGHOST, PGPORT, PGDATA...) in our environment must not redirect them.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd="/",  # a folder every user may enter (initdb warns in one it cannot)
            check=False,
            **options,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{Path(command[0]).name} took more than {timeout}s") from exc
    except OSError as exc:
        raise RuntimeError(f"{command[0]} could not be run: {exc}") from exc
    if done.returncode != 0:
        name = Path(command[0]).name
        raise RuntimeError(
            f"{name} exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_taken(log_path: Path) -> bool:
    return "Address already in use" in _tail(log_path)


def _tail(log_path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
