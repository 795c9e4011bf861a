"""``flowyard jobs list|show|create|claim|ack``: jobs and their runs on a server, and the pull
protocol by hand."""

import argparse
from typing import get_args

from flowyard.cli.common import described, print_table
from flowyard.cli.display import (
    cell,
    json_value,
    note,
    print_fields,
    print_json,
    shorten,
    trigger_text,
)
from flowyard.cli.job_options import add_job_options, job_body
from flowyard.cli.remote import add_paging, fetch, print_page, remote, remote_options
from flowyard.client import Client
from flowyard.client.models import ClaimedJob, Job, JobStatusName, TriggerName

LIST_COLUMNS = ("id", "name", "trigger", "status", "attempt", "created_at", "run_at", "error")
RUN_COLUMNS = (
    "id",
    "attempt",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "handler_status",
    "error",
)
CLAIM_COLUMNS = ("id", "claim_token", "attempt", "claimed_until", "payload")
RUNS_SHOWN = 100
"""``jobs show`` prints the newest runs only: a cron job may have thousands."""


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    jobs = commands.add_parser("jobs", help="create, inspect, claim and ack jobs")
    sub = jobs.add_subparsers(dest="jobs_command", required=True)
    options = remote_options()

    listing = sub.add_parser("list", parents=[options], help="jobs, newest first")
    listing.add_argument(
        "--status",
        choices=get_args(JobStatusName),
        help=described("only jobs in this status", "any status"),
    )
    listing.add_argument(
        "--trigger-type",
        choices=get_args(TriggerName),
        help=described("only jobs with this trigger", "any trigger"),
    )
    listing.add_argument("--queue", help=described("only the jobs of this queue", "any queue"))
    add_paging(listing)
    listing.set_defaults(run=remote(list_jobs))

    show = sub.add_parser("show", parents=[options], help="one job with its runs")
    show.add_argument("job_id", metavar="ID", help="the job's id (job_...)")
    show.set_defaults(run=remote(show_job))

    create = sub.add_parser(
        "create",
        parents=[options],
        help="create a job",
        description="Each option is a field of the body of POST /infra/jobs; those left out "
        "take the server's defaults.",
    )
    add_job_options(create)
    create.set_defaults(run=remote(create_job))

    claim = sub.add_parser("claim", parents=[options], help="claim jobs of a pull queue")
    claim.add_argument("--queue", required=True, help="the pull queue (required)")
    claim.add_argument("--count", type=int, default=1, help=described("jobs at most, 1..100", 1))
    claim.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=described("how long to wait for a job when none is there, 0..20", 0),
    )
    claim.add_argument(
        "--visibility-timeout",
        type=int,
        default=30,
        metavar="SECONDS",
        help=described("how long the claim lasts before the job is handed out again", 30),
    )
    claim.set_defaults(run=remote(claim_jobs))

    ack = sub.add_parser("ack", parents=[options], help="report the outcome of a claimed job")
    ack.add_argument("job_id", metavar="ID", help="the job's id (job_...)")
    ack.add_argument("--claim-token", required=True, help="the claim's token (required)")
    ack.add_argument(
        "--status",
        choices=["completed", "failed"],
        default="completed",
        help=described("how the job went", "completed"),
    )
    ack.add_argument(
        "--result",
        type=json_value,
        metavar="JSON",
        help=described("the job's result, a JSON value", "null"),
    )
    ack.add_argument("--error", help=described("why it failed", "none"))
    ack.add_argument(
        "--no-retry",
        action="store_true",
        help=described(
            "a failure is final: no further attempt", "off: retried while attempts remain"
        ),
    )
    ack.set_defaults(run=remote(ack_job))


def _row(job: Job) -> list[object]:
    return [
        job.id,
        cell(job.name, 32),
        shorten(trigger_text(job.trigger), 32),
        job.status,
        f"{job.attempt}/{job.max_attempts}",
        job.created_at,
        job.run_at,
        cell(job.error),
    ]


def list_jobs(client: Client, args: argparse.Namespace) -> int:
    """``flowyard jobs list``: newest first; ``attempt`` is attempts made/max_attempts."""
    page = fetch(
        args,
        client.jobs.list,
        client.jobs.iter,
        status=args.status,
        trigger_type=args.trigger_type,
        queue=args.queue,
    )
    print_page(args, "jobs", page, LIST_COLUMNS, _row)
    return 0


def show_job(client: Client, args: argparse.Namespace) -> int:
    """``flowyard jobs show``: the job's fields and its newest runs (``--json``:
    ``{"job", "runs"}``)."""
    job = client.jobs.get(args.job_id)
    runs = client.jobs.runs(job.id, limit=RUNS_SHOWN)
    if args.json:
        print_json({"job": job, "runs": runs.items})
        return 0
    print_job(job)
    print()
    rows = [
        [
            run.id,
            run.attempt,
            run.status,
            run.started_at,
            run.completed_at,
            run.duration_ms,
            run.handler_status,
            cell(run.error),
        ]
        for run in runs.items
    ]
    print_table(RUN_COLUMNS, rows)
    if runs.next_cursor is not None:
        note(f"(only the newest {RUNS_SHOWN} runs are shown)")
    return 0


def print_job(job: Job) -> None:
    """A job's fields, one per line."""
    workflow = job.workflow and f"{job.workflow.execution_id} step {job.workflow.step_id}"
    print_fields(
        [
            ("id", job.id),
            ("name", job.name),
            ("status", job.status),
            ("trigger", trigger_text(job.trigger)),
            ("handler", job.handler),
            ("attempt", f"{job.attempt}/{job.max_attempts}"),
            ("priority", job.priority),
            ("payload", job.payload),
            ("result", job.result),
            ("error", job.error),
            ("workflow", workflow),
            ("created_at", job.created_at),
            ("run_at", job.run_at),
            ("next_run_at", job.next_run_at),
            ("last_run_at", job.last_run_at),
            ("claimed_until", job.claimed_until),
            ("completed_at", job.completed_at),
        ]
    )


def create_job(client: Client, args: argparse.Namespace) -> int:
    """``flowyard jobs create``: the job as created."""
    return _print_one(args, client.jobs.create(job_body(args)))


def claim_jobs(client: Client, args: argparse.Namespace) -> int:
    """``flowyard jobs claim``: the jobs claimed, each with the token its ack needs (a table
    of none when none came)."""
    claimed = client.jobs.claim(
        args.queue,
        count=args.count,
        visibility_timeout=args.visibility_timeout,
        wait_seconds=args.wait,
    )
    if args.json:
        print_json(claimed)
        return 0
    rows = [_claimed_row(job) for job in claimed]
    print_table(CLAIM_COLUMNS, rows)
    if not claimed:
        note(f"(no job of {args.queue} was waiting)")
    return 0


def _claimed_row(job: ClaimedJob) -> list[object]:
    attempt = f"{job.attempt}/{job.max_attempts}"
    return [job.id, job.claim_token, attempt, job.claimed_until, cell(job.payload)]


def ack_job(client: Client, args: argparse.Namespace) -> int:
    """``flowyard jobs ack``: the job after the ack."""
    job = client.jobs.ack(
        args.job_id,
        args.claim_token,
        status=args.status,
        result=args.result,
        error=args.error,
        retryable=not args.no_retry,
    )
    return _print_one(args, job)


def _print_one(args: argparse.Namespace, job: Job) -> int:
    if args.json:
        print_json(job)
    else:
        print_job(job)
    return 0
