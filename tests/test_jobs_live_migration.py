"""A database from before the live jobs' index was redefined (schema 10) opens on the current
schema: the index is rebuilt with comparisons, and its jobs come back as they were."""

import sqlite3
from contextlib import closing
from pathlib import Path

from flowyard.storage.migrations import MIGRATIONS
from tests.conftest import running_service
from tests.test_crash import ack, claim, create, get

SCHEMA10_INDEX = (
    "CREATE INDEX jobs_live ON jobs(status) WHERE status IN ('pending', 'running', 'scheduled')"
)


def _index_sql(db: str) -> str:
    with closing(sqlite3.connect(db)) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_live'").fetchone()
    return str(sql)


def _back_to_schema10(db: str) -> None:
    """What schema 10 held: the same tables, the live jobs' index with an IN list."""
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript(
            f"BEGIN; DROP INDEX jobs_live; {SCHEMA10_INDEX}; PRAGMA user_version = 10; COMMIT;"
        )


async def test_a_schema10_database_rebuilds_the_live_index_and_keeps_its_jobs(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "v10.db")
    async with running_service(tmp_path, db=db) as service:
        api = service.client
        done = await create(api, trigger={"type": "pull", "queue": "q"}, payload={"n": 1})
        [claimed] = await claim(api, "q")
        assert (await ack(api, claimed, {"r": 1})).status_code == 200
        pending = await create(api, trigger={"type": "pull", "queue": "q"}, payload={"n": 2})
        key = service.key
    _back_to_schema10(db)
    assert "IN (" in _index_sql(db)

    async with running_service(tmp_path, db=db) as service, service.client_for(key) as api:
        assert (await get(api, done["id"]))["status"] == "completed"
        [again] = await claim(api, "q")
        assert again["id"] == pending["id"]
        assert (await ack(api, again, {"r": 2})).status_code == 200
        assert (await get(api, pending["id"]))["status"] == "completed"

    with closing(sqlite3.connect(db)) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        live = conn.execute(
            "SELECT id FROM jobs INDEXED BY jobs_live"
            " WHERE status = 'pending' OR status = 'running' OR status = 'scheduled'"
        ).fetchall()
    assert version == len(MIGRATIONS) == 11
    assert "status = 'pending' OR status = 'running' OR status = 'scheduled'" in _index_sql(db)
    assert live == []
