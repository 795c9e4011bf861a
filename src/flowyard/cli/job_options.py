"""The options of ``flowyard jobs create``, one per field of the job create body.

Each option maps to one field of ``POST /infra/jobs`` (the trigger's fields go into
``trigger``); an option left out leaves its field out, so the server's default applies and the
server's validation speaks for every field, with its JSON path.
"""

import argparse
from typing import Any, get_args

from flowyard.cli.common import described
from flowyard.cli.display import json_value
from flowyard.client.models import TriggerName
from flowyard.jobs.model import Backoff

TRIGGER_FIELDS = ("queue", "delay_seconds", "schedule", "timezone")
JOB_FIELDS = (
    "handler",
    "name",
    "priority",
    "max_attempts",
    "timeout",
    "backoff",
    "callback_url",
    "idempotency_key",
)
_UNSET: Any = object()


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The trigger, the handler, the payload and the job's other settings."""
    trigger = parser.add_argument_group("trigger")
    trigger.add_argument(
        "--trigger",
        choices=get_args(TriggerName),
        help=described(
            "when and how the job runs",
            "pull with --queue, delayed with --delay-seconds, scheduled with --schedule, "
            "else immediate",
        ),
    )
    trigger.add_argument("--queue", help=described("the queue of a pull or queue trigger", "none"))
    trigger.add_argument(
        "--delay-seconds",
        type=int,
        metavar="SECONDS",
        help=described("how long a delayed job waits", "none"),
    )
    trigger.add_argument(
        "--schedule", metavar="CRON", help=described("a scheduled job's cron expression", "none")
    )
    trigger.add_argument(
        "--timezone", help=described("the timezone of --schedule", "the server's: UTC")
    )
    job = parser.add_argument_group("job")
    job.add_argument(
        "--handler",
        metavar="URL",
        help=described("the URL the job is pushed to (not for pull)", "none"),
    )
    job.add_argument(
        "--payload",
        type=json_value,
        default=_UNSET,
        metavar="JSON",
        help=described("the job's payload, any JSON value", "null"),
    )
    job.add_argument("--name", help=described("a name to find the job by", "none"))
    job.add_argument(
        "--priority", type=int, help=described("1..10, higher runs first", "the server's: 5")
    )
    job.add_argument(
        "--max-attempts", type=int, help=described("attempts, 1..20", "the server's: 3")
    )
    job.add_argument(
        "--timeout",
        type=int,
        metavar="SECONDS",
        help=described("how long one push delivery may take, 1..30", "the server's: 30"),
    )
    job.add_argument(
        "--backoff",
        choices=get_args(Backoff),
        help=described("the wait between attempts", "the server's: exponential"),
    )
    job.add_argument(
        "--callback-url",
        metavar="URL",
        help=described("called when the job has ended", "none"),
    )
    job.add_argument("--disabled", action="store_true", help=described("create it disabled", "off"))
    job.add_argument(
        "--idempotency-key",
        help=described("creating again with this key returns the first job", "none"),
    )


def job_body(args: argparse.Namespace) -> dict[str, Any]:
    """The create body the options describe."""
    kind = args.trigger or _implied_trigger(args)
    trigger: dict[str, Any] = {"type": kind}
    trigger.update(_given(args, TRIGGER_FIELDS))
    body: dict[str, Any] = {"trigger": trigger, **_given(args, JOB_FIELDS)}
    if args.payload is not _UNSET:
        body["payload"] = args.payload
    if args.disabled:
        body["enabled"] = False
    return body


def _implied_trigger(args: argparse.Namespace) -> str:
    if args.queue is not None:
        return "pull"
    if args.delay_seconds is not None:
        return "delayed"
    if args.schedule is not None:
        return "scheduled"
    return "immediate"


def _given(args: argparse.Namespace, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
