"""The PostgreSQL adapter's statements: each write intent as the ``$n`` statements that do it.

The mirror of :mod:`flowyard.storage.sqlite_statements`: ``GREATEST`` for SQLite's
two-argument ``MAX``, ``ON CONFLICT ... DO NOTHING / DO UPDATE`` for ``INSERT OR IGNORE / OR
REPLACE``, docs as ``bytea``. :func:`plan` turns a transaction's statements into as few as it
can: the upserts every transition makes as one statement over ``unnest`` arrays, the rest as
runs of one statement, each sent with one ``executemany``, in order, so that later writes see
earlier ones as on SQLite.
"""

import json
import re
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
    statements_of,
    writers,
)

Op = tuple[str, Sequence[Any]]
"""One SQL statement and its parameters."""

_PUT_JOB = (
    "INSERT INTO jobs (id, project_id, status, trigger_type, queue, idempotency_key, doc)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET"
    " status = excluded.status, trigger_type = excluded.trigger_type,"
    " queue = excluded.queue, doc = excluded.doc"
)
_PUT_RUN = (
    "INSERT INTO runs (id, job_id, doc) VALUES ($1, $2, $3)"
    " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
)
_PUT_QUEUE = (
    "INSERT INTO queues (project_id, name, doc) VALUES ($1, $2, $3)"
    " ON CONFLICT (project_id, name) DO UPDATE SET doc = excluded.doc"
)
_PUT_PROJECT = (
    "INSERT INTO projects (id, name, signing_secret, created_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (name) DO NOTHING"
)
_PUT_KEY = (
    "INSERT INTO api_keys (id, project_id, name, key_hash, scopes, admin, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
_REVOKE_KEY = "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"
_TOUCH_KEY = (
    "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $1) WHERE id = $2"
)
_SET_SIGNING_SECRET = "UPDATE projects SET signing_secret = $1 WHERE id = $2"
_SET_SERVER_SECRET = (
    "INSERT INTO meta (key, value) VALUES ('server_secret', $1) ON CONFLICT (key) DO NOTHING"
)
_SPEND = (
    "UPDATE projects SET token_balance = GREATEST(0, token_balance - $1)"
    " WHERE id = $2 AND token_balance IS NOT NULL"
)
_SET_BALANCE = "UPDATE projects SET token_balance = $1 WHERE id = $2"
_SET_RATE = "UPDATE projects SET rate_limit_rps = $1 WHERE id = $2"
_ADD_USAGE = (
    "INSERT INTO usage (project_id, day, family, calls, nanos) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (project_id, day, family) DO UPDATE SET"
    " calls = usage.calls + excluded.calls, nanos = usage.nanos + excluded.nanos"
)
_PUT_BLUEPRINT = "INSERT INTO blueprints (id, project_id, name, doc) VALUES ($1, $2, $3, $4)"
_ARCHIVE_BLUEPRINT = "UPDATE blueprints SET archived_at = $1, doc = $2 WHERE id = $3"
_PUT_EXECUTION = (
    "INSERT INTO executions"
    " (id, project_id, blueprint_id, status, active, idempotency_key, doc, parent_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET"
    " status = excluded.status, active = excluded.active, doc = excluded.doc"
)
_PUT_EVENT = (
    "INSERT INTO events (execution_id, seq, doc) VALUES ($1, $2, $3)"
    " ON CONFLICT (execution_id, seq) DO UPDATE SET doc = excluded.doc"
)
_PUT_ITEM = (
    "INSERT INTO map_items (execution_id, step_id, idx, doc) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (execution_id, step_id, idx) DO UPDATE SET doc = excluded.doc"
)
_PUT_WEBHOOK = (
    "INSERT INTO webhooks (id, project_id, doc) VALUES ($1, $2, $3)"
    " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
)
_DELETE_WEBHOOK = "DELETE FROM webhooks WHERE id = $1"
_DROP_PENDING = "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending'"
_INSERT_DELIVERY = (
    "INSERT INTO webhook_deliveries (id, webhook_id, project_id, status, doc)"
    " VALUES ($1, $2, $3, $4, $5)"
)
# An update, never an insert: a delivery its webhook's deletion dropped stays dropped.
_UPDATE_DELIVERY = "UPDATE webhook_deliveries SET status = $1, doc = $2 WHERE id = $3"
_PUT_SCHEDULE = (
    "INSERT INTO workflow_schedules (id, project_id, blueprint_id, doc) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
)
_DELETE_SCHEDULE = "DELETE FROM workflow_schedules WHERE id = $1"


def _put_job(intent: PutJob, out: list[Op]) -> None:
    job = intent.job
    params = (
        job.id,
        job.project_id,
        job.status.value,
        job.trigger_type,
        job.queue,
        job.idempotency_key,
        encode(job),
    )
    out.append((_PUT_JOB, params))


def _put_run(intent: PutRun, out: list[Op]) -> None:
    out.append((_PUT_RUN, (intent.run.id, intent.run.job_id, encode(intent.run))))


def _put_queue(intent: PutQueue, out: list[Op]) -> None:
    out.append((_PUT_QUEUE, (intent.project_id, intent.name, encode(intent.settings))))


def _put_project(intent: PutProject, out: list[Op]) -> None:
    project = intent.project
    params = (project.id, project.name, intent.signing_secret, project.created_at)
    out.append((_PUT_PROJECT, params))


def _put_key(intent: PutKey, out: list[Op]) -> None:
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
    out.append((_PUT_KEY, params))


def _revoke_key(intent: RevokeKey, out: list[Op]) -> None:
    out.append((_REVOKE_KEY, (intent.at, intent.key_id)))


def _touch_key(intent: TouchKey, out: list[Op]) -> None:
    out.append((_TOUCH_KEY, (intent.at, intent.key_id)))


def _set_signing_secret(intent: SetSigningSecret, out: list[Op]) -> None:
    out.append((_SET_SIGNING_SECRET, (intent.secret, intent.project_id)))


def _set_server_secret(intent: SetServerSecret, out: list[Op]) -> None:
    out.append((_SET_SERVER_SECRET, (intent.secret,)))


def _spend(intent: Spend, out: list[Op]) -> None:
    out.append((_SPEND, (intent.nanos, intent.project_id)))


def _set_balance(intent: SetBalance, out: list[Op]) -> None:
    out.append((_SET_BALANCE, (intent.nanos, intent.project_id)))


def _set_rate(intent: SetRate, out: list[Op]) -> None:
    out.append((_SET_RATE, (intent.rate, intent.project_id)))


def _add_usage(intent: AddUsage, out: list[Op]) -> None:
    params = (intent.project_id, intent.day, intent.family, intent.calls, intent.nanos)
    out.append((_ADD_USAGE, params))


def _put_blueprint(intent: PutBlueprint, out: list[Op]) -> None:
    blueprint = intent.blueprint
    params = (blueprint.id, blueprint.project_id, blueprint.name, encode(blueprint))
    out.append((_PUT_BLUEPRINT, params))


def _archive_blueprint(intent: ArchiveBlueprint, out: list[Op]) -> None:
    blueprint = intent.blueprint
    out.append((_ARCHIVE_BLUEPRINT, (blueprint.archived_at, encode(blueprint), blueprint.id)))


def _put_execution(intent: PutExecution, out: list[Op]) -> None:
    state = intent.state
    parent = state.parent
    params = (
        state.id,
        state.project_id,
        state.blueprint_id,
        state.status.value,
        int(intent.active),
        state.idempotency_key,
        encode(state),
        parent.execution_id if parent is not None else None,
    )
    out.append((_PUT_EXECUTION, params))


def _put_events(intent: PutEvents, out: list[Op]) -> None:
    first = intent.first_seq
    out += [
        (_PUT_EVENT, (intent.execution_id, first + index, encode(event)))
        for index, event in enumerate(intent.events)
    ]


def _put_item(intent: PutItem, out: list[Op]) -> None:
    item = intent.item
    out.append((_PUT_ITEM, (intent.execution_id, intent.step_id, item.index, encode(item))))


def _insert_signal(intent: InsertSignal, out: list[Op]) -> None:
    # ``buffered`` is a literal of the statement: a write statement has 8 parameters at most.
    signal = intent.signal
    head = (signal.execution_id, signal.seq, signal.id, signal.name, signal.idempotency_key)
    data = bytes(signal.data)
    if signal.buffered:
        params: tuple[Any, ...] = (*head, data, signal.created_at)
        values = "$1, $2, $3, $4, $5, $6, NULL, 1, $7"
    else:
        params = (*head, data, signal.consumed_by, signal.created_at)
        values = "$1, $2, $3, $4, $5, $6, $7, 0, $8"
    sql = (
        "INSERT INTO signals (execution_id, seq, id, name, idempotency_key, data, consumed_by,"
        f" buffered, created_at) VALUES ({values})"
    )
    out.append((sql, params))


def _take_signal(intent: TakeSignal, out: list[Op]) -> None:
    sql = "UPDATE signals SET consumed_by = $1 WHERE execution_id = $2 AND id = $3"
    out.append((sql, (intent.step_id, intent.execution_id, intent.signal_id)))


def _put_webhook(intent: PutWebhook, out: list[Op]) -> None:
    webhook = intent.webhook
    out.append((_PUT_WEBHOOK, (webhook.id, webhook.project_id, encode(webhook))))


def _delete_webhook(intent: DeleteWebhook, out: list[Op]) -> None:
    out.append((_DELETE_WEBHOOK, (intent.webhook_id,)))
    out.append((_DROP_PENDING, (intent.webhook_id,)))


def _insert_delivery(intent: InsertDelivery, out: list[Op]) -> None:
    delivery = intent.delivery
    params = (
        delivery.id,
        delivery.webhook_id or "",
        delivery.project_id,
        delivery.status.value,
        encode(delivery),
    )
    out.append((_INSERT_DELIVERY, params))


def _update_delivery(intent: UpdateDelivery, out: list[Op]) -> None:
    delivery = intent.delivery
    out.append((_UPDATE_DELIVERY, (delivery.status.value, encode(delivery), delivery.id)))


def _put_schedule(intent: PutSchedule, out: list[Op]) -> None:
    schedule = intent.schedule
    params = (schedule.id, schedule.project_id, schedule.blueprint_id, encode(schedule))
    out.append((_PUT_SCHEDULE, params))


def _delete_schedule(intent: DeleteSchedule, out: list[Op]) -> None:
    out.append((_DELETE_SCHEDULE, (intent.schedule_id,)))


_STATEMENTS = writers(globals())


def all_statements(intents: Sequence[Intent]) -> list[Op]:
    """The statements that carry out ``intents`` on PostgreSQL, in order."""
    return statements_of(_STATEMENTS, intents)


Step = tuple[str, list[Sequence[Any]]]
"""A statement and the parameters of each of its executions (one ``executemany``)."""


def runs(ops: Sequence[Op]) -> list[Step]:
    """``ops`` as runs of one statement each, in order: one ``executemany`` per run."""
    out: list[Step] = []
    for sql, params in ops:
        if out and out[-1][0] == sql:
            out[-1][1].append(params)
        else:
            out.append((sql, [params]))
    return out


# ------------------------------------------------------------------ the hot rows, folded

_FOLDED: dict[str, tuple[int, tuple[str, ...]]] = {
    _PUT_JOB: (1, ("text", "text", "text", "text", "text", "text", "bytea")),
    _PUT_RUN: (1, ("text", "text", "bytea")),
    _PUT_EXECUTION: (1, ("text", "text", "text", "text", "integer", "text", "bytea", "text")),
    _PUT_EVENT: (2, ("text", "bigint", "bytea")),
    _PUT_ITEM: (3, ("text", "text", "bigint", "bytea")),
}
"""The upserts of every transition (jobs, runs, executions, events, map items): how many leading
parameters are the row's key, and each column's type."""
_VALUES = re.compile(r"VALUES \(\$1(?:, \$\d+)*\)")
_combined: dict[tuple[str, ...], str] = {}


def _from_arrays(sql: str, first: int) -> str:
    """The upsert ``sql`` of one row as one of a row per array element, from ``$first``."""
    types = _FOLDED[sql][1]
    arrays = ", ".join(f"${first + index}::{kind}[]" for index, kind in enumerate(types))
    return _VALUES.sub(f"SELECT * FROM unnest({arrays})", sql)


def _combine(present: tuple[str, ...]) -> str:
    """One statement doing the upserts ``present``: all but the last as data-modifying CTEs."""
    sql = _combined.get(present)
    if sql is None:
        parts, first = [], 1
        for statement in present:
            parts.append(_from_arrays(statement, first))
            first += len(_FOLDED[statement][1])
        ctes = ", ".join(f"w{index} AS ({part})" for index, part in enumerate(parts[:-1]))
        sql = _combined[present] = f"WITH {ctes} {parts[-1]}" if ctes else parts[-1]
    return sql


def plan(ops: Sequence[Op]) -> list[Step]:
    """The steps of one transaction that does ``ops``: fewer statements, the same rows.

    The upserts of ``jobs``, ``runs``, ``executions`` and ``events`` become one statement
    over ``unnest`` arrays, ahead of the rest (no other write touches those tables, so they
    commute with it). In one statement every part sees the tables as they were before it, so
    writes of one row are folded first: the row keeps the place of its first write and the
    values of its last, which is what upserts of it one after the other leave. The other
    statements follow in order, as :func:`runs`.
    """
    folded: dict[str, dict[tuple[Any, ...], Sequence[Any]]] = {}
    rest: list[Op] = []
    for sql, params in ops:
        shape = _FOLDED.get(sql)
        if shape is None:
            rest.append((sql, params))
        else:
            folded.setdefault(sql, {})[tuple(params[: shape[0]])] = params
    if not folded:
        return runs(rest)
    present = tuple(sql for sql in _FOLDED if sql in folded)
    arrays: list[Any] = []
    for sql in present:
        arrays += [list(column) for column in zip(*folded[sql].values(), strict=True)]
    return [(_combine(present), [arrays]), *runs(rest)]
