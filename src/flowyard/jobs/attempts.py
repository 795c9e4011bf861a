"""Closing a job's attempt (its run), and the test for cron jobs: what every transition shares."""

import msgspec

from flowyard.jobs.model import Job, Run, RunStatus, Scheduled

replace = msgspec.structs.replace


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
