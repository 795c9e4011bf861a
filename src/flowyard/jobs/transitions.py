"""A job's lifecycle as pure transitions: ``transition(job, run, event, now)``.

Like ``decide`` for executions: no async, no clock, no I/O, no randomness. Time, new ids,
the retry base and the backoff's random draw come in with the event; what the shell must do
after committing (arm or cancel timers, make the job ready, tell its ``callback_url``) comes
out as effects. An event the job's status does not allow raises :class:`Conflict` (409).
"""

import msgspec

from flowyard.errors import Conflict
from flowyard.jobs.attempts import close_run, is_cron
from flowyard.jobs.backoff import retry_delay_seconds
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
    Effect,
    Fire,
    HandlerAccepted,
    Interrupted,
    JobEvent,
    Lease,
    LeaseExtended,
    MakeReady,
    NotifyEnded,
    RetryRequested,
    Transition,
    TriggerRequested,
    Withdrawn,
)
from flowyard.jobs.model import (
    NULL,
    TERMINAL,
    Delayed,
    Job,
    JobStatus,
    Run,
    RunStatus,
    Scheduled,
    WorkflowRef,
)
from flowyard.jobs.spec import JobSpec

replace = msgspec.structs.replace


# ----------------------------------------------------------------------------- rules


def is_ready(job: Job, now: int) -> bool:
    """Whether the job may be claimed or delivered at ``now``."""
    return (
        (job.enabled or is_cron(job))  # a disabled cron job runs only when triggered
        and job.run_id is None
        and job.run_at is not None
        and job.run_at <= now
        and (
            job.status is JobStatus.PENDING or (job.status is JobStatus.SCHEDULED and is_cron(job))
        )
    )


def admission(job: Job, now: int) -> list[Effect]:
    """What a job that was just committed needs: the timers for its next step, or to be
    made ready now. An ended job needs nothing."""
    effects: list[Effect] = []
    if job.status in TERMINAL:
        return effects
    if job.callback_deadline is not None:
        # Also for a cron fire waiting on its 202 callback (status stays ``scheduled``).
        effects.append(ArmTimer(job.callback_deadline, Callback(job.id, job.run_id)))
    if job.status is JobStatus.RUNNING:
        if job.claimed_until is not None:
            effects.append(ArmTimer(job.claimed_until, Lease(job.id, job.claim_token)))
        return effects
    if job.status is JobStatus.SCHEDULED and job.run_at is None and job.next_run_at:
        if job.enabled:
            effects.append(ArmTimer(job.next_run_at, Fire(job.id, job.next_run_at)))
        return effects
    if (not job.enabled and not is_cron(job)) or job.run_at is None or job.run_id:
        return effects
    if job.run_at > now:
        effects.append(ArmTimer(job.run_at, Due(job.id)))
    else:
        effects.append(MakeReady())
    return effects


def released(old: Job, new: Job) -> list[Effect]:
    """The timers of ``old`` that ``new`` leaves without an object (lease, callback, due)."""
    effects: list[Effect] = []
    if old.claim_token is not None and new.claim_token != old.claim_token:
        effects.append(CancelTimer(Lease(old.id, old.claim_token)))
    if old.callback_deadline is not None and new.callback_deadline is None:
        effects.append(CancelTimer(Callback(old.id, old.run_id)))
    if new.status in TERMINAL and old.run_id is None:
        # Withdrawn before it started: it may wait for its time or its next fire.
        if old.run_at is not None:
            effects.append(CancelTimer(Due(old.id)))
        if old.next_run_at is not None:
            effects.append(CancelTimer(Fire(old.id, old.next_run_at)))
    return effects


def created(
    job_id: str, project_id: str, spec: JobSpec, now: int, workflow: WorkflowRef | None = None
) -> Job:
    """The record of a job created from ``spec`` at ``now``: due now, after its delay, or
    ``scheduled`` for its first cron fire."""
    trigger = spec.trigger
    run_at: int | None = now
    next_run_at = None
    status = JobStatus.PENDING
    if isinstance(trigger, Delayed):
        run_at = now + trigger.delay_seconds * 1000
    elif isinstance(trigger, Scheduled):
        status = JobStatus.SCHEDULED
        run_at = None
        next_run_at = next_fire_ms(trigger.schedule, trigger.timezone, now)
    return Job(
        id=job_id,
        project_id=project_id,
        trigger=trigger,
        handler=spec.handler,
        payload=spec.payload,
        name=spec.name,
        status=status,
        enabled=spec.enabled,
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        timeout=spec.timeout,
        backoff=spec.backoff,
        idempotency_key=spec.idempotency_key,
        created_at=now,
        run_at=run_at,
        next_run_at=next_run_at,
        callback_url=spec.callback_url,
        workflow=workflow,
    )


