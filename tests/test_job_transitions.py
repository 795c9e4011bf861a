"""The pure lifecycle of a job: every status against every event, and the effects each
transition asks for. No server, no SQLite, no clock."""

import subprocess
import sys
from typing import Any

import msgspec
import pytest
from msgspec import Raw

from flowyard.errors import Conflict
from flowyard.jobs.cron import next_fire_ms
from flowyard.jobs.events import (
    ArmTimer,
    AttemptEnded,
    Callback,
    CancelTimer,
    Claimed,
    CronFired,
    DeliveryStarted,
    Due,
    Fire,
    HandlerAccepted,
    Interrupted,
    JobEvent,
    Lease,
    LeaseExtended,
    MakeReady,
    NotifyEnded,
    RetryRequested,
    TriggerRequested,
    Withdrawn,
)
from flowyard.jobs.model import (
    Delayed,
    Immediate,
    Job,
    JobStatus,
    PullQueue,
    PushQueue,
    Run,
    RunStatus,
    Scheduled,
)
from flowyard.jobs.spec import JobSpec
from flowyard.jobs.transitions import admission, created, edited, is_ready, transition

replace = msgspec.structs.replace

NOW = 1_800_000_000_000
EVERY_MINUTE = Scheduled(schedule="* * * * *")
SLOT = next_fire_ms("* * * * *", "UTC", NOW - 60_000)  # a cron slot at or before NOW
HANDLER = "http://127.0.0.1:9/h"


def job(**fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": "job_1",
        "project_id": "proj_1",
        "trigger": Immediate(),
        "handler": HANDLER,
        "created_at": NOW - 10_000,
        "run_at": NOW - 1,
        **fields,
    }
    return Job(**values)


def run(attempt: int = 1) -> Run:
    return Run(id="run_1", job_id="job_1", attempt=attempt, scheduled_at=NOW - 1, started_at=NOW)


STATES: dict[str, tuple[Job, Run | None]] = {
    "pending_push": (job(), None),
    "pending_pull": (job(trigger=PullQueue(queue="q"), handler=None), None),
    "running_pull": (
        job(
            trigger=PullQueue(queue="q"),
            handler=None,
            status=JobStatus.RUNNING,
            attempt=1,
            run_id="run_1",
            claim_token="tok",
            claimed_until=NOW + 30_000,
            last_run_at=NOW - 5,
        ),
        run(),
    ),
    "running_push": (
        job(trigger=PushQueue(queue="q"), status=JobStatus.RUNNING, attempt=1, run_id="run_1"),
        run(),
    ),
    "scheduled_idle": (
        job(trigger=EVERY_MINUTE, status=JobStatus.SCHEDULED, run_at=None, next_run_at=SLOT),
        None,
    ),
    "scheduled_firing": (
        job(trigger=EVERY_MINUTE, status=JobStatus.SCHEDULED, run_at=SLOT, next_run_at=SLOT),
        None,
    ),
    "scheduled_delivering": (
        job(
            trigger=EVERY_MINUTE,
            status=JobStatus.SCHEDULED,
            run_at=SLOT,
            next_run_at=SLOT,
            attempt=1,
            run_id="run_1",
        ),
        run(),
    ),
    "completed": (job(status=JobStatus.COMPLETED, run_at=None, completed_at=NOW - 5), None),
    "failed": (job(status=JobStatus.FAILED, attempt=3, run_at=None, error="boom"), None),
    "cancelled": (job(status=JobStatus.CANCELLED, completed_at=NOW - 5), None),
}

EVENTS: dict[str, JobEvent] = {
    "claimed": Claimed("run_2", "tok2", 60),
    "delivery_started": DeliveryStarted("run_2"),
    "handler_accepted": HandlerAccepted(NOW + 3_600_000, 202),
    "lease_extended": LeaseExtended(120),
    "ended_ok": AttemptEnded(completed=True, result=Raw(b'{"ok":true}'), handler_status=200),
    "ended_retry": AttemptEnded(completed=False, error="boom", retry_base_seconds=2, draw=0.5),
    "ended_final": AttemptEnded(completed=False, error="bad", retryable=False),
    "withdrawn": Withdrawn(),
    "interrupted": Interrupted(),
    "retry_requested": RetryRequested(),
    "trigger_requested": TriggerRequested(),
    "cron_fired": CronFired(SLOT),
}

C = "conflict"
SAME = "unchanged"
P, R, S = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SCHEDULED
DONE, FAIL, CXL = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED

