"""Every write intent has statements in the SQLite adapter, and they do what they say."""

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import get_args

import msgspec

from flowyard.ids import new_id
from flowyard.jobs.model import Job, PullQueue
from flowyard.storage.codec import encode
from flowyard.storage.intents import Intent, PutJob, SetBalance, Spend
from flowyard.storage.migrations import migrate_sync
from flowyard.storage.projects import new_project
from flowyard.storage.sqlite_statements import _STATEMENTS, all_statements, execute
from flowyard.storage.workflows import put_events
from flowyard.workflows.state import Event


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


def test_a_transitions_events_are_stored_each_as_the_encoder_wrote_it(tmp_path: Path) -> None:
    events = [
        Event(type="step.started", at=1, step_id="a"),
        Event(type="step.failed", at=2, step_id="a", data={"error": 'quote " \\ \u00e9 \n'}),
        Event(type="execution.completed", at=3, data={"n": 1.5, "big": 2**60, "x": [1, None]}),
    ]
    with closing(sqlite3.connect(tmp_path / "e.db")) as conn:
        migrate_sync(conn)
        assert len(all_statements([put_events("ex_1", 4, events)])) == 1  # one statement
        execute(conn, put_events("ex_1", 4, events))
        execute(conn, put_events("ex_1", 7, events[:1]))
        execute(conn, put_events("ex_1", 8, []))
        rows = conn.execute(
            "SELECT seq, typeof(doc), doc FROM events WHERE execution_id = 'ex_1' ORDER BY seq"
        ).fetchall()
    stored = [*events, events[0]]
    assert rows == [(4 + n, "blob", encode(event)) for n, event in enumerate(stored)]