def transition(job: Job, run: Run | None, event: JobEvent, now: int) -> Transition:
    """The job after ``event`` at ``now``; ``run`` is its open run (None if it has none).

    Raises:
        Conflict: the job's status does not allow the event.
    """
    match event:  # the most frequent first
        case AttemptEnded():
            return _attempt_ended(job, run, event, now)
        case Claimed():
            return _start(job, now, event.run_id, event)
        case DeliveryStarted():
            return _start(job, now, event.run_id, None)
        case HandlerAccepted():
            if job.run_id is None or job.is_pull:
                raise Conflict("this run is not waiting for a callback")
            new = replace(job, callback_deadline=event.callback_deadline)
            runs = [replace(run, handler_status=event.handler_status)] if run else []
            return Transition(new, runs, admission(new, now))
        case LeaseExtended():
            if job.status is not JobStatus.RUNNING or not job.is_pull or job.run_id is None:
                raise Conflict(f"job {job.id} is not running")
            new = replace(job, claimed_until=now + event.visibility_seconds * 1000)
            return Transition(new, [], admission(new, now))
        case Withdrawn():
            return _withdrawn(job, run, event.reason, now)
        case Interrupted():
            if job.run_id is None:
                raise Conflict(f"job {job.id} has no attempt in flight")
            runs = (
                [close_run(run, now, RunStatus.FAILED, "interrupted by a restart")] if run else []
            )
            new = replace(
                job,
                status=JobStatus.SCHEDULED if is_cron(job) else JobStatus.PENDING,
                attempt=max(0, job.attempt - 1),
                run_id=None,
                run_at=now,
            )
            return Transition(new, runs, admission(new, now))
        case RetryRequested():
            if job.status is not JobStatus.FAILED:
                raise Conflict(f"only a failed job can be retried; this one is {job.status}")
            new = replace(
                job,
                status=JobStatus.PENDING,
                attempt=0,
                error=None,
                result=NULL,
                completed_at=None,
                run_at=now,
            )
            return Transition(new, [], admission(new, now))
        case TriggerRequested():
            _require_live(job, "trigger")
            if job.status is JobStatus.RUNNING or job.run_id is not None:
                raise Conflict("the job is running")
            if job.status is JobStatus.SCHEDULED and job.run_at is not None:
                raise Conflict("the job is already firing")
            new = replace(job, run_at=now, attempt=0 if is_cron(job) else job.attempt)
            # A manual trigger fires even a disabled job.
            effects: list[Effect] = [MakeReady()] if not new.enabled else admission(new, now)
            return Transition(new, [], effects)
        case CronFired():
            return _cron_fired(job, event.due, now)
        case _:
            raise TypeError(f"unexpected job event {event!r}")


def edited(job: Job, changes: dict[str, object], now: int, *, reschedule: bool) -> Transition:
    """A job changed by ``PATCH`` (fields already validated); 409 once it runs or has ended.

    With ``reschedule`` a scheduled job's next fire is computed again from ``now``.
    """
    _require_live(job, "update")
    if job.status is JobStatus.RUNNING or job.run_id is not None:
        raise Conflict("cannot update a job while it runs")
    new = replace(job, **changes)
    if isinstance(new.trigger, Scheduled) and reschedule:
        new = replace(new, next_run_at=_next_fire(new, now))
    return Transition(new, [], admission(new, now))


def _require_live(job: Job, action: str) -> None:
    if job.status in TERMINAL:
        raise Conflict(f"cannot {action} a job that is {job.status}")


