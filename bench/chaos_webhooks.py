"""The crash soak's webhook: subscribed at the start, its deliveries checked after the run.

A ``bench.webhook_receiver`` process on 127.0.0.1 outlives every kill of the server and keeps
each delivery as it came. The checks hold the receiver's records to the stopped server's file
(DESIGN section 7): every job that ended completed or dead, and every execution that ended,
has exactly one distinct event of its final transition, delivered at least once (duplicates
by event id are allowed, and counted); no event speaks of a transition the file does not hold;
every delivery is signed with the webhook's secret; every event the server stored arrived.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson

import flowyard
from bench.db_reads import document, fetch, fetch_one

if TYPE_CHECKING:
    from bench.chaos_checks import Snapshot, Violations

TOPICS = ["jobs.*", "workflows.*"]
JOB_END = {"completed": "jobs.completed", "failed": "jobs.dead"}
"""A job's final status -> the topic of the transition that ended it (a cancel emits none)."""
EXECUTION_END = frozenset({"completed", "failed", "compensated", "cancelled"})

Row = Sequence[Any]
"""One delivery as the receiver kept it: arrival, event id, delivery id, topic, signature, body."""


@dataclass
class Deliveries:
    """What the receiver got, and what the server's file says it stored and sent."""

    secret: str
    project_id: str
    rows: list[Row] = field(default_factory=list)
    stored: dict[str, str] = field(default_factory=dict)
    """event id -> topic, of every event the server stored for the project."""
    statuses: dict[str, int] = field(default_factory=dict)
    """The webhook's deliveries by status, in the file."""


def setup_post(url: str, body: Any, key: str, timeout: float = 60.0) -> httpx.Response:
    """POST a setup request, again while the server answers 503 (starting, or a cluster's
    shards still moving after the nodes joined); its answer."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {key}"}
    while True:
        response = httpx.post(url, json=body, headers=headers, timeout=30)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def subscribe(url: str, key: str, receiver_url: str) -> str:
    """Create the soak's webhook (``jobs.*`` and ``workflows.*``); its secret."""
    secret = secrets.token_hex(24)
    body = {"name": "chaos", "url": f"{receiver_url}/hook", "topics": TOPICS, "secret": secret}
    response = setup_post(f"{url}/infra/webhooks", body, key)
    if response.status_code != 201:
        raise RuntimeError(f"webhook create {response.status_code}: {response.text[:300]}")
    return secret


