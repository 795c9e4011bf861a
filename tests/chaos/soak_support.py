"""The short soak the test suite runs, and ways to damage its file so the checks must object."""

import json
import os
import random
import shutil
import sqlite3
from pathlib import Path

from bench.chaos import GRAPH, Outcome, report, soak
from bench.chaos_checks import Violations, check_all
from bench.chaos_load import Settings


def short_soak(workdir: Path) -> Outcome:
    """Five kills in about half a minute (``FLOWYARD_CHAOS_SEED`` replays a seed's choices)."""
    seed = int(os.environ.get("FLOWYARD_CHAOS_SEED") or random.randrange(2**31))
    settings = Settings(
        cycles=5,
        seconds_per_cycle=4.0,
        seed=seed,
        triggers_per_second=20.0,
        jobs_per_second=4.0,
        quiesce_timeout=60.0,
        workdir=workdir,
    )
    return soak(settings)


def describe(outcome: Outcome) -> str:
    """The figures and every violation, for an assertion message."""
    return f"{json.dumps(outcome.figures)}\n{report(outcome.violations)}"


def damaged_copy(outcome: Outcome, workdir: Path) -> str:
    """A copy of the soak's file with four kinds of damage a crash could do.

    One confirmed execution is gone, a completed one claims to have failed, one step attempt
    gets a second job, and one completed ack is rolled back to a running job.
    """
    db = str(workdir / "damaged.db")
    shutil.copyfile(outcome.db, db)
    conn = sqlite3.connect(db)
    try:
        lost_id, _ = next(iter(outcome.ledger.triggers.values()))
        conn.execute("DELETE FROM executions WHERE id = ?", (lost_id,))
        conn.execute(
            "UPDATE executions SET doc = json_set(doc, '$.status', 'failed')"
            " WHERE id = (SELECT id FROM executions WHERE status = 'completed' LIMIT 1)"
        )
        conn.execute(
            "INSERT INTO jobs (id, project_id, status, trigger_type, queue, doc)"
            " SELECT 'job_copy', project_id, status, trigger_type, queue,"
            " json_set(doc, '$.id', 'job_copy') FROM jobs"
            " WHERE json_extract(doc, '$.workflow') IS NOT NULL LIMIT 1"
        )
        acked = next(a.job_id for a in outcome.ledger.acks if a.status == "completed")
        conn.execute(
            "UPDATE jobs SET status = 'running', doc = json_set(doc, '$.status', 'running')"
            " WHERE id = ?",
            (acked,),
        )
        conn.commit()
    finally:
        conn.close()
    return db


def check_copy(outcome: Outcome, db: str) -> Violations:
    """The soak's checks run on another file, against the same acknowledgements."""
    violations, _ = check_all(db, outcome.project_id, GRAPH, outcome.ledger, outcome.handler_url)
    return violations
