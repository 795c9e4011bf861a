"""``flowyard db copy`` and ``flowyard db migrate`` on real SQLite files and PostgreSQL.

A SQLite database filled through the real server is copied to PostgreSQL and back; a server on
each copy answers the same pages of every list, to the same cursors, for the same keys.
PostgreSQL tests are skipped, with the reason, where it is not installed.
"""

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest
from bench import postgres

from flowyard.storage import copy, postgres_schema
from flowyard.storage.migrations import MIGRATIONS
from flowyard.storage.port import Store
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from flowyard.storage.sqlite import Database
from tests.conftest import Handler
from tests.schema_support import older_database
from tests.test_crash import StartServer, ack, claim, client, create, start
from tests.test_postgres_service import DIAMOND, run_steps
from tests.webhook_support import create_webhook, wait_deliveries

Json = dict[str, Any]
Pages = list[tuple[list[Json], str | None]]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One throwaway cluster for the module (each test takes databases of its own)."""
    pytest.importorskip("asyncpg")
    try:
        with postgres.postgres_cluster() as url:
            yield url
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flowyard", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


async def db_copy(source: str, target: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(cli, "db", "copy", "--from", source, "--to", target)


def counts(done: subprocess.CompletedProcess[str]) -> dict[str, tuple[int, int]]:
    """The table ``db copy`` printed: table -> (source rows, target rows)."""
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == ["table", "source", "target"]
    found = {}
    for line in lines:
        table, source, target = line.split()
        found[table] = (int(source), int(target))
    return found


async def fill(api: httpx.AsyncClient, handler: Handler) -> list[str]:
    """Jobs (done and pending), a finished workflow, a parent and its children, a webhook's
    deliveries, workflow schedules; the list paths."""
    hook = await create_webhook(api, handler.at("/hook"))
    for n in range(5):
        await create(api, trigger={"type": "pull", "queue": "solo"}, payload={"n": n})
    for job in await claim(api, "solo", count=3):
        assert (await ack(api, job, {"n": job["payload"]["n"]})).status_code == 200
    created = await api.post("/infra/workflows/blueprints", json=DIAMOND)
    assert created.status_code == 200, created.text
    blueprint_id = created.json()["id"]
    for schedule in ("0 0 1 1 *", "0 9 * * 1", "30 5 * * *"):
        body = {"blueprint_id": blueprint_id, "schedule": schedule, "timezone": "Asia/Tokyo"}
        made = await api.post("/infra/workflows/schedules", json=body)
        assert made.status_code == 200, made.text
    started = await api.post(
        f"/infra/workflows/blueprints/{blueprint_id}/trigger", json={"input_data": {}}
    )
    assert started.status_code in (200, 201, 202), started.text
    execution_id = started.json()["execution_id"]
    await run_steps(api, 4)
    with anyio.fail_after(10):
        while True:
            execution = (await api.get(f"/infra/workflows/executions/{execution_id}")).json()
            if execution["status"] == "completed":
                break
            await anyio.sleep(0.02)
    parent_id = await parent_of_three(api)
    await wait_deliveries(
        api,
        hook["id"],
        lambda found: bool(found) and all(d["status"] == "succeeded" for d in found),
    )
    return [
        "/infra/jobs",
        "/infra/workflows/blueprints",
        "/infra/workflows/executions",
        f"/infra/workflows/executions/{execution_id}/events",
        f"/infra/webhooks/{hook['id']}/deliveries",
        "/infra/workflows/schedules",
        f"/infra/workflows/executions?parent_execution_id={parent_id}",
    ]


async def parent_of_three(api: httpx.AsyncClient) -> str:
    """A running parent with three children that wait for a signal (no jobs); its id."""
    wait = {"id": "wait", "wait_for_signal": {"name": "go"}}
    child = await api.post("/infra/workflows/blueprints", json={"name": "kid", "steps": [wait]})
    assert child.status_code == 200, child.text
    sub = {"blueprint_id": child.json()["id"]}
    steps = [{"id": f"s{n}", "sub_workflow": sub} for n in range(3)]
    made = await api.post("/infra/workflows/blueprints", json={"name": "parent", "steps": steps})
    assert made.status_code == 200, made.text
    started = await api.post(
        f"/infra/workflows/blueprints/{made.json()['id']}/trigger", json={"input_data": {}}
    )
    assert started.status_code == 200, started.text
    parent_id: str = started.json()["execution_id"]
    with anyio.fail_after(10):
        while True:
            listed = await api.get(
                "/infra/workflows/executions", params={"parent_execution_id": parent_id}
            )
            if len(listed.json()["executions"]) == 3:
                return parent_id
            await anyio.sleep(0.02)


def _items(body: Json) -> list[Json]:
    [items] = [value for name, value in body.items() if name != "next_cursor"]
    # When a key was last used is the one thing that changes by reading the list.
    return [{k: v for k, v in item.items() if k != "last_used_at"} for item in items]


async def page_of(api: httpx.AsyncClient, path: str, cursor: str | None) -> httpx.Response:
    """One page of two items of the list at ``path`` (which may carry a query of its own)."""
    base, _, query = path.partition("?")
    params = {**dict(parse_qsl(query)), "limit": 2, **({"cursor": cursor} if cursor else {})}
    response = await api.get(base, params=params)
    assert response.status_code == 200, (path, response.text)
    return response


async def read_pages(api: httpx.AsyncClient, path: str) -> Pages:
    """Every page of a list, two items a page, with the cursor that follows each."""
    pages: Pages = []
    cursor = None
    while True:
        response = await page_of(api, path, cursor)
        cursor = response.json()["next_cursor"]
        pages.append((_items(response.json()), cursor))
        if cursor is None:
            return pages


async def same_pages(api: httpx.AsyncClient, path: str, pages: Pages) -> None:
    """The copy answers each page the same, reached with the original's cursors."""
    cursor = None
    for items, next_cursor in pages:
        response = await page_of(api, path, cursor)
        assert _items(response.json()) == items, path
        cursor = next_cursor


