"""Starting and closing a job's attempts: the transitions every kind of job shares."""

import msgspec

from flowyard.ids import new_id
from flowyard.jobs.model import Job, Run, RunStatus, Scheduled

replace = msgspec.structs.replace


def begin_attempt(job: Job, now: int, **changes: object) -> tuple[Job, Run]:
    """The job with its next attempt started (a claim or a delivery), and that attempt's run."""
    attempt = job.attempt + 1
    run = Run(
        id=new_id("run"), job_id=job.id, attempt=attempt, scheduled_at=job.run_at, started_at=now
    )
    started = replace(job, attempt=attempt, run_id=run.id, last_run_at=now, **changes)
    return started, run


def close_run(
    run: Run,
    now: int,
    status: RunStatus,
    error: str | None,
    handler_status: int | None = None,
) -> Run:
    return replace(
        run,
        status=status,
        completed_at=now,
        duration_ms=now - run.started_at,
        error=error,
        handler_status=handler_status if handler_status is not None else run.handler_status,
    )


def is_cron(job: Job) -> bool:
    """Whether the job is a scheduled (cron) job."""
    return isinstance(job.trigger, Scheduled)
