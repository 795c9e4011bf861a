"""The short soak the test suite runs, and ways to damage its file so the checks must object."""

import dataclasses
import json
import os
import random
import shutil
import sqlite3
import time
from pathlib import Path

import orjson
from bench.chaos import GRAPH, Outcome, report, soak
from bench.chaos_checks import Violations, check_all
from bench.chaos_load import Settings
from bench.chaos_webhooks import Deliveries, check_webhooks, read_stored

from flowyard.signing import signature_header


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


def damaged_deliveries(outcome: Outcome) -> Deliveries:
    """The receiver's records with three kinds of damage a broken outbox could do.

    One ``jobs.completed`` event never arrived, one execution's end came as a second event of
    its own, and one delivery's body was altered after it was signed.
    """
    rows = [list(row) for row in outcome.deliveries.rows]
    topics = [row[3] for row in rows]
    lost = rows[topics.index("jobs.completed")][1]
    rows = [row for row in rows if row[1] != lost]
    ended = next(row for row in rows if row[3] == "workflows.execution.completed")
    body = orjson.loads(ended[5]) | {"id": "evt_second_end"}
    data = orjson.dumps(body)
    arrival = time.time()
    signature = signature_header(outcome.deliveries.secret, data, int(arrival))
    rows.append([arrival, "evt_second_end", "dlv_second_end", ended[3], signature, data.decode()])
    altered = rows[0]
    altered[5] = altered[5].replace('"data":{', '"data":{"altered":true,', 1)
    return dataclasses.replace(outcome.deliveries, rows=rows)


def check_copy(outcome: Outcome, db: str, deliveries: Deliveries | None = None) -> Violations:
    """The soak's checks run on another file and receiver records, against the same
    acknowledgements."""
    violations, snapshot = check_all(
        db, outcome.project_id, GRAPH, outcome.ledger, outcome.handler_url
    )
    deliveries = dataclasses.replace(deliveries or outcome.deliveries)
    read_stored(db, deliveries)
    check_webhooks(snapshot, deliveries, violations)
    return violations
