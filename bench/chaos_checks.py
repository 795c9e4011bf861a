"""The invariants a crash soak checks, read straight from the database after the server stops.

Every check counts its violations instead of stopping at the first, so one report shows every
kind of damage a run did. The expected outcome of an execution is computed here from its step
statuses and the blueprint's graph (DESIGN section 4), independently of the engine's own code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.db_reads import document, fetch, integrity, record
from flowyard.jobs.model import Job, Run
from flowyard.workflows.state import ExecutionState

Doc = dict[str, Any]
TERMINAL_STEP = frozenset({"completed", "failed", "skipped", "cancelled"})
TERMINAL_JOB = frozenset({"completed", "failed", "cancelled"})
TERMINAL_EXECUTION = frozenset({"completed", "failed", "compensated", "cancelled"})


@dataclass(frozen=True)
class Graph:
    """The blueprint's shape: ``depends_on`` and ``catch`` of every step."""

    depends_on: dict[str, list[str]]
    catch: dict[str, str]

    def descendants(self, step_id: str) -> set[str]:
        """Every step that depends on ``step_id``, directly or transitively."""
        found: set[str] = set()
        frontier = [step_id]
        while frontier:
            current = frontier.pop()
            for sid, deps in self.depends_on.items():
                if current in deps and sid not in found:
                    found.add(sid)
                    frontier.append(sid)
        return found

    def catch_branch(self) -> set[str]:
        """Catch steps and everything below them."""
        branch: set[str] = set()
        for catch_id in set(self.catch.values()):
            branch |= {catch_id} | self.descendants(catch_id)
        return branch


@dataclass(frozen=True)
class Ack:
    """An ack the server answered 200."""

    job_id: str
    attempt: int
    status: str
    result: Any = None
    error: str | None = None


@dataclass
class Ledger:
    """What the server acknowledged, as the clients saw it (shared by the load threads)."""

    triggers: dict[str, tuple[str, int]] = field(default_factory=dict)
    """idempotency key -> (execution id, input n), for every trigger answered 200."""
    acks: list[Ack] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)
    """job id -> idempotency key, for every job creation answered 202."""
    pushes_ok: set[tuple[str, int]] = field(default_factory=set)
    """(job id, attempt) the push handler answered 200."""
    unexpected: list[str] = field(default_factory=list)
    """Answers no client should get (a 500, a 404 on an ack, a 409 on a trigger...)."""
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class Violations:
    """Broken invariants, by kind, with a line of detail each."""

    found: list[tuple[str, str]] = field(default_factory=list)

    def add(self, kind: str, detail: str) -> None:
        self.found.append((kind, detail))

    def kinds(self) -> dict[str, int]:
        return dict(Counter(kind for kind, _ in self.found))

    def __len__(self) -> int:
        return len(self.found)


@dataclass
class Snapshot:
    """The rows the checks need, decoded."""

    executions: dict[str, Doc]
    jobs: dict[str, Doc]
    integrity: str
    columns: list[str]
    """Rows whose indexed columns disagree with their document."""
    events: dict[str, tuple[int, int, str | None]]
    """execution id -> (event count, highest seq, type of the last event)."""
    open_runs: list[tuple[str, str]]
    """(run id, job id) of runs still ``running``."""


def read_snapshot(db: str, project_id: str) -> Snapshot:
    """Read the project's executions, jobs, events and runs; check the file's integrity."""
    executions: dict[str, Doc] = {}
    jobs: dict[str, Doc] = {}
    columns: list[str] = []
    for eid, status, active, raw in fetch(
        db, "SELECT id, status, active, doc FROM executions WHERE project_id = $1", project_id
    ):
        doc = executions[eid] = record(raw, ExecutionState)
        if status != doc.get("status") or active != 0:
            columns.append(
                f"execution {eid}: column status {status!r}, document {doc.get('status')!r},"
                f" active {active}"
            )
    for jid, status, raw in fetch(
        db, "SELECT id, status, doc FROM jobs WHERE project_id = $1", project_id
    ):
        doc = jobs[jid] = record(raw, Job)
        if status != doc.get("status"):
            columns.append(
                f"job {jid}: column status {status!r}, document {doc.get('status')!r}, active 0"
            )
    last: dict[str, tuple[int, int, str | None]] = {}
    for eid, seq, raw in fetch(
        db,
        "SELECT e.execution_id, e.seq, e.doc FROM events e"
        " JOIN executions x ON x.id = e.execution_id WHERE x.project_id = $1"
        " ORDER BY e.execution_id, e.seq",
        project_id,
    ):
        count = last[eid][0] if eid in last else 0
        last[eid] = (count + 1, seq, document(raw)["type"] if raw is not None else None)
    open_runs = [
        (rid, jid)
        for rid, jid, raw in fetch(
            db,
            "SELECT r.id, r.job_id, r.doc FROM runs r JOIN jobs j ON j.id = r.job_id"
            " WHERE j.project_id = $1",
            project_id,
        )
        if record(raw, Run).get("status") == "running"
    ]
    return Snapshot(executions, jobs, integrity(db), columns, last, open_runs)