# Each state's row, in the order of EVENTS: the status after the event, C for 409, or SAME
# for an event that changes nothing (a stale cron timer).
TABLE: dict[str, list[object]] = {
    #                      claim deliv  accept lease  ok    retry final  cxl  intr retry trig cron
    "pending_push": [C, R, C, C, C, C, C, CXL, C, C, P, SAME],
    "pending_pull": [R, C, C, C, C, C, C, CXL, C, C, P, SAME],
    "running_pull": [C, C, C, R, DONE, P, FAIL, CXL, P, C, C, SAME],
    "running_push": [C, C, R, C, DONE, P, FAIL, CXL, P, C, C, SAME],
    "scheduled_idle": [C, S, C, C, C, C, C, CXL, C, C, S, S],
    "scheduled_firing": [C, S, C, C, C, C, C, CXL, C, C, C, S],
    "scheduled_delivering": [C, C, S, C, S, S, S, CXL, S, C, C, S],
    "completed": [C, C, C, C, C, C, C, C, C, C, C, SAME],
    "failed": [C, C, C, C, C, C, C, C, C, P, C, SAME],
    "cancelled": [C, C, C, C, C, C, C, C, C, C, C, SAME],
}

CASES = [
    pytest.param(state, event, TABLE[state][index], id=f"{state}-{event}")
    for state in STATES
    for index, event in enumerate(EVENTS)
]


@pytest.mark.parametrize(("state", "event", "expected"), CASES)
def test_every_status_against_every_event(state: str, event: str, expected: object) -> None:
    before, open_run = STATES[state]
    if expected == C:
        with pytest.raises(Conflict):
            transition(before, open_run, EVENTS[event], NOW)
        return
    done = transition(before, open_run, EVENTS[event], NOW)
    if expected == SAME:
        assert done.job is before
        assert done.runs == [] and done.effects == []
        return
    assert done.job.status is expected
    assert done.job.id == before.id


def test_the_table_covers_every_state_and_event() -> None:
    assert set(TABLE) == set(STATES)
    assert all(len(row) == len(EVENTS) for row in TABLE.values())


# ----------------------------------------------------------------------------- attempts


def test_a_claim_opens_a_run_and_arms_its_lease() -> None:
    before, _ = STATES["pending_pull"]
    done = transition(before, None, Claimed("run_2", "tok2", 60), NOW)
    assert done.job.attempt == 1 and done.job.run_id == "run_2"
    assert done.job.claim_token == "tok2" and done.job.claimed_until == NOW + 60_000
    assert done.job.last_run_at == NOW
    assert done.runs == [
        Run(id="run_2", job_id="job_1", attempt=1, scheduled_at=NOW - 1, started_at=NOW)
    ]
    assert done.effects == [ArmTimer(NOW + 60_000, Lease("job_1", "tok2"))]


def test_a_heartbeat_moves_the_lease_timer_of_the_same_key() -> None:
    before, _ = STATES["running_pull"]
    done = transition(before, None, LeaseExtended(120), NOW + 1_000)
    assert done.job.claimed_until == NOW + 121_000
    assert done.effects == [ArmTimer(NOW + 121_000, Lease("job_1", "tok"))]


def test_a_completed_attempt_closes_the_run_releases_the_lease_and_notifies() -> None:
    before, open_run = STATES["running_pull"]
    quiet = transition(before, open_run, EVENTS["ended_ok"], NOW + 250)
    assert quiet.effects == [CancelTimer(Lease("job_1", "tok"))]  # no callback_url
    before = replace(before, callback_url="http://127.0.0.1:9/notice")
    done = transition(before, open_run, EVENTS["ended_ok"], NOW + 250)
    assert done.job.result == Raw(b'{"ok":true}')
    assert done.job.completed_at == NOW + 250
    assert done.job.claim_token is None and done.job.run_id is None and done.job.run_at is None
    (closed,) = done.runs
    assert closed.status is RunStatus.COMPLETED and closed.duration_ms == 250
    assert closed.handler_status == 200
    assert CancelTimer(Lease("job_1", "tok")) in done.effects
    assert done.effects[-1] == NotifyEnded()


@pytest.mark.parametrize(
    ("backoff", "attempt", "delay_ms"),
    [
        ("exponential", 1, 1_500),
        ("exponential", 2, 3_000),
        ("linear", 2, 4_000),
        ("fixed", 2, 2_000),
    ],
)
def test_a_failed_attempt_with_attempts_left_waits_its_backoff(
    backoff: str, attempt: int, delay_ms: int
) -> None:
    before = replace(STATES["running_push"][0], backoff=backoff, attempt=attempt)
    done = transition(before, run(attempt), EVENTS["ended_retry"], NOW)
    assert done.job.status is JobStatus.PENDING
    assert done.job.run_at == NOW + delay_ms
    assert done.job.error == "boom"
    assert done.runs[0].status is RunStatus.FAILED
    assert ArmTimer(NOW + delay_ms, Due("job_1")) in done.effects
    assert NotifyEnded() not in done.effects