async def test_a_database_copied_to_postgres_and_back_answers_the_same(
    tmp_path: Path, server_process: StartServer, handler: Handler, cluster: str
) -> None:
    source = str(tmp_path / "source.db")
    key = create_key_sync(source, "pg", list(ALL_SCOPES)).key
    admin = create_key_sync(source, "ops", list(ALL_SCOPES), admin=True).key
    server = await start(server_process, source)
    async with client(server.url, key) as api:
        paths = await fill(api, handler)
        pages = {path: await read_pages(api, path) for path in paths}
    async with client(server.url, admin) as ops:
        pages["/admin/keys"] = await read_pages(ops, "/admin/keys")
    assert server.terminate() == 0
    assert len(pages["/infra/jobs"]) >= 5  # 9 jobs, two a page

    database = await anyio.to_thread.run_sync(postgres.create_database, cluster)
    there = counts(await db_copy(source, database))
    back = str(tmp_path / "back.db")
    again = counts(await db_copy(database, back))
    assert there == again
    assert all(source_rows == target_rows for source_rows, target_rows in there.values())
    assert there["jobs"][0] == 9 and there["api_keys"][0] == 2 and there["projects"][0] == 2
    assert there["workflow_schedules"][0] == 3
    for table in ("runs", "blueprints", "executions", "events", "usage", "webhooks"):
        assert there[table][0] > 0, table
    assert there["webhook_deliveries"][0] > 0 and there["meta"][0] >= 2  # the secrets

    for copied in (database, back):
        server = await start(server_process, copied)
        async with client(server.url, key) as api:
            for path in paths:
                await same_pages(api, path, pages[path])
            # New rows follow the copied ones (PostgreSQL's sequences were moved past them).
            new = await create(api, trigger={"type": "pull", "queue": "solo"})
            first = (await api.get("/infra/jobs", params={"limit": 1})).json()["jobs"]
            assert [job["id"] for job in first] == [new["id"]]
        async with client(server.url, admin) as ops:
            await same_pages(ops, "/admin/keys", pages["/admin/keys"])
        assert server.terminate() == 0


def test_a_target_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    source, target = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    create_key_sync(source, "one", list(ALL_SCOPES))
    assert counts(cli("db", "copy", "--from", source, "--to", target))["api_keys"] == (1, 1)
    again = cli("db", "copy", "--from", source, "--to", target)
    assert again.returncode == 1 and again.stdout == ""
    assert "not empty (projects: 1 rows)" in again.stderr, again.stderr
    same = cli("db", "copy", "--from", source, "--to", source)
    assert same.returncode == 1 and "the same database" in same.stderr


def test_a_postgres_target_that_is_not_empty_is_refused(tmp_path: Path, cluster: str) -> None:
    source = str(tmp_path / "a.db")
    create_key_sync(source, "one", list(ALL_SCOPES))
    database = postgres.create_database(cluster)
    assert counts(cli("db", "copy", "--from", source, "--to", database))["projects"] == (1, 1)
    again = cli("db", "copy", "--from", source, "--to", database)
    assert again.returncode == 1 and "not empty (projects: 1 rows)" in again.stderr


async def test_a_sqlite_source_in_use_is_refused(
    tmp_path: Path, server_process: StartServer
) -> None:
    source, target = str(tmp_path / "a.db"), tmp_path / "b.db"
    create_key_sync(source, "one", list(ALL_SCOPES))
    server = await start(server_process, source)
    done = await db_copy(source, str(target))
    assert done.returncode == 1, done.stdout
    assert "in use by a running flowyard server" in done.stderr
    assert not target.exists()
    assert server.terminate() == 0


