"""``flowyard jobs list|show``: jobs and their runs on a server."""

import argparse
from typing import get_args

from flowyard.cli.common import described, print_table
from flowyard.cli.display import cell, note, print_fields, print_json, shorten, trigger_text
from flowyard.cli.remote import add_paging, fetch, print_page, remote, remote_options
from flowyard.client import Client
from flowyard.client.models import Job, JobStatusName, TriggerName

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
RUNS_SHOWN = 100
"""``jobs show`` prints the newest runs only: a cron job may have thousands."""


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    jobs = commands.add_parser("jobs", help="inspect jobs and their runs")
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
