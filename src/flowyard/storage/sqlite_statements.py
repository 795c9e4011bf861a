"""The SQLite adapter's statements: each write intent as the ``?`` statements that carry it out.

``Database.submit`` turns a caller's intents into statements when they are handed over (the
records are encoded then), and the writer thread runs every waiting caller's statements as one
transaction.
"""

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from flowyard.storage.codec import encode
from flowyard.storage.intents import (
    AddUsage,
    ArchiveBlueprint,
    DeleteSchedule,
    DeleteWebhook,
    InsertDelivery,
    InsertSignal,
    Intent,
    PutBlueprint,
    PutEvents,
    PutExecution,
    PutItem,
    PutJob,
    PutKey,
    PutProject,
    PutQueue,
    PutRun,
    PutSchedule,
    PutWebhook,
    RevokeKey,
    SetBalance,
    SetRate,
    SetServerSecret,
    SetSigningSecret,
    Spend,
    TakeSignal,
    TouchKey,
    UpdateDelivery,
    writers,
)
from flowyard.storage.writer import NULL_VALUE

Op = tuple[str, Sequence[Any]]
"""One SQL statement and its parameters."""


_JOB = (
    "INSERT INTO jobs (id, project_id, status, trigger_type, queue, idempotency_key, doc)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO UPDATE SET"
    " status = excluded.status, trigger_type = excluded.trigger_type,"
    " queue = excluded.queue, doc = excluded.doc"
)
_RUN = (
    "INSERT INTO runs (id, job_id, doc) VALUES (?, ?, ?)"
    " ON CONFLICT(id) DO UPDATE SET doc = excluded.doc"
)
# A job's row and a run of the same job, in one statement of the writer.
_JOB_AND_RUN = (
    f"{_JOB}; INSERT INTO runs (id, job_id, doc) VALUES (?8, ?1, ?9)"
    " ON CONFLICT(id) DO UPDATE SET doc = excluded.doc"
)


def _put_job(intent: PutJob, out: list[Op]) -> None:
    job = intent.job
    params = (
        job.id,
        job.project_id,
        job.status._value_,  # the plain str: ``.value`` is a Python-level property
        job.trigger_type,
        job.queue,
        key if (key := job.idempotency_key) is not None else NULL_VALUE,
        encode(job),
    )
    out.append((_JOB, params))


def _put_run(intent: PutRun, out: list[Op]) -> None:
    run = intent.run
    # A run written with its job (a claim, a finish) rides in the job's row. Only job rows
    # are looked back over, and each takes one run: the writes of a run keep their order.
    for index in range(len(out) - 1, -1, -1):
        sql, params = out[index]
        if sql is not _JOB:
            break
        if params[0] == run.job_id:
            out[index] = (_JOB_AND_RUN, (*params, run.id, encode(run)))
            return
    out.append((_RUN, (run.id, run.job_id, encode(run))))


def _put_queue(intent: PutQueue, out: list[Op]) -> None:
    sql = (
        "INSERT INTO queues (project_id, name, doc) VALUES (?, ?, ?)"
        " ON CONFLICT(project_id, name) DO UPDATE SET doc = excluded.doc"
    )
    out.append((sql, (intent.project_id, intent.name, encode(intent.settings))))


def _put_project(intent: PutProject, out: list[Op]) -> None:
    sql = (
        "INSERT INTO projects (id, name, signing_secret, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(name) DO NOTHING"
    )
    project = intent.project
    out.append((sql, (project.id, project.name, intent.signing_secret, project.created_at)))