async def test_a_postgres_source_in_use_is_refused(
    server_process: StartServer, cluster: str
) -> None:
    database = await anyio.to_thread.run_sync(postgres.create_database, cluster)
    target = await anyio.to_thread.run_sync(postgres.create_database, cluster)
    server = await start(server_process, database)
    done = await db_copy(database, target)
    assert done.returncode == 1, done.stdout
    assert "is in use: pg_stat_activity shows" in done.stderr, done.stderr
    assert server.terminate() == 0


def test_migrate_an_old_sqlite_file(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    with older_database(db, 3):
        pass
    done = cli("db", "migrate", "--db", db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"schema version 3 -> {len(MIGRATIONS)}")
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("SELECT count(*) FROM webhooks").fetchone()[0] == 0
        assert conn.execute("SELECT name FROM projects").fetchall() == [("old",)]
    again = cli("db", "migrate", "--db", db)
    assert again.stdout.strip().endswith(f"schema version {len(MIGRATIONS)}, nothing to apply")
    missing = cli("db", "migrate", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 1 and "no database at" in missing.stderr
    assert not (tmp_path / "none.db").exists()


def test_migrate_a_fresh_postgres_database(cluster: str) -> None:
    database = postgres.create_database(cluster)
    done = cli("db", "migrate", "--db", database)
    assert done.returncode == 0, done.stderr
    latest = len(postgres_schema.MIGRATIONS)
    assert done.stdout.strip().endswith(f"schema version 0 -> {latest}")
    again = cli("db", "migrate", "--db", database)
    assert again.stdout.strip().endswith(f"schema version {latest}, nothing to apply")


async def _filled(path: str) -> Database:
    """An open SQLite store with rows out of key order in tables of one and of several keys."""
    db = Database(path)
    await db.open()
    events = [(execution, seq, b"{}") for execution in ("x2", "x1") for seq in (3, 1, 2)]
    await db.insert_rows("events", ("execution_id", "seq", "doc"), events)
    usage = [("p", day, family, 1, 2) for day in (2, 1) for family in ("b", "a", "c")]
    await db.insert_rows("usage", ("project_id", "day", "family", "calls", "nanos"), usage)
    # One text holds a NUL, which PostgreSQL's text cannot hold as it is: it must come back.
    runs = [
        (seq, f"run_{seq}", "job\x00x" if seq == 9 else "job", b"{}") for seq in (12, 5, 9, 30, 7)
    ]
    await db.insert_rows("runs", ("seq", "id", "job_id", "doc"), runs)
    signals = [
        ("x1", seq, f"wfsig_{seq}", "go", f"k{seq}" if seq > 1 else None, b"[1]", taker, 0, 5)
        for seq, taker in ((2, None), (1, "w"))
    ]
    columns = next(t.columns for t in copy.TABLES if t.name == "signals")
    await db.insert_rows("signals", columns, signals)
    return db


async def _same_tables(one: Store, other: Store) -> None:
    for table in copy.TABLES:
        columns, order = ", ".join(table.columns), ", ".join(table.key)
        read = f"SELECT {columns} FROM {table.name} ORDER BY {order}"
        assert await one.fetchall(read) == await other.fetchall(read), table.name


async def test_tables_are_copied_a_chunk_at_a_time_in_key_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copy, "CHUNK", 2)
    source = await _filled(str(tmp_path / "a.db"))
    target = Database(str(tmp_path / "b.db"))
    await target.open()
    try:
        found = await copy.copy_store(source, target)
        assert copy.differ(found) is None
        assert {c.table: c.target for c in found if c.target} == {
            "events": 6,
            "usage": 6,
            "runs": 5,
            "signals": 2,
            "meta": 1,
        }
        await _same_tables(source, target)
        with pytest.raises(copy.CopyRefused, match="not empty"):
            await copy.copy_store(source, target)
    finally:
        await source.close()
        await target.close()


async def test_chunks_through_postgres_and_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: str
) -> None:
    from flowyard.storage.postgres import PostgresDatabase

    monkeypatch.setattr(copy, "CHUNK", 2)
    source = await _filled(str(tmp_path / "a.db"))
    middle = PostgresDatabase(await anyio.to_thread.run_sync(postgres.create_database, cluster))
    back = Database(str(tmp_path / "c.db"))
    await middle.open()
    await back.open()
    try:
        assert copy.differ(await copy.copy_store(source, middle)) is None
        assert copy.differ(await copy.copy_store(middle, back)) is None
        await _same_tables(source, middle)
        await _same_tables(source, back)
        next_seq = await middle.fetchone("SELECT nextval(pg_get_serial_sequence('runs', 'seq'))")
        assert next_seq == (31,)
    finally:
        for store in (source, middle, back):
            await store.close()