def expected_status(steps: dict[str, Doc]) -> str:
    """The terminal status the step statuses imply (DESIGN section 4)."""
    failed = [sid for sid, s in steps.items() if s.get("status") == "failed"]
    if any(steps[sid].get("caught_by") is None for sid in failed):
        return "failed"
    if any(s.get("status") == "cancelled" for s in steps.values()):
        return "cancelled"
    return "compensated" if failed else "completed"


def check_execution(graph: Graph, doc: Doc, jobs: dict[str, Doc], out: Violations) -> None:
    """One execution: terminal, the status its steps imply, every step consistent."""
    eid = doc["id"]
    steps: dict[str, Doc] = doc.get("steps", {})
    status = doc.get("status", "running")
    if set(steps) != set(graph.depends_on):
        out.add("execution_steps", f"{eid}: steps {sorted(steps)}")
        return
    live = [sid for sid, s in steps.items() if s.get("status") not in TERMINAL_STEP | {"pending"}]
    if status not in TERMINAL_EXECUTION or live:
        out.add("execution_not_terminal", f"{eid}: {status}, active steps {live}")
        return
    expected = expected_status(steps)
    if status != expected:
        summary = {sid: s.get("status") for sid, s in steps.items()}
        out.add("execution_status", f"{eid}: {status}, steps imply {expected}: {summary}")
    activated = {s["caught_by"] for s in steps.values() if s.get("caught_by")}
    caught_below: set[str] = set()
    for sid, step in steps.items():
        if step.get("status") == "failed" and step.get("caught_by"):
            caught_below |= graph.descendants(sid)
    for sid, step in steps.items():
        _check_step(graph, f"{eid} step {sid}", sid, steps, status, activated, caught_below, out)
        _check_step_job(eid, sid, step, jobs, out)


def _check_step(
    graph: Graph,
    where: str,
    sid: str,
    steps: dict[str, Doc],
    status: str,
    activated: set[str],
    caught_below: set[str],
    out: Violations,
) -> None:
    """A step's status agrees with its dependencies, its catch and the execution's status.

    A catch step is due once a failure was routed to it; any other step once its depends_on
    all completed, unless a caught failure above it abandoned its path.
    """
    step = steps[sid]
    state = step.get("status")
    where = f"{where} ({state})"
    deps_done = all(steps[d].get("status") == "completed" for d in graph.depends_on[sid])
    is_catch = sid in graph.catch.values()
    due = sid in activated if is_catch else deps_done and sid not in caught_below
    if state in ("completed", "failed") and not due:
        out.add("step_ran_early", f"{where}: ran but was never due")
    if state == "pending" and due:
        out.add("step_stuck", f"{where}: due but never queued (execution {status})")
    if state == "pending" and status in ("completed", "compensated"):
        out.add("step_stuck", f"{where}: pending in a {status} execution")
    if state == "skipped":
        unused_branch = sid in graph.catch_branch() and not (activated & _catch_above(graph, sid))
        if sid not in caught_below and not unused_branch:
            out.add("step_skipped", f"{where}: skipped with no caught failure above it")
    if state == "failed":
        if step.get("caught_by") != graph.catch.get(sid):
            out.add("caught_by", f"{where}: caught_by {step.get('caught_by')!r}")
        if not step.get("error"):
            out.add("step_error", f"{where}: no error")
    elif step.get("caught_by") is not None:
        out.add("caught_by", f"{where}: caught_by {step.get('caught_by')!r} but not failed")
    if state == "completed" and step.get("error"):
        out.add("step_error", f"{where}: error {step.get('error')}")


def _catch_above(graph: Graph, sid: str) -> set[str]:
    """The catch steps whose branch holds ``sid`` (itself included)."""
    return {c for c in set(graph.catch.values()) if c == sid or sid in graph.descendants(c)}


def _check_step_job(eid: str, sid: str, step: Doc, jobs: dict[str, Doc], out: Violations) -> None:
    """A step that ran points at its own job, and the job's outcome is the step's."""
    state = step.get("status")
    job_id = step.get("job_id")
    where = f"{eid} step {sid} ({state})"
    if state in ("completed", "failed") and job_id is None:
        error = step.get("error") or {}
        if state == "failed" and error.get("code") == "template_error":
            return
        out.add("step_job_missing", f"{where}: no job_id")
        return
    if job_id is None:
        return
    job = jobs.get(job_id)
    if job is None:
        out.add("step_job_missing", f"{where}: job {job_id} not in the jobs table")
        return
    ref = job.get("workflow") or {}
    if (ref.get("execution_id"), ref.get("step_id")) != (eid, sid):
        out.add("step_job_owner", f"{where}: job {job_id} belongs to {ref}")
    if ref.get("attempt", 1) != step.get("attempt"):
        out.add("step_job_attempt", f"{where}: step attempt {step.get('attempt')}, job {ref}")
    if state == "completed" and (
        job.get("status") != "completed" or job.get("result") != step.get("output")
    ):
        out.add(
            "step_output",
            f"{where}: job {job_id} {job.get('status')} result {job.get('result')!r},"
            f" step output {step.get('output')!r}",
        )
    if state == "failed" and job.get("status") not in ("failed", "cancelled"):
        out.add("step_job_status", f"{where}: job {job_id} is {job.get('status')}")