def test_the_last_attempt_fails_the_job_for_good() -> None:
    before = replace(STATES["running_push"][0], attempt=3, max_attempts=3, callback_url=HANDLER)
    done = transition(before, run(3), EVENTS["ended_retry"], NOW)
    assert done.job.status is JobStatus.FAILED and done.job.completed_at == NOW
    assert done.effects == [NotifyEnded()]


def test_a_202_waits_for_the_callback_with_a_timer() -> None:
    before, open_run = STATES["running_push"]
    done = transition(before, open_run, HandlerAccepted(NOW + 5_000, 202), NOW)
    assert done.job.callback_deadline == NOW + 5_000
    assert done.runs[0].handler_status == 202 and done.runs[0].status is RunStatus.RUNNING
    assert done.effects == [ArmTimer(NOW + 5_000, Callback("job_1", "run_1"))]
    ended = transition(done.job, done.runs[0], EVENTS["ended_ok"], NOW + 10)
    assert CancelTimer(Callback("job_1", "run_1")) in ended.effects


def test_a_withdrawal_keeps_a_cancel_silent_but_names_another_reason() -> None:
    before, open_run = STATES["running_push"]
    cancelled = transition(replace(before, error="earlier"), open_run, Withdrawn(), NOW)
    assert cancelled.job.error == "earlier"
    assert cancelled.runs[0].status is RunStatus.FAILED and cancelled.runs[0].error == "cancelled"
    noticed = replace(before, callback_url=HANDLER)
    withdrawn = transition(noticed, open_run, Withdrawn("withdrawn by the workflow"), NOW)
    assert withdrawn.job.error == "withdrawn by the workflow"
    assert withdrawn.effects == [NotifyEnded()]


def test_a_withdrawal_drops_the_timer_the_job_waited_on() -> None:
    delayed = replace(STATES["pending_push"][0], run_at=NOW + 60_000)
    assert transition(delayed, None, Withdrawn(), NOW).effects == [CancelTimer(Due("job_1"))]
    idle, _ = STATES["scheduled_idle"]
    assert transition(idle, None, Withdrawn(), NOW).effects == [CancelTimer(Fire("job_1", SLOT))]


def test_an_interrupted_delivery_is_due_again_without_counting() -> None:
    before, open_run = STATES["running_push"]
    done = transition(before, open_run, Interrupted(), NOW)
    assert done.job.status is JobStatus.PENDING
    assert done.job.attempt == 0 and done.job.run_id is None and done.job.run_at == NOW
    assert done.runs[0].error == "interrupted by a restart"
    assert done.effects == [MakeReady()]


def test_a_retry_starts_afresh() -> None:
    done = transition(STATES["failed"][0], None, RetryRequested(), NOW)
    assert (done.job.attempt, done.job.error, done.job.completed_at) == (0, None, None)
    assert done.job.run_at == NOW
    assert done.effects == [MakeReady()]


def test_a_trigger_fires_even_a_disabled_job() -> None:
    disabled = replace(STATES["pending_push"][0], enabled=False, run_at=NOW + 60_000)
    done = transition(disabled, None, TriggerRequested(), NOW)
    assert done.job.run_at == NOW
    assert done.effects == [MakeReady()]


# ----------------------------------------------------------------------------- cron


def test_a_cron_fire_makes_the_job_due_and_arms_the_next_slot() -> None:
    before, _ = STATES["scheduled_idle"]
    done = transition(before, None, CronFired(SLOT), NOW)
    following = next_fire_ms("* * * * *", "UTC", NOW)
    assert done.job.run_at == SLOT and done.job.attempt == 0
    assert done.job.next_run_at == following
    assert done.effects == [ArmTimer(following, Fire("job_1", following)), MakeReady()]


def test_a_cron_fire_while_the_last_is_busy_is_skipped() -> None:
    before, _ = STATES["scheduled_delivering"]
    done = transition(before, None, CronFired(SLOT), NOW)
    assert done.job.run_at == SLOT and done.job.run_id == "run_1"  # still the old fire
    assert MakeReady() not in done.effects


