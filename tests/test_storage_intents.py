"""Every write intent has statements in the SQLite adapter, and they do what they say."""

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import get_args

import msgspec

from flowyard.ids import new_id
from flowyard.jobs.model import Job, PullQueue, Run, RunStatus
from flowyard.storage.codec import encode
from flowyard.storage.intents import Intent, PutJob, PutRun, SetBalance, Spend
from flowyard.storage.migrations import migrate_sync
from flowyard.storage.projects import new_project
from flowyard.storage.sqlite_statements import _STATEMENTS, FREQUENT, all_statements, execute
from flowyard.storage.workflows import put_events, put_execution
from flowyard.storage.writer import Writer
from flowyard.workflows.state import Event, ExecutionState


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


def test_an_execution_and_the_events_of_its_transition_are_one_write(tmp_path: Path) -> None:
    state = ExecutionState(id="ex_2", project_id="prj_1", blueprint_id="bp_1", steps={})
    events = [Event(type="execution.started", at=1), Event(type="x", at=2, data={"k": "\u2603"})]
    ops = all_statements([put_execution(state), put_events("ex_2", 1, events)])
    assert len(ops) == 1
    path = tmp_path / "x.db"
    writer = Writer.open(str(path), "full")
    writer.write([*ops, *all_statements([put_execution(state), put_events("ex_2", 3, events)])])
    writer.write(all_statements([put_execution(state), put_events("other", 5, events[:1])]))
    writer.close()
    with closing(sqlite3.connect(path)) as conn:
        docs = conn.execute("SELECT doc FROM executions").fetchall()
        rows = conn.execute("SELECT execution_id, seq, doc FROM events ORDER BY seq").fetchall()
    assert docs == [(encode(state),)]
    expected = [("ex_2", 1 + n, encode(e)) for n, e in enumerate([*events, *events])]
    assert rows == [*expected, ("other", 5, encode(events[0]))]


def test_runs_ride_in_the_rows_of_their_jobs_and_keep_their_order(tmp_path: Path) -> None:
    jobs = [Job(id=new_id("job"), project_id="prj_1", trigger=PullQueue(queue="q")) for _ in "ab"]
    started = [
        Run(id=new_id("run"), job_id=job.id, attempt=1, scheduled_at=None, started_at=1)
        for job in jobs
    ]
    finished = msgspec.structs.replace(started[0], status=RunStatus.COMPLETED, completed_at=2)
    intents: list[Intent] = [
        PutRun(finished),  # no job row before it: a row of its own (then overwritten)
        *(PutJob(job) for job in jobs),
        *(PutRun(run) for run in started),
        PutRun(finished),  # its job's row already carries a run: after it, in order
    ]
    ops = all_statements(intents)
    assert len(ops) == 4
    path = tmp_path / "r.db"
    writer = Writer.open(str(path), "full")
    writer.write(ops)
    writer.close()
    with closing(sqlite3.connect(path)) as conn:
        stored_jobs = conn.execute("SELECT id FROM jobs ORDER BY seq").fetchall()
        runs = dict(conn.execute("SELECT id, doc FROM runs").fetchall())
        owners = dict(conn.execute("SELECT id, job_id FROM runs").fetchall())
    assert stored_jobs == [(job.id,) for job in jobs]
    assert runs == {started[0].id: encode(finished), started[1].id: encode(started[1])}
    assert owners == {run.id: run.job_id for run in started}


def test_absent_keys_and_parents_are_stored_as_null(tmp_path: Path) -> None:
    job = Job(id=new_id("job"), project_id="prj_1", trigger=PullQueue(queue="q"))
    keyed = msgspec.structs.replace(job, id=new_id("job"), idempotency_key="k")
    state = ExecutionState(id="ex_3", project_id="prj_1", blueprint_id="bp_1", steps={})
    intents: list[Intent] = [PutJob(job), PutJob(keyed), put_execution(state)]
    sql = (
        "SELECT * FROM (SELECT typeof(idempotency_key), NULL FROM jobs ORDER BY seq)"
        " UNION ALL SELECT typeof(idempotency_key), typeof(parent_id) FROM executions"
    )
    expected = [("null", None), ("text", None), ("null", "null")]
    path = tmp_path / "n.db"
    writer = Writer.open(str(path), "full", frequent=FREQUENT)
    writer.write(all_statements(intents))
    writer.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute(sql).fetchall() == expected
    with closing(sqlite3.connect(tmp_path / "plain.db")) as conn:
        migrate_sync(conn)
        for intent in intents:
            execute(conn, intent)
        assert conn.execute(sql).fetchall() == expected