def pending_deliveries(db: str) -> int:
    """How many deliveries the server still has to send."""
    (left,) = fetch_one(db, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
    return int(left)


def wait_delivered(db: str, timeout: float) -> bool:
    """Wait until the running server has no pending delivery; False when ``timeout`` ran out."""
    deadline = time.monotonic() + timeout
    while pending_deliveries(db):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def read_stored(db: str, deliveries: Deliveries) -> None:
    """Fill in the events and delivery statuses the stopped server's database holds."""
    mine = "FROM webhook_deliveries WHERE project_id = $1 AND webhook_id != ''"
    for (raw,) in fetch(db, f"SELECT doc {mine}", deliveries.project_id):
        doc = document(raw)
        deliveries.stored[doc.get("event_id")] = doc.get("topic")
    deliveries.statuses = dict(
        fetch(db, f"SELECT status, count(*) {mine} GROUP BY status", deliveries.project_id)
    )


def check_webhooks(snapshot: Snapshot, deliveries: Deliveries, out: Violations) -> dict[str, Any]:
    """Hold the receiver's records to the file; the figures for the soak's JSON line."""
    events: dict[str, dict[str, Any]] = {}
    for arrival, event_id, _delivery_id, topic, signature, body in deliveries.rows:
        if not flowyard.verify(deliveries.secret, body, signature, now=arrival):
            out.add("webhook_signature", f"{event_id} ({topic}): {signature!r} does not verify")
        doc = orjson.loads(body)
        if (doc.get("id"), doc.get("topic")) != (event_id, topic):
            out.add("webhook_body", f"{event_id} ({topic}): body says {doc.get('id')}")
        if doc.get("project_id") != deliveries.project_id:
            out.add("webhook_body", f"{event_id}: project {doc.get('project_id')}")
        if events.setdefault(event_id, doc) != doc:
            out.add("webhook_body", f"{event_id}: two deliveries with different bodies")
    for event_id, topic in deliveries.stored.items():
        if event_id not in events and topic != "webhooks.test":
            out.add("webhook_event_not_received", f"{event_id} ({topic}) stored, never delivered")
    for status, count in deliveries.statuses.items():
        if status != "succeeded":
            out.add("webhook_delivery_unsent", f"{count} deliveries {status}")
    finals = _check_subjects(snapshot, events.values(), out)
    _check_finals(snapshot, finals, out)
    return {
        "webhook_deliveries_received": len(deliveries.rows),
        "webhook_events_distinct": len(events),
        "webhook_duplicates": len(deliveries.rows) - len(events),
        "webhook_events_stored": len(deliveries.stored),
        "webhook_topics": dict(sorted(Counter(doc["topic"] for doc in events.values()).items())),
    }


def _check_subjects(
    snapshot: Snapshot, events: Iterable[dict[str, Any]], out: Violations
) -> dict[tuple[str, str], list[str]]:
    """Each distinct event's subject is in the file, in the state the event announces.

    Answers the ids of the final-transition events by ``(subject id, topic)``.
    """
    finals: dict[tuple[str, str], list[str]] = defaultdict(list)
    for doc in events:
        topic, data, event_id = doc.get("topic"), doc.get("data") or {}, doc.get("id")
        where = f"{event_id} {topic}"
        if topic in ("jobs.completed", "jobs.dead", "jobs.failed"):
            job = snapshot.jobs.get(data.get("job_id"))
            if job is None:
                out.add("webhook_event_uncommitted", f"{where}: job {data.get('job_id')} unknown")
                continue
            _check_job_event(where, str(topic), data, job, out)
            if topic != "jobs.failed":
                finals[(data["job_id"], str(topic))].append(str(event_id))
        elif topic in {f"workflows.execution.{status}" for status in EXECUTION_END}:
            execution = snapshot.executions.get(data.get("execution_id"))
            status = str(topic).rsplit(".", 1)[1]
            if execution is None or execution.get("status") != status:
                seen = execution and execution.get("status")
                out.add("webhook_event_uncommitted", f"{where}: execution is {seen}")
                continue
            if data.get("status") != status:
                out.add("webhook_event_data", f"{where}: data status {data.get('status')}")
            finals[(data["execution_id"], str(topic))].append(str(event_id))
        elif topic == "workflows.step.failed":
            execution = snapshot.executions.get(data.get("execution_id")) or {}
            step = execution.get("steps", {}).get(data.get("step_id")) or {}
            if step.get("status") != "failed":
                out.add("webhook_event_uncommitted", f"{where}: step is {step.get('status')}")
                continue
            finals[(f"{data['execution_id']}/{data['step_id']}", str(topic))].append(str(event_id))
        elif topic != "webhooks.test":
            out.add("webhook_topic", f"{where}: not a topic of this soak")
    return finals


def _check_job_event(
    where: str, topic: str, data: dict[str, Any], job: dict[str, Any], out: Violations
) -> None:
    """A job event agrees with the job: its final status, attempt and result or workflow step."""
    if topic == "jobs.failed":
        if job.get("attempt", 0) <= data.get("attempt", 0):
            out.add("webhook_event_uncommitted", f"{where}: no attempt after {data.get('attempt')}")
        return
    if JOB_END.get(job.get("status", "")) != topic:
        out.add("webhook_event_uncommitted", f"{where}: job is {job.get('status')}")
        return
    if data.get("attempt") != job.get("attempt"):
        out.add("webhook_event_data", f"{where}: attempt {data.get('attempt')}, job {job}")
    if topic == "jobs.completed" and data.get("result") != job.get("result"):
        out.add("webhook_event_data", f"{where}: result {data.get('result')!r}")
    ref = job.get("workflow")
    if ref and data.get("workflow") != {k: ref[k] for k in ("execution_id", "step_id")}:
        out.add("webhook_event_data", f"{where}: workflow {data.get('workflow')}, job {ref}")


def _check_finals(
    snapshot: Snapshot, finals: dict[tuple[str, str], list[str]], out: Violations
) -> None:
    """Every final transition in the file has exactly one distinct event."""
    expected: list[tuple[str, str]] = []
    for jid, job in snapshot.jobs.items():
        if job.get("status") in JOB_END:
            expected.append((jid, JOB_END[job["status"]]))
    for eid, execution in snapshot.executions.items():
        if execution.get("status") in EXECUTION_END:
            expected.append((eid, f"workflows.execution.{execution['status']}"))
        for sid, step in execution.get("steps", {}).items():
            if step.get("status") == "failed":
                expected.append((f"{eid}/{sid}", "workflows.step.failed"))
    for subject in expected:
        ids = finals.get(subject, [])
        if not ids:
            out.add("webhook_event_missing", f"{subject[0]}: no {subject[1]} event")
        elif len(ids) > 1:
            out.add("webhook_event_twice", f"{subject[0]}: {len(ids)} {subject[1]} events {ids}")