def _start(job: Job, now: int, run_id: str, claim: Claimed | None) -> Transition:
    """Begin the job's next attempt: a claim (pull) or a delivery (push)."""
    if not (
        job.status is JobStatus.PENDING or (job.status is JobStatus.SCHEDULED and is_cron(job))
    ):
        raise Conflict(f"job {job.id} is {job.status}: it cannot start an attempt")
    if job.run_id is not None:
        raise Conflict(f"job {job.id} already has an attempt in flight")
    if job.is_pull != (claim is not None):
        raise Conflict(f"job {job.id} is claimed if and only if it is a pull job")
    attempt = job.attempt + 1
    run = Run(id=run_id, job_id=job.id, attempt=attempt, scheduled_at=job.run_at, started_at=now)
    if claim is not None:
        new = replace(
            job,
            attempt=attempt,
            run_id=run_id,
            last_run_at=now,
            status=JobStatus.RUNNING,
            claim_token=claim.claim_token,
            claimed_until=now + claim.visibility_seconds * 1000,
        )
    else:
        status = JobStatus.SCHEDULED if is_cron(job) else JobStatus.RUNNING
        new = replace(job, attempt=attempt, run_id=run_id, last_run_at=now, status=status)
    return Transition(new, [run], admission(new, now))


_CLEARED: dict[str, object] = {
    "run_id": None,
    "claim_token": None,
    "claimed_until": None,
    "callback_deadline": None,
}


def _attempt_ended(job: Job, run: Run | None, event: AttemptEnded, now: int) -> Transition:
    if job.run_id is None:
        raise Conflict(f"job {job.id} is not running")
    ok = event.completed
    runs = (
        [
            close_run(
                run,
                now,
                RunStatus.COMPLETED if ok else RunStatus.FAILED,
                event.error,
                event.handler_status,
            )
        ]
        if run
        else []
    )
    cron = is_cron(job)
    if ok:
        new = replace(
            job,
            **_CLEARED,
            status=JobStatus.SCHEDULED if cron else JobStatus.COMPLETED,
            result=event.result if event.result is not None else NULL,
            error=None,
            completed_at=now,
            run_at=None,
        )
    elif event.retryable and job.attempt < job.max_attempts:
        delay = retry_delay_seconds(job.backoff, job.attempt, event.retry_base_seconds, event.draw)
        new = replace(
            job,
            **_CLEARED,
            status=JobStatus.SCHEDULED if cron else JobStatus.PENDING,
            error=event.error,
            run_at=now + int(delay * 1000),
        )
    else:
        new = replace(
            job,
            **_CLEARED,
            status=JobStatus.SCHEDULED if cron else JobStatus.FAILED,
            error=event.error,
            completed_at=now,
            run_at=None,
        )
    if cron and new.run_at is None and new.next_run_at is not None:
        new = replace(new, next_run_at=max(new.next_run_at, _next_fire(new, now)))
    return Transition(new, runs, _after(job, new, now))


def _withdrawn(job: Job, run: Run | None, reason: str, now: int) -> Transition:
    _require_live(job, "cancel")
    runs = [close_run(run, now, RunStatus.FAILED, reason)] if run else []
    new = replace(
        job,
        **_CLEARED,
        status=JobStatus.CANCELLED,
        completed_at=now,
        error=job.error if reason == "cancelled" else reason,
    )
    return Transition(new, runs, _after(job, new, now))


def _after(old: Job, new: Job, now: int) -> list[Effect]:
    """The effects of an attempt's end or a withdrawal: timers released, the next step, and
    the notice to the job's ``callback_url`` (if it has one) once it has ended."""
    effects = released(old, new) + admission(new, now)
    if new.status in TERMINAL and new.callback_url is not None:
        effects.append(NotifyEnded())
    return effects


def _cron_fired(job: Job, due: int, now: int) -> Transition:
    if job.status is not JobStatus.SCHEDULED or job.next_run_at != due or not job.enabled:
        return Transition(job, [], [])  # a stale timer: the job moved on
    following = _next_fire(job, now)
    effects: list[Effect] = [ArmTimer(following, Fire(job.id, following))]
    if job.run_at is None and job.run_id is None:
        # run_at is the cron slot, so the run's scheduled_at names the fire it serves.
        new = replace(job, run_at=due, attempt=0, next_run_at=following)
        effects.append(MakeReady())
    else:
        new = replace(job, next_run_at=following)  # still busy with the previous fire: skip
    return Transition(new, [], effects)


def _next_fire(job: Job, after: int) -> int:
    trigger = job.trigger
    assert isinstance(trigger, Scheduled)
    return next_fire_ms(trigger.schedule, trigger.timezone, after)
