"""The writer: a group commit as one SQLite statement, and the writer thread around it.

Real SQLite files in a temporary directory; the schema is the service's own.
"""

import sqlite3
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from flowyard.errors import Unavailable
from flowyard.storage import writer as writer_module
from flowyard.storage.intents import Intent, PutBlueprint, PutQueue
from flowyard.storage.jobs import QueueSettings
from flowyard.storage.sqlite import Database
from flowyard.storage.workflows import Blueprint
from flowyard.storage.writer import WIDTH, Writer

PUT = (
    "INSERT INTO meta (key, value) VALUES (?, ?)"
    " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
APPEND = "UPDATE meta SET value = value || ? WHERE key = ?"


def put(name: str, handler: str) -> PutQueue:
    """A write the service makes, of a row the tests can read back (``queues``)."""
    return PutQueue("proj_t", name, QueueSettings(handler=handler))


BLUEPRINT = Blueprint(id="wf_t", project_id="proj_t", name="t", steps=[])


def queues(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        sql = "SELECT name, json_extract(CAST(doc AS TEXT), '$.handler') FROM queues"
        return dict(conn.execute(sql).fetchall())


def rows(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 't%'").fetchall())


def test_a_group_commit_is_one_statement_and_keeps_the_order_of_its_writes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.db"
    writer = Writer.open(str(db), "full")
    statements: list[str] = []
    writer.conn.set_trace_callback(statements.append)
    # The same row written, changed and written again: only the order gives "c!".
    writer.write(
        [(PUT, ("t1", "a")), (PUT, ("t2", "x")), (PUT, ("t1", "c")), (APPEND, ("!", "t1"))]
    )
    writer.close()
    assert rows(db) == {"t1": "c!", "t2": "x"}
    # SQLite traces the statement again for each trigger it fires: count distinct ones.
    ran = {s for s in statements if not s.startswith("CREATE TEMP TRIGGER")}
    assert len(ran) == 1 and ran.pop().startswith("INSERT INTO temp.writes SELECT")


def test_padding_rows_reach_no_trigger(tmp_path: Path) -> None:
    writer = Writer.open(str(tmp_path / "w.db"), "full")
    writer.write([(PUT, ("t0", "a"))])  # its trigger is installed
    traced: list[str] = []
    writer.conn.set_trace_callback(traced.append)
    writer.write([(PUT, (f"t{n}", "a")) for n in range(1, 4)])  # 3 rows, room for 4
    padded = len(traced) - 1  # the statement, then what the triggers traced
    traced.clear()
    writer.write([(PUT, (f"t{n}", "a")) for n in range(4, 8)])  # 4 rows, no padding
    full = len(traced) - 1
    writer.close()
    assert padded * 4 == full * 3


def test_a_failing_write_leaves_nothing_of_its_group(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    writer = Writer.open(str(db), "full")
    with pytest.raises(sqlite3.IntegrityError):
        writer.write(
            [
                (PUT, ("t1", "a")),
                ("INSERT INTO meta (key, value) VALUES (?, ?)", ("t1", "again")),
            ]
        )
    writer.write([(PUT, ("t2", "b"))])  # the connection is usable afterwards
    writer.close()
    assert rows(db) == {"t2": "b"}


def test_more_writes_than_one_statement_holds_are_still_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAX_ROWS", 3)
    db = tmp_path / "w.db"
    writer = Writer.open(str(db), "full")
    writer.write([(PUT, (f"t{i}", str(i))) for i in range(7)])
    assert rows(db) == {f"t{i}": str(i) for i in range(7)}
    bad = [(PUT, (f"t{i}", "new")) for i in range(7)]
    bad.append(("INSERT INTO meta (key, value) VALUES (?, ?)", ("t0", "clash")))
    with pytest.raises(sqlite3.IntegrityError):
        writer.write(bad)  # the failure is in the third statement: the first two roll back
    assert not writer.conn.in_transaction
    writer.close()
    assert rows(db) == {f"t{i}": str(i) for i in range(7)}


def test_question_marks_inside_literals_are_not_parameters(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    writer = Writer.open(str(db), "full")
    writer.write([("INSERT INTO meta (key, value) VALUES ('t?', ?)", ("why?",))])
    writer.close()
    assert rows(db) == {"t?": "why?"}


def test_numbered_parameters_and_statements_that_share_them(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    writer = Writer.open(str(db), "full")
    both = f"{PUT.replace('(?, ?)', '(?1, ?2)')}; UPDATE meta SET value = ?2 || ?3 WHERE key = ?4"
    writer.write([(both, ("t1", "a", "b", "t1")), (both, ("t2", "c", "d", "t1"))])
    writer.close()
    assert rows(db) == {"t1": "cd", "t2": "c"}


def test_wrong_parameter_counts_are_refused(tmp_path: Path) -> None:
    writer = Writer.open(str(tmp_path / "w.db"), "full")
    with pytest.raises(sqlite3.ProgrammingError):
        writer.write([(PUT, ("t1",))])
    wide = "INSERT INTO meta (key, value) VALUES (?, ?)" + " AND ?" * (WIDTH - 1)
    with pytest.raises(ValueError, match="parameters"):
        writer.write([(wide, tuple(range(WIDTH + 1)))])
    writer.close()


async def test_the_writer_thread_isolates_a_bad_write_from_its_neighbours(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "w.db"))
    await db.open()
    async with anyio.create_task_group() as tg:
        await tg.start(db.run_writer)
        await db.commit([PutBlueprint(BLUEPRINT)])
        outcomes: dict[str, BaseException | None] = {}

        async def commit(name: str, intents: list[Intent]) -> None:
            try:
                await db.commit(intents)
                outcomes[name] = None
            except Unavailable as exc:
                outcomes[name] = exc

        async with anyio.create_task_group() as writers:  # queued together: one batch
            writers.start_soon(commit, "good", [put("t1", "a")])
            writers.start_soon(commit, "bad", [put("t1", "b"), PutBlueprint(BLUEPRINT)])
            writers.start_soon(commit, "also good", [put("t2", "c")])
        db.close_writer()
    await db.close()
    assert outcomes["good"] is None and outcomes["also good"] is None
    assert isinstance(outcomes["bad"], Unavailable)
    assert queues(tmp_path / "w.db") == {"t1": "a", "t2": "c"}


async def test_closing_the_writer_commits_what_is_queued_and_refuses_more(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "w.db"))
    await db.open()
    async with anyio.create_task_group() as tg:
        await tg.start(db.run_writer)
        requests = [db.submit([put(f"t{i}", "v")]) for i in range(50)]
        db.close_writer()
        with pytest.raises(Unavailable):
            db.submit([put("late", "v")])
    for request in requests:
        await request.done
        assert request.error is None
    await db.close()
    assert len(queues(tmp_path / "w.db")) == 50


async def test_a_cancelled_caller_still_waits_for_its_queued_write(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "w.db"))
    await db.open()
    finished_after_commit: list[bool] = []
    async with anyio.create_task_group() as tg:
        await tg.start(db.run_writer)

        async def commit_then_note() -> None:
            try:
                await db.commit([put("t1", "kept")])
            finally:  # cancelled or not, the write was done by the time the wait ended
                finished_after_commit.append(queues(tmp_path / "w.db") == {"t1": "kept"})

        async with anyio.create_task_group() as callers:
            callers.start_soon(commit_then_note)
            await anyio.lowlevel.checkpoint()  # the write is queued
            callers.cancel_scope.cancel()
        db.close_writer()
    await db.close()
    assert finished_after_commit == [True]


def test_rare_statements_run_on_their_own_in_order_within_the_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAX_ROWS", 2)
    db = tmp_path / "w.db"
    writer = Writer.open(str(db), "full", frequent={PUT})
    traced: list[str] = []
    writer.conn.set_trace_callback(traced.append)
    # Only the order gives "c!?": the rare APPENDs sit between the frequent PUTs.
    ops = [(PUT, ("t1", "a")), (APPEND, ("!", "t1")), (PUT, ("t1", "c"))]
    ops += [(PUT, ("t2", "x")), (PUT, ("t3", "y")), (APPEND, ("!", "t1")), (APPEND, ("?", "t1"))]
    writer.write(ops)
    assert rows(db) == {"t1": "c!?", "t2": "x", "t3": "y"}
    triggers = [s for s in traced if s.startswith("CREATE TEMP TRIGGER")]
    assert len(triggers) == 1 and "INSERT INTO meta" in triggers[0]  # none for APPEND
    traced.clear()
    writer.write([(PUT, ("t2", "z"))])  # frequent statements alone: one statement, no BEGIN
    assert [s for s in traced if not s.startswith("INSERT INTO meta")] == [
        s for s in traced if s.startswith("INSERT INTO temp.writes")
    ]
    # A rare statement failing rolls back its whole group, frequent rows included.
    clash = ("INSERT INTO meta (key, value) VALUES (?, ?)", ("t3", "clash"))
    with pytest.raises(sqlite3.IntegrityError):
        writer.write([(PUT, ("t4", "w")), (APPEND, ("!", "t2")), clash, (PUT, ("t5", "v"))])
    assert not writer.conn.in_transaction
    writer.close()
    assert rows(db) == {"t1": "c!?", "t2": "z", "t3": "y"}