def test_a_stale_or_disabled_cron_fire_changes_nothing() -> None:
    before, _ = STATES["scheduled_idle"]
    assert transition(before, None, CronFired(SLOT - 60_000), NOW).job is before
    disabled = replace(before, enabled=False)
    assert transition(disabled, None, CronFired(SLOT), NOW).job is disabled


def test_a_cron_job_after_its_fire_waits_for_the_next_slot_not_a_past_one() -> None:
    before, open_run = STATES["scheduled_delivering"]
    done = transition(before, open_run, EVENTS["ended_ok"], NOW)
    assert done.job.status is JobStatus.SCHEDULED and done.job.run_at is None
    assert done.job.next_run_at == next_fire_ms("* * * * *", "UTC", NOW)
    assert done.effects[-1] == ArmTimer(done.job.next_run_at, Fire("job_1", done.job.next_run_at))


# ----------------------------------------------------------------------------- create, edit


def test_created_jobs_are_due_now_later_or_at_their_first_fire() -> None:
    now_spec = JobSpec(trigger=Immediate(), handler=HANDLER)
    assert created("job_1", "proj_1", now_spec, NOW).run_at == NOW
    delayed = JobSpec(trigger=Delayed(delay_seconds=5), handler=HANDLER)
    assert created("job_1", "proj_1", delayed, NOW).run_at == NOW + 5_000
    cron = created("job_1", "proj_1", JobSpec(trigger=EVERY_MINUTE, handler=HANDLER), NOW)
    assert cron.status is JobStatus.SCHEDULED and cron.run_at is None
    assert cron.next_run_at == next_fire_ms("* * * * *", "UTC", NOW)


def test_an_edit_is_refused_while_the_job_runs_and_after_it_ended() -> None:
    with pytest.raises(Conflict):
        edited(STATES["running_push"][0], {"enabled": False}, NOW, reschedule=False)
    with pytest.raises(Conflict):
        edited(STATES["completed"][0], {"enabled": False}, NOW, reschedule=False)
    done = edited(STATES["pending_push"][0], {"run_at": NOW + 9_000}, NOW, reschedule=False)
    assert done.effects == [ArmTimer(NOW + 9_000, Due("job_1"))]


# ----------------------------------------------------------------------------- admission


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("pending_push", [MakeReady()]),
        ("pending_pull", [MakeReady()]),
        ("running_pull", [ArmTimer(NOW + 30_000, Lease("job_1", "tok"))]),
        ("running_push", []),
        ("scheduled_idle", [ArmTimer(SLOT, Fire("job_1", SLOT))]),
        ("scheduled_firing", [MakeReady()]),
        ("scheduled_delivering", []),
        ("completed", []),
        ("failed", []),
        ("cancelled", []),
    ],
)
def test_admission_of_each_state(state: str, expected: list[object]) -> None:
    assert admission(STATES[state][0], NOW) == expected


def test_readiness_needs_a_due_time_no_attempt_in_flight_and_an_enabled_job() -> None:
    pending, _ = STATES["pending_push"]
    assert is_ready(pending, NOW)
    assert not is_ready(replace(pending, run_at=NOW + 1), NOW)
    assert not is_ready(replace(pending, enabled=False), NOW)
    assert is_ready(replace(STATES["scheduled_firing"][0], enabled=False), NOW)
    assert not is_ready(STATES["scheduled_delivering"][0], NOW)
    assert not is_ready(STATES["completed"][0], NOW)


def test_the_job_rules_import_nothing_async_or_from_the_shell() -> None:
    code = (
        "import sys, flowyard.jobs.transitions\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('anyio', 'asyncio',"
        " 'aiosqlite', 'starlette', 'httpx') or m.startswith(('flowyard.storage',"
        " 'flowyard.http', 'flowyard.actors')))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_a_step_s_job_options_become_a_spec_with_every_field() -> None:
    from flowyard.jobs.model import PushQueue
    from flowyard.jobs.spec import JobOptions, JobSpec

    options = JobOptions(
        trigger=PushQueue(queue="q"),
        handler="http://h.example/x",
        name="n",
        timeout=7,
        max_attempts=9,
        backoff="linear",
        priority=2,
        callback_url="http://c.example/y",
        enabled=False,
    )
    spec = options.to_spec(Raw(b'{"a":1}'), idempotency_key="k")
    expected = {**msgspec.structs.asdict(options), "payload": Raw(b'{"a":1}')}
    assert msgspec.structs.asdict(spec) == {**expected, "idempotency_key": "k"}
    assert set(JobSpec.__struct_fields__) == {
        *JobOptions.__struct_fields__,
        "payload",
        "idempotency_key",
    }