def check_events(doc: Doc, events: tuple[int, int, str | None] | None, out: Violations) -> None:
    """The event log has no gap, ends where the document says, with the final status."""
    eid = doc["id"]
    count, top, last = events or (0, 0, None)
    if count != top or top != doc.get("event_seq"):
        out.add("events", f"{eid}: {count} events, highest seq {top}, doc {doc.get('event_seq')}")
    if last != doc.get("status"):
        out.add("events", f"{eid}: last event {last!r}, status {doc.get('status')!r}")


def check_jobs(snapshot: Snapshot, out: Violations) -> None:
    """Every job is terminal, and no step attempt has two jobs."""
    per_attempt: Counter[tuple[str, str, int]] = Counter()
    for jid, job in snapshot.jobs.items():
        if job.get("status") not in TERMINAL_JOB:
            out.add("job_not_terminal", f"{jid}: {job.get('status')} attempt {job.get('attempt')}")
        ref = job.get("workflow")
        if ref:
            per_attempt[(ref["execution_id"], ref["step_id"], ref.get("attempt", 1))] += 1
            if ref["execution_id"] not in snapshot.executions:
                out.add("job_orphan", f"{jid}: execution {ref['execution_id']} does not exist")
    for (eid, sid, attempt), count in per_attempt.items():
        if count > 1:
            out.add("duplicate_step_job", f"{eid} step {sid} attempt {attempt}: {count} jobs")


def check_ledger(snapshot: Snapshot, ledger: Ledger, out: Violations) -> None:
    """Everything the server acknowledged to a client is in the file, as acknowledged."""
    for key, (eid, n) in ledger.triggers.items():
        doc = snapshot.executions.get(eid)
        if doc is None:
            out.add("trigger_lost", f"{key}: execution {eid} answered 200 but not stored")
        elif doc.get("idempotency_key") != key or (doc.get("input_data") or {}).get("n") != n:
            out.add("trigger_mismatch", f"{key}: {eid} stored with {doc.get('idempotency_key')}")
    for ack in ledger.acks:
        job = snapshot.jobs.get(ack.job_id)
        if job is None:
            out.add("ack_lost", f"{ack.job_id}: acked {ack.status} but the job is not stored")
            continue
        seen = (job.get("status"), job.get("attempt"))
        if seen != (ack.status, ack.attempt):
            out.add(
                "ack_lost", f"{ack.job_id}: acked {ack.status} at attempt {ack.attempt}, {seen}"
            )
        elif ack.status == "completed" and job.get("result") != ack.result:
            out.add(
                "ack_result", f"{ack.job_id}: result {job.get('result')!r}, acked {ack.result!r}"
            )
        elif ack.status == "failed" and job.get("error") != ack.error:
            out.add("ack_error", f"{ack.job_id}: error {job.get('error')!r}, acked {ack.error!r}")
    for jid, key in ledger.created.items():
        job = snapshot.jobs.get(jid)
        if job is None:
            out.add("job_create_lost", f"{jid} ({key}): answered 202 but not stored")
        elif job.get("idempotency_key") != key:
            out.add("job_create_mismatch", f"{jid}: key {job.get('idempotency_key')}, sent {key}")


def check_pushes(snapshot: Snapshot, ledger: Ledger, handler_prefix: str, out: Violations) -> None:
    """A push job completed only with a body its handler answered 200 for that attempt."""
    for jid, job in snapshot.jobs.items():
        if not str(job.get("handler") or "").startswith(handler_prefix):
            continue
        if job.get("status") != "completed":
            continue
        result = job.get("result") or {}
        answered = (result.get("job"), result.get("attempt"))
        if result.get("job") != jid or answered not in ledger.pushes_ok:
            out.add("push_result", f"{jid}: completed with {result!r}, not a 200 the handler sent")


def check_all(
    db: str, project_id: str, graph: Graph, ledger: Ledger, handler_prefix: str
) -> tuple[Violations, Snapshot]:
    """Run every check on the stopped server's file; the violations and what was read."""
    out = Violations()
    snapshot = read_snapshot(db, project_id)
    if snapshot.integrity != "ok":
        out.add("integrity_check", snapshot.integrity)
    for detail in snapshot.columns:
        out.add("row_columns", detail)
    for detail in ledger.unexpected:
        out.add("unexpected_response", detail)
    for doc in snapshot.executions.values():
        check_execution(graph, doc, snapshot.jobs, out)
        check_events(doc, snapshot.events.get(doc["id"]), out)
    for run_id, job_id in snapshot.open_runs:
        out.add("run_not_finished", f"run {run_id} of job {job_id} is still running")
    check_jobs(snapshot, out)
    check_ledger(snapshot, ledger, out)
    check_pushes(snapshot, ledger, handler_prefix, out)
    return out, snapshot
