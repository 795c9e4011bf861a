"""Listing an execution's children (``?parent_execution_id=``) by the indexed ``parent_id``
column: full pages across cursors, never a client's execution whose key looks like a child's,
and an older database's children backfilled by its migration (SQLite and PostgreSQL)."""

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from bench import postgres

from flowyard.ids import new_id
from flowyard.storage import postgres_schema
from flowyard.storage.codec import encode
from flowyard.storage.migrations import MIGRATIONS
from flowyard.workflows.children import child_key
from flowyard.workflows.state import ExecutionState, ExecutionStatus, ParentRef
from tests.conftest import Service, running_service
from tests.schema_support import older_database
from tests.workflow_support import create_blueprint, pull_step, step_of, trigger, wait_execution

Json = dict[str, Any]
EXECUTIONS = "/infra/workflows/executions"
CHILDREN = 5


async def pages(client: httpx.AsyncClient, parent_id: str, limit: int) -> list[list[str]]:
    """The ids of every page of the parent's children, ``limit`` a page, newest first."""
    found: list[list[str]] = []
    cursor = None
    while True:
        params: Json = {"parent_execution_id": parent_id, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(EXECUTIONS, params=params)
        assert response.status_code == 200, response.text
        found.append([item["id"] for item in response.json()["executions"]])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


async def parent_with_children(client: httpx.AsyncClient) -> tuple[str, str, list[str]]:
    """A parent whose :data:`CHILDREN` sub_workflow steps each started a child that waits on
    a queue nobody claims; (parent id, child blueprint id, child ids)."""
    child_bp = await create_blueprint(client, [pull_step("work", "kids")], name="kid")
    steps = [{"id": f"s{n}", "sub_workflow": {"blueprint_id": child_bp["id"]}} for n in range(5)]
    parent_bp = await create_blueprint(client, steps, name="parent")
    parent_id = (await trigger(client, parent_bp["id"]))["execution_id"]
    state = await wait_execution(
        client,
        parent_id,
        lambda s: all(step_of(s, f"s{n}")["child_execution_id"] for n in range(CHILDREN)),
    )
    kids = [step_of(state, f"s{n}")["child_execution_id"] for n in range(CHILDREN)]
    return parent_id, child_bp["id"], kids


async def test_pages_of_children_are_full_and_hold_each_child_once(service: Service) -> None:
    client = service.client
    parent_id, child_bp, kids = await parent_with_children(client)
    # A client's own execution of the same blueprint, newest of all, keyed like a child.
    lookalike = child_key(parent_id, "s9", 1)
    own = (await trigger(client, child_bp, idempotency_key=lookalike))["execution_id"]
    for limit in (1, 2, 3, CHILDREN, 100):
        found = await pages(client, parent_id, limit)
        assert all(len(page) == limit for page in found[:-1]), (limit, found)
        assert 0 < len(found[-1]) <= limit
        listed = [item for page in found for item in page]
        assert sorted(listed) == sorted(kids) and own not in listed, limit
    everything = (await client.get(EXECUTIONS, params={"limit": 100})).json()["executions"]
    assert own in {item["id"] for item in everything}
    for kid in kids:
        assert await pages(client, kid, 2) == [[]]


def _state(project_id: str, parent: str | None, key: str | None = None) -> ExecutionState:
    return ExecutionState(
        id=new_id("wfexec"),
        project_id=project_id,
        blueprint_id="wf_gone",
        status=ExecutionStatus.COMPLETED,
        idempotency_key=key,
        parent=ParentRef(parent, "s", 1) if parent is not None else None,
    )


def _rows(project_id: str) -> tuple[str, list[str], list[ExecutionState]]:
    """A parent, its three children, and a client's execution keyed like a child."""
    parent = _state(project_id, None)
    kids = [_state(project_id, parent.id, child_key(parent.id, "s", n)) for n in range(3)]
    lookalike = _state(project_id, None, child_key(parent.id, "x", 1))
    return parent.id, [kid.id for kid in kids], [parent, *kids, lookalike]


def _insert(state: ExecutionState) -> tuple[Any, ...]:
    return (
        state.id,
        state.project_id,
        state.blueprint_id,
        state.status.value,
        0,
        state.idempotency_key,
        bytes(encode(state)),
    )


INSERT = (
    "INSERT INTO executions (id, project_id, blueprint_id, status, active, idempotency_key, doc)"
    " VALUES ({})"
)


async def test_an_older_sqlite_database_has_its_children_backfilled(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    with older_database(db, 9) as (conn, project, key):
        parent_id, kids, states = _rows(project.id)
        conn.executemany(INSERT.format(", ".join("?" * 7)), [_insert(s) for s in states])
    async with running_service(tmp_path, db=db) as service, service.client_for(key) as client:
        found = await pages(client, parent_id, 2)
    assert [len(page) for page in found] == [2, 1]
    assert sorted(item for page in found for item in page) == sorted(kids)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        rows = dict(conn.execute("SELECT id, parent_id FROM executions").fetchall())
        plan = " ".join(
            row[-1]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT seq, doc FROM executions"
                " WHERE parent_id = ? AND project_id = ? ORDER BY seq DESC LIMIT ?",
                (parent_id, project.id, 3),
            )
        )
    assert rows == {s.id: s.parent.execution_id if s.parent else None for s in states}
    assert "executions_by_parent" in plan, plan


@pytest.fixture
def cluster() -> Iterator[str]:
    try:
        with postgres.postgres_cluster() as url:
            yield url
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))


async def test_an_older_postgres_database_has_its_children_backfilled(cluster: str) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    url = await anyio.to_thread.run_sync(postgres.create_database, cluster)
    conn = await asyncpg.connect(str(url))
    try:
        with anyio.fail_after(60):
            async with conn.transaction():
                for script in postgres_schema.MIGRATIONS[:4]:
                    await conn.execute(script)
                await conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '4')")
            parent_id, kids, states = _rows("proj_old")
            await conn.executemany(
                INSERT.format(", ".join(f"${n}" for n in range(1, 8))),
                [_insert(s) for s in states],
            )
            assert await postgres_schema.migrate(conn) == len(postgres_schema.MIGRATIONS)
            rows = dict(await conn.fetch("SELECT id, parent_id FROM executions"))
            listed = await conn.fetch(
                "SELECT id FROM executions WHERE parent_id = $1 ORDER BY seq DESC", parent_id
            )
    finally:
        await conn.close()
    assert rows == {s.id: s.parent.execution_id if s.parent else None for s in states}
    assert [row["id"] for row in listed] == kids[::-1]