def _put_key(intent: PutKey, out: list[Op]) -> None:
    sql = (
        "INSERT INTO api_keys (id, project_id, name, key_hash, scopes, admin, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    key = intent.key
    params = (
        key.id,
        key.project_id,
        key.name,
        intent.key_hash,
        json.dumps(list(key.scopes)),
        int(key.admin),
        key.created_at,
    )
    out.append((sql, params))


def _revoke_key(intent: RevokeKey, out: list[Op]) -> None:
    sql = "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
    out.append((sql, (intent.at, intent.key_id)))


def _touch_key(intent: TouchKey, out: list[Op]) -> None:
    sql = "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?"
    out.append((sql, (intent.at, intent.key_id)))


def _set_signing_secret(intent: SetSigningSecret, out: list[Op]) -> None:
    sql = "UPDATE projects SET signing_secret = ? WHERE id = ?"
    out.append((sql, (intent.secret, intent.project_id)))


def _set_server_secret(intent: SetServerSecret, out: list[Op]) -> None:
    sql = "INSERT OR IGNORE INTO meta (key, value) VALUES ('server_secret', ?)"
    out.append((sql, (intent.secret,)))


def _spend(intent: Spend, out: list[Op]) -> None:
    sql = (
        "UPDATE projects SET token_balance = MAX(0, token_balance - ?)"
        " WHERE id = ? AND token_balance IS NOT NULL"
    )
    out.append((sql, (intent.nanos, intent.project_id)))


def _set_balance(intent: SetBalance, out: list[Op]) -> None:
    sql = "UPDATE projects SET token_balance = ? WHERE id = ?"
    out.append((sql, (intent.nanos, intent.project_id)))


def _set_rate(intent: SetRate, out: list[Op]) -> None:
    sql = "UPDATE projects SET rate_limit_rps = ? WHERE id = ?"
    out.append((sql, (intent.rate, intent.project_id)))


def _add_usage(intent: AddUsage, out: list[Op]) -> None:
    sql = (
        "INSERT INTO usage (project_id, day, family, calls, nanos) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(project_id, day, family) DO UPDATE SET"
        " calls = calls + excluded.calls, nanos = nanos + excluded.nanos"
    )
    out.append((sql, (intent.project_id, intent.day, intent.family, intent.calls, intent.nanos)))


def _put_blueprint(intent: PutBlueprint, out: list[Op]) -> None:
    blueprint = intent.blueprint
    sql = "INSERT INTO blueprints (id, project_id, name, doc) VALUES (?, ?, ?, ?)"
    out.append((sql, (blueprint.id, blueprint.project_id, blueprint.name, encode(blueprint))))


def _archive_blueprint(intent: ArchiveBlueprint, out: list[Op]) -> None:
    blueprint = intent.blueprint
    sql = "UPDATE blueprints SET archived_at = ?, doc = ? WHERE id = ?"
    out.append((sql, (blueprint.archived_at, encode(blueprint), blueprint.id)))


_EXECUTION = (
    "INSERT INTO executions"
    " (id, project_id, blueprint_id, status, active, idempotency_key, doc, parent_id)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(id) DO UPDATE SET"
    " status = excluded.status, active = excluded.active, doc = excluded.doc"
)
# The execution's row and the events of the same transition, in one statement of the writer
# (the events as one JSON array, which SQLite splits: each element's text as the encoder
# wrote it, stored as a blob like one event alone).
_EXECUTION_AND_EVENTS = (
    f"{_EXECUTION}; INSERT OR REPLACE INTO events (execution_id, seq, doc)"
    " SELECT ?1, ?9 + key, CAST(value AS BLOB) FROM json_each(?10)"
)
_EVENT = "INSERT OR REPLACE INTO events (execution_id, seq, doc) VALUES (?, ?, ?)"
_EVENTS = (
    "INSERT OR REPLACE INTO events (execution_id, seq, doc)"
    " SELECT ?, ? + key, CAST(value AS BLOB) FROM json_each(?)"
)


def _put_execution(intent: PutExecution, out: list[Op]) -> None:
    state = intent.state
    parent = state.parent
    params = (
        state.id,
        state.project_id,
        state.blueprint_id,
        state.status._value_,
        int(intent.active),
        key if (key := state.idempotency_key) is not None else NULL_VALUE,
        encode(state),
        parent.execution_id if parent is not None else NULL_VALUE,
    )
    out.append((_EXECUTION, params))


def _put_events(intent: PutEvents, out: list[Op]) -> None:
    events = intent.events
    if not events:
        return
    if out and out[-1][0] is _EXECUTION and out[-1][1][0] == intent.execution_id:
        # Its execution's row was the write just before: one row of the writer for both.
        params = (*out[-1][1], intent.first_seq, encode(events))
        out[-1] = (_EXECUTION_AND_EVENTS, params)
    elif len(events) == 1:
        out.append((_EVENT, (intent.execution_id, intent.first_seq, encode(events[0]))))
    else:
        out.append((_EVENTS, (intent.execution_id, intent.first_seq, encode(events))))


_ITEM = "INSERT OR REPLACE INTO map_items (execution_id, step_id, idx, doc) VALUES (?, ?, ?, ?)"


def _put_item(intent: PutItem, out: list[Op]) -> None:
    item = intent.item
    out.append((_ITEM, (intent.execution_id, intent.step_id, item.index, encode(item))))


# ``buffered`` is a literal of the statement: a write statement has 8 parameters at most.
_SIGNAL = (
    "INSERT INTO signals (execution_id, seq, id, name, idempotency_key, data, consumed_by,"
    " buffered, created_at) VALUES (?, ?, ?, ?, ?, ?, {})"
)
_SIGNAL_BUFFERED = _SIGNAL.format("NULL, 1, ?")
_SIGNAL_CONSUMED = _SIGNAL.format("?, 0, ?")
_TAKE_SIGNAL = "UPDATE signals SET consumed_by = ? WHERE execution_id = ? AND id = ?"


def _insert_signal(intent: InsertSignal, out: list[Op]) -> None:
    signal = intent.signal
    head = (signal.execution_id, signal.seq, signal.id, signal.name, signal.idempotency_key)
    data = bytes(signal.data)
    if signal.buffered:
        out.append((_SIGNAL_BUFFERED, (*head, data, signal.created_at)))
    else:
        out.append((_SIGNAL_CONSUMED, (*head, data, signal.consumed_by, signal.created_at)))


def _take_signal(intent: TakeSignal, out: list[Op]) -> None:
    out.append((_TAKE_SIGNAL, (intent.step_id, intent.execution_id, intent.signal_id)))


def _put_webhook(intent: PutWebhook, out: list[Op]) -> None:
    webhook = intent.webhook
    sql = (
        "INSERT INTO webhooks (id, project_id, doc) VALUES (?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET doc = excluded.doc"
    )
    out.append((sql, (webhook.id, webhook.project_id, encode(webhook))))


def _delete_webhook(intent: DeleteWebhook, out: list[Op]) -> None:
    out.append(("DELETE FROM webhooks WHERE id = ?", (intent.webhook_id,)))
    sql = "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND status = 'pending'"
    out.append((sql, (intent.webhook_id,)))


_DELIVERY = (
    "INSERT INTO webhook_deliveries (id, webhook_id, project_id, status, doc)"
    " VALUES (?, ?, ?, ?, ?)"
)
_UPDATE_DELIVERY = "UPDATE webhook_deliveries SET status = ?, doc = ? WHERE id = ?"


def _insert_delivery(intent: InsertDelivery, out: list[Op]) -> None:
    delivery = intent.delivery
    params = (
        delivery.id,
        delivery.webhook_id or "",
        delivery.project_id,
        delivery.status._value_,
        encode(delivery),
    )
    out.append((_DELIVERY, params))


def _update_delivery(intent: UpdateDelivery, out: list[Op]) -> None:
    # An update, never an insert: a delivery its webhook's deletion dropped stays dropped.
    delivery = intent.delivery
    out.append((_UPDATE_DELIVERY, (delivery.status._value_, encode(delivery), delivery.id)))


def _put_schedule(intent: PutSchedule, out: list[Op]) -> None:
    schedule = intent.schedule
    sql = (
        "INSERT INTO workflow_schedules (id, project_id, blueprint_id, doc) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET doc = excluded.doc"
    )
    out.append((sql, (schedule.id, schedule.project_id, schedule.blueprint_id, encode(schedule))))


def _delete_schedule(intent: DeleteSchedule, out: list[Op]) -> None:
    out.append(("DELETE FROM workflow_schedules WHERE id = ?", (intent.schedule_id,)))


_STATEMENTS = writers(globals())

FREQUENT = frozenset(
    {
        *(_JOB, _RUN, _JOB_AND_RUN),
        *(_EXECUTION, _EXECUTION_AND_EVENTS, _EVENT, _EVENTS, _ITEM),
        *(_SIGNAL_BUFFERED, _SIGNAL_CONSUMED, _TAKE_SIGNAL),
        *(_DELIVERY, _UPDATE_DELIVERY),
    }
)
"""The statements written with every job or workflow step: the writer's triggers run these
(a rare one, a key or a project's settings, runs as a statement of its own)."""


def all_statements(intents: Sequence[Intent]) -> list[Op]:
    """The statements that carry out ``intents`` on SQLite, in order."""
    out: list[Op] = []
    table = _STATEMENTS
    for intent in intents:
        table[type(intent)](intent, out)
    return out


def execute(conn: sqlite3.Connection, intent: Intent) -> int:
    """Carry out one intent on a plain ``sqlite3`` connection (``flowyard keys`` works on the
    file without a server); how many rows it changed."""
    return sum(conn.execute(sql, params).rowcount for sql, params in all_statements([intent]))
