"""The benchmarks' reads of stored documents: records written without their default fields
read back with them, so the soak's checks see every field."""

import sqlite3
from pathlib import Path

from bench.db_reads import document, fetch, record

from flowyard.jobs.model import Job, PullQueue, Run
from flowyard.storage.codec import encode
from flowyard.workflows.state import (
    ExecutionState,
    ExecutionStatus,
    Failure,
    ItemState,
    StepState,
    StepStatus,
)


def _stored(tmp_path: Path, *docs: bytes | str) -> list[bytes | str]:
    db = str(tmp_path / "t.db")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (n INTEGER, doc BLOB)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(docs)))
    return [raw for (raw,) in fetch(db, "SELECT doc FROM t ORDER BY n")]


def test_an_execution_stored_without_its_defaults_reads_with_them(tmp_path: Path) -> None:
    failure = Failure("A", "step_failed", "boom", "job_1", 1)
    state = ExecutionState(
        id="exe_1",
        project_id="prj_1",
        blueprint_id="bp_1",
        steps={
            "A": StepState(step_id="A", status=StepStatus.FAILED, attempt=1, caught_by="C"),
            "B": StepState(step_id="B"),
            "C": StepState(step_id="C", status=StepStatus.COMPLETED, failure=failure),
        },
    )
    (raw,) = _stored(tmp_path, bytes(encode(state)))
    assert "status" not in document(raw)
    assert "attempt" not in document(raw)["steps"]["B"]

    doc = record(raw, ExecutionState)
    assert doc["status"] == "running"
    assert doc["max_duration_ms"] == 86_400_000
    assert doc["parent"] is None
    assert doc["steps"]["B"] == {
        "step_id": "B",
        "status": "pending",
        "job_id": None,
        "attempt": 0,
        "output": None,
        "error": None,
        "started_at": None,
        "completed_at": None,
        "caught_by": None,
        "failure": None,
        "skip_reason": None,
        "signal": None,
        "signal_id": None,
        "child_execution_id": None,
        "items": None,
    }
    assert doc["steps"]["A"]["status"] == "failed"
    assert doc["steps"]["A"]["caught_by"] == "C"
    assert doc["steps"]["C"]["failure"]["item_index"] is None


def test_written_fields_are_read_as_they_are(tmp_path: Path) -> None:
    completed = ExecutionState(
        id="exe_1", project_id="prj_1", blueprint_id="bp_1", status=ExecutionStatus.COMPLETED
    )
    damaged = '{"id":"exe_2","status":"nonsense","steps":{"A":{"status":7}}}'
    raw_completed, raw_damaged = _stored(tmp_path, bytes(encode(completed)), damaged)
    assert record(raw_completed, ExecutionState)["status"] == "completed"
    doc = record(raw_damaged, ExecutionState)
    assert doc["status"] == "nonsense"
    assert doc["steps"]["A"]["status"] == 7
    assert doc["steps"]["A"]["attempt"] == 0
    assert record(None, ExecutionState) is None


def test_an_item_reads_with_its_defaults(tmp_path: Path) -> None:
    (raw,) = _stored(tmp_path, bytes(encode(ItemState(index=3))))
    assert document(raw) == {"index": 3}
    assert record(raw, ItemState)["status"] == "pending"


def test_a_job_and_its_run_read_with_their_defaults(tmp_path: Path) -> None:
    job = Job(id="job_1", project_id="prj_1", trigger=PullQueue(queue="q"), created_at=5)
    run = Run(id="run_1", job_id="job_1", attempt=1, scheduled_at=None, started_at=6)
    job_raw, run_raw = _stored(tmp_path, bytes(encode(job)), bytes(encode(run)))
    assert "status" not in document(job_raw) and "status" not in document(run_raw)
    read = record(job_raw, Job)
    assert read["status"] == "pending" and read["payload"] is None and read["result"] is None
    assert read["workflow"] is None and read["max_attempts"] == 3
    assert record(run_raw, Run)["status"] == "running"
