"""The benchmarks' ``--db`` and ``--postgres``: which database each server gets, and cleanup.

``--postgres`` starts a throwaway cluster for the run and stops it at the end; skipped, with
the reason, where PostgreSQL is not installed.
"""

import argparse
import socket
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from bench import postgres
from bench.common import add_server_options, databases, store_name
from bench.db_reads import fetch, fetch_one, integrity

pytest.importorskip("asyncpg")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_server_options(parser)
    return parser.parse_args(argv)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_without_an_option_each_server_makes_its_own_sqlite_file() -> None:
    args = parse()
    assert store_name(args) == "sqlite"
    with databases(args) as fresh_database:
        assert fresh_database() is None
        assert fresh_database.cluster_cpu_seconds() is None


def test_db_takes_only_a_postgresql_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("--db", "postgresql://u@127.0.0.1:5/x").db == "postgresql://u@127.0.0.1:5/x"
    with pytest.raises(SystemExit):
        parse("--db", "/tmp/bench.db")
    assert "not a postgresql:// URL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--db", "postgresql://u@127.0.0.1:5/x", "--postgres")


def test_reads_take_the_same_query_on_a_sqlite_file(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id TEXT, doc BLOB)")
        conn.execute("INSERT INTO t VALUES ('a', x'7b7d'), ('b', x'7b7d')")
    assert fetch(db, "SELECT id FROM t WHERE id = $1 OR id = $1 ORDER BY id", "b") == [("b",)]
    assert integrity(db) == "ok"


def test_postgres_starts_a_cluster_for_the_run_and_stops_it() -> None:
    try:
        postgres.find_binaries()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))
    args = parse("--postgres")
    assert store_name(args) == "postgresql"
    with databases(args) as fresh_database:
        first, second = fresh_database(), fresh_database()
        assert first and second and first != second
        port = urlsplit(first).port
        postmaster = fresh_database.postmaster
        assert port and _listening(port) and postmaster and postgres.is_running(postmaster)
        (name,) = fetch_one(first, "SELECT current_database()")
        assert first.endswith(f"/{name}")
        (settings,) = fetch(second, "SELECT current_setting('fsync'), $1::text", "x")
        assert settings == ("on", "x")
        cpu = fresh_database.cluster_cpu_seconds()
        assert cpu is not None and cpu > 0
        # --db with that cluster's URL: a fresh database in it, not the one named.
        with databases(parse("--db", first)) as in_cluster:
            third = in_cluster()
        assert third and third not in (first, second) and urlsplit(third).port == port
    assert not _listening(port) and not postgres.is_running(postmaster)
