"""The pure parts of webhooks: topic patterns, an attempt's outcome, a job change's event."""

import ast
from pathlib import Path

import msgspec
import pytest

import flowyard.webhooks
from flowyard.jobs.model import Immediate, Job, JobStatus, Run, RunStatus, WorkflowRef
from flowyard.webhooks.emission import job_event
from flowyard.webhooks.model import Delivery, DeliveryStatus, attempted, retried
from flowyard.webhooks.topics import custom_topic_problem, matches, pattern_problem

replace = msgspec.structs.replace


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("*", "jobs.completed", True),
        ("*", "anything", True),
        ("jobs.*", "jobs.completed", True),
        ("jobs.*", "jobs.x.y", True),
        ("jobs.*", "jobs", False),
        ("jobs.*", "jobsx.completed", False),
        ("workflows.execution.*", "workflows.execution.failed", True),
        ("workflows.execution.*", "workflows.step.failed", False),
        ("jobs.completed", "jobs.completed", True),
        ("jobs.completed", "jobs.completed.x", False),
    ],
)
def test_matching(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["*", "jobs.*", "jobs.completed", "orders_1.placed-x"])
def test_valid_patterns(pattern: str) -> None:
    assert pattern_problem(pattern) is None


@pytest.mark.parametrize(
    "pattern", ["", ".*", "jobs*", "*.jobs", "Jobs.completed", "jobs.**", "a b", "x" * 129, "jobs."]
)
def test_invalid_patterns(pattern: str) -> None:
    assert pattern_problem(pattern) is not None


@pytest.mark.parametrize("topic", ["orders.placed", "a", "x-y_z.1"])
def test_custom_topics(topic: str) -> None:
    assert custom_topic_problem(topic) is None


@pytest.mark.parametrize(
    "topic", ["jobs.completed", "workflows.x", "webhooks.test", "", "UPPER", "x" * 129, "a*"]
)
def test_refused_custom_topics(topic: str) -> None:
    assert custom_topic_problem(topic) is not None


DELIVERY = Delivery(
    id="whd_1",
    webhook_id="whk_1",
    project_id="proj_1",
    event_id="evt_1",
    topic="jobs.completed",
    payload=msgspec.Raw(b"{}"),
    created_at=0,
    updated_at=0,
)


def attempt(delivery: Delivery, status: int | None, now: int = 1000) -> Delivery:
    return attempted(
        delivery,
        status=status,
        snippet="answer",
        error=None if status else "connection_error: refused",
        duration_ms=5,
        now=now,
        base_seconds=10,
        draw=0.5,
    )


def test_a_2xx_succeeds() -> None:
    done = attempt(DELIVERY, 204)
    assert (done.status, done.attempts, done.http_status, done.next_attempt_at) == (
        DeliveryStatus.SUCCEEDED,
        1,
        204,
        None,
    )
    assert done.error is None and done.response_snippet == "answer"


def test_failures_back_off_exponentially_then_fail_after_eight() -> None:
    delivery, waits = DELIVERY, []
    for _ in range(7):
        delivery = attempt(delivery, 500, now=0)
        assert delivery.status is DeliveryStatus.PENDING
        assert delivery.next_attempt_at is not None
        waits.append(delivery.next_attempt_at)
    # base 10 s, jitter draw 0.5: 3/4 of 10, 20, 40 ... seconds
    assert waits == [int(0.75 * 10_000 * 2**n) for n in range(7)]
    delivery = attempt(delivery, None)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (
        DeliveryStatus.FAILED,
        8,
        None,
    )
    assert delivery.error == "connection_error: refused"
    again = retried(delivery, 5000)
    assert (again.status, again.max_attempts, again.next_attempt_at) == (
        DeliveryStatus.PENDING,
        16,
        5000,
    )


def test_the_backoff_is_capped_at_an_hour() -> None:
    delivery = replace(DELIVERY, attempts=20, max_attempts=30)
    assert (attempt(delivery, 500, now=0).next_attempt_at or 0) <= 3_600_000


JOB = Job(
    id="job_1",
    project_id="proj_1",
    trigger=Immediate(),
    name="send",
    status=JobStatus.RUNNING,
    attempt=1,
    max_attempts=2,
    run_id="run_1",
)
RUN = Run(id="run_1", job_id="job_1", attempt=1, scheduled_at=None, started_at=0)


def closed(status: RunStatus) -> list[Run]:
    return [replace(RUN, status=status, completed_at=5)]


def test_a_completed_attempt_emits_jobs_completed() -> None:
    new = replace(JOB, status=JobStatus.COMPLETED, run_id=None, result=msgspec.Raw(b'{"a":1}'))
    topic, data = job_event(JOB, new, closed(RunStatus.COMPLETED)) or ("", {})
    assert topic == "jobs.completed"
    assert data == {
        "job_id": "job_1",
        "name": "send",
        "run_id": "run_1",
        "attempt": 1,
        "result": msgspec.Raw(b'{"a":1}'),
    }


def test_a_failed_attempt_with_a_retry_emits_jobs_failed() -> None:
    new = replace(JOB, status=JobStatus.PENDING, run_id=None, error="boom", run_at=2000)
    topic, data = job_event(JOB, new, closed(RunStatus.FAILED)) or ("", {})
    assert topic == "jobs.failed"
    assert data["error"] == "boom" and data["retry_at"] == "1970-01-01T00:00:02.000Z"


def test_the_last_attempt_emits_jobs_dead_with_the_workflow() -> None:
    ref = WorkflowRef("wfexec_1", "charge")
    old = replace(JOB, attempt=2, workflow=ref)
    new = replace(old, status=JobStatus.FAILED, run_id=None, error="boom")
    topic, data = job_event(old, new, closed(RunStatus.FAILED)) or ("", {})
    assert topic == "jobs.dead"
    assert data["max_attempts"] == 2
    assert data["workflow"] == {"execution_id": "wfexec_1", "step_id": "charge"}


def test_cancels_restarts_and_starts_emit_nothing() -> None:
    cancelled = replace(JOB, status=JobStatus.CANCELLED, run_id=None)
    assert job_event(JOB, cancelled, closed(RunStatus.FAILED)) is None
    interrupted = replace(JOB, status=JobStatus.PENDING, run_id=None, attempt=0, run_at=5)
    assert job_event(JOB, interrupted, closed(RunStatus.FAILED)) is None
    started = replace(JOB, run_id="run_2")
    assert job_event(replace(JOB, run_id=None), started, [RUN]) is None
    assert job_event(None, JOB, []) is None


def test_the_webhooks_package_is_pure() -> None:
    """No I/O below the outbox: nothing async, no storage, no HTTP, no actors."""
    banned = ("anyio", "asyncio", "httpx", "aiosqlite", "sqlite3", "flowyard.storage")
    banned += ("flowyard.http", "flowyard.actors")
    for path in Path(flowyard.webhooks.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(banned), (path.name, name)
