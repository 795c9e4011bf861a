"""``bench.postgres``: a throwaway cluster starts, takes writes, and leaves nothing behind.

Skipped, with the reason, where PostgreSQL is not installed.
"""

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from bench import postgres

asyncpg = pytest.importorskip("asyncpg")


@pytest.fixture
def installed() -> postgres.Binaries:
    """PostgreSQL's binaries; the test is skipped, saying why, where there are none."""
    try:
        return postgres.find_binaries()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))


def query(url: str, *statements: str) -> list[list[tuple[Any, ...]]]:
    """Run ``statements`` on one connection to ``url`` (autocommit); each one's rows."""

    async def run() -> list[list[tuple[Any, ...]]]:
        conn = await asyncpg.connect(url)
        try:
            return [[tuple(row) for row in await conn.fetch(sql)] for sql in statements]
        finally:
            await conn.close()

    return anyio.run(run)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.usefixtures("installed")
def test_a_cluster_takes_a_durable_write_and_is_gone_afterwards() -> None:
    with postgres.running_cluster() as cluster:
        url = cluster.url
        assert url == f"postgresql://postgres@127.0.0.1:{cluster.port}/flowyard"
        *_, notes, settings = query(
            url,
            "CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)",
            "INSERT INTO notes VALUES (1, 'kept')",
            "SELECT body FROM notes",
            "SELECT name, setting FROM pg_settings"
            " WHERE name IN ('fsync', 'synchronous_commit', 'listen_addresses')",
        )
        assert notes == [("kept",)]
        assert dict(settings) == {
            "fsync": "on",
            "synchronous_commit": "on",
            "listen_addresses": "127.0.0.1",
        }
        folder, pid, port = cluster.folder, cluster.pid, cluster.port
        assert postgres.is_running(pid) and _listening(port)
        assert _processes_mentioning(str(folder))  # the postmaster: postgres -D <folder>/data
        assert any(path.name.startswith(".s.PGSQL.") for path in folder.iterdir())
    assert not postgres.is_running(pid)
    assert not folder.exists()
    assert not _listening(port)
    assert not _processes_mentioning(str(folder))


def _processes_mentioning(text: str) -> list[str]:
    """The command lines of running processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and postgres.is_running(int(entry.name)):
                found.append(cmdline)
    return found


@pytest.mark.usefixtures("installed")
def test_postgres_cluster_yields_the_url_of_the_flowyard_database() -> None:
    with postgres.postgres_cluster() as url:
        [rows] = query(url, "SELECT current_database(), current_user")
        assert rows == [("flowyard", "postgres")]


@pytest.mark.usefixtures("installed")
def test_two_clusters_at_once_get_their_own_ports_and_folders() -> None:
    with postgres.running_cluster() as first, postgres.running_cluster() as second:
        assert first.port != second.port and first.folder != second.folder
        for cluster in (first, second):
            assert query(cluster.url, "SELECT 1") == [[(1,)]]
    assert not first.folder.exists() and not second.folder.exists()


@pytest.mark.usefixtures("installed")
def test_each_test_can_have_a_fresh_database_of_its_own() -> None:
    with postgres.running_cluster() as cluster:
        one = postgres.create_database(cluster.url)
        two = cluster.create_database("flowyard_two")
        assert urlsplit(two).path == "/flowyard_two" and one != two
        assert urlsplit(one).port == cluster.port
        query(one, "CREATE TABLE only_here (id integer)")
        assert query(two, "SELECT to_regclass('only_here')") == [[(None,)]]
        assert query(one, "SELECT to_regclass('only_here')::text") == [[("only_here",)]]
        with pytest.raises(ValueError, match="not a plain database name"):
            cluster.create_database("bad; name")


@pytest.mark.usefixtures("installed")
def test_a_failed_block_still_stops_the_server_and_removes_the_folder() -> None:
    with pytest.raises(RuntimeError, match="boom"), postgres.running_cluster() as cluster:
        folder, pid = cluster.folder, cluster.pid
        raise RuntimeError("boom")
    assert not postgres.is_running(pid) and not folder.exists()


def test_without_postgresql_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(postgres, "SEARCH", Path("/nonexistent"))
    with pytest.raises(postgres.PostgresUnavailable, match="PostgreSQL is not installed"):
        postgres.find_binaries()
