"""Every write intent has statements in the SQLite adapter, and they do what they say."""

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import get_args

import msgspec

from flowyard.ids import new_id
from flowyard.jobs.model import Job, PullQueue
from flowyard.storage.intents import Intent, PutJob, SetBalance, Spend
from flowyard.storage.migrations import migrate_sync
from flowyard.storage.projects import new_project
from flowyard.storage.sqlite_statements import _STATEMENTS, all_statements, execute


def test_every_intent_has_sqlite_statements() -> None:
    kinds = get_args(Intent)
    assert len(kinds) == len(set(kinds)) > 20
    assert set(kinds) == set(_STATEMENTS)


def test_intents_carried_out_on_a_file_in_order(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "i.db")) as conn:
        migrate_sync(conn)
        project, insert = new_project("p")
        job = Job(id=new_id("job"), project_id=project.id, trigger=PullQueue(queue="q"))
        intents: list[Intent] = [
            insert,
            SetBalance(project.id, 1_000),
            Spend(project.id, 300),
            Spend(project.id, 5_000),  # never below zero
            PutJob(job),
        ]
        for sql, params in all_statements(intents):
            conn.execute(sql, params)
        spent = conn.execute("SELECT token_balance FROM projects").fetchone()
        assert execute(conn, SetBalance(project.id, 7)) == 1
        balance = conn.execute("SELECT token_balance FROM projects").fetchone()
        status, doc = conn.execute("SELECT status, doc FROM jobs").fetchone()
    assert spent == (0,) and balance == (7,)
    assert status == "pending" and msgspec.json.decode(doc, type=Job) == job
