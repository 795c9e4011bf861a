"""``flowyard schedules list|create|get|update|delete|trigger``: workflow schedules on a
server (blueprints triggered on a cron schedule)."""

import argparse
from typing import TypeVar

from flowyard.cli.common import described
from flowyard.cli.display import cell, json_object, print_json, print_record
from flowyard.cli.remote import add_paging, fetch, print_page, remote, remote_options
from flowyard.client import Client
from flowyard.client.models import UNSET, Schedule, Unset

LIST_COLUMNS = (
    "id",
    "blueprint_id",
    "schedule",
    "timezone",
    "enabled",
    "overlap",
    "next_fire_at",
    "last_fire_at",
    "last_execution_id",
)
OVERLAPS = ("skip", "allow")
T = TypeVar("T")


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    schedules = commands.add_parser(
        "schedules", help="trigger workflow blueprints on a cron schedule"
    )
    sub = schedules.add_subparsers(dest="schedules_command", required=True)
    options = remote_options()

    listing = sub.add_parser("list", parents=[options], help="schedules, newest first")
    listing.add_argument(
        "--blueprint",
        metavar="BLUEPRINT_ID",
        help=described("only the schedules of this blueprint", "every blueprint"),
    )
    add_paging(listing)
    listing.set_defaults(run=remote(list_schedules))

    create = sub.add_parser(
        "create",
        parents=[options],
        help="schedule a blueprint",
        description="Creates a schedule: the blueprint is triggered with --input at every fire "
        "of SCHEDULE (5-field cron, quoted: '*/5 * * * *'), read in --timezone.",
    )
    create.add_argument("blueprint_id", metavar="BLUEPRINT_ID", help="the blueprint (wf_...)")
    create.add_argument("schedule", metavar="SCHEDULE", help="a 5-field cron expression")
    _field_options(create, creating=True)
    create.set_defaults(run=remote(create_schedule))

    get = sub.add_parser("get", parents=[options], help="one schedule")
    get.add_argument("schedule_id", metavar="ID", help="the schedule's id (wfsch_...)")
    get.set_defaults(run=remote(get_schedule))

    update = sub.add_parser(
        "update", parents=[options], help="change a schedule (next fire computed again)"
    )
    update.add_argument("schedule_id", metavar="ID", help="the schedule's id (wfsch_...)")
    update.add_argument(
        "--schedule",
        metavar="CRON",
        help=described("a new 5-field cron expression", "unchanged"),
    )
    _field_options(update, creating=False)
    update.set_defaults(run=remote(update_schedule))

    delete = sub.add_parser("delete", parents=[options], help="delete a schedule")
    delete.add_argument("schedule_id", metavar="ID", help="the schedule's id (wfsch_...)")
    delete.set_defaults(run=remote(delete_schedule))

    trigger = sub.add_parser(
        "trigger", parents=[options], help="fire a schedule now (enabled or not)"
    )
    trigger.add_argument("schedule_id", metavar="ID", help="the schedule's id (wfsch_...)")
    trigger.set_defaults(run=remote(trigger_schedule))


def _field_options(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    """``--timezone``, ``--input``, ``--enable``/``--disable`` and ``--overlap``."""
    kept = "unchanged"
    parser.add_argument(
        "--timezone",
        metavar="IANA",
        help=described("the timezone the schedule is read in", "UTC" if creating else kept),
    )
    parser.add_argument(
        "--input",
        type=json_object,
        metavar="JSON",
        help=described("each execution's input_data, a JSON object", "{}" if creating else kept),
    )
    state = parser.add_mutually_exclusive_group()
    state.add_argument(
        "--enable",
        dest="enabled",
        action="store_const",
        const=True,
        help=described("fire at every slot", "enabled" if creating else kept),
    )
    state.add_argument(
        "--disable",
        dest="enabled",
        action="store_const",
        const=False,
        help=described("do not fire (trigger still works)", "enabled" if creating else kept),
    )
    parser.add_argument(
        "--overlap",
        choices=OVERLAPS,
        help=described(
            "skip: no fire while the previous execution is running or paused; allow: fire anyway",
            "skip" if creating else kept,
        ),
    )


def _given(value: T | None) -> T | Unset:
    """An option left out is a field left out of the body."""
    return UNSET if value is None else value


def _row(schedule: Schedule) -> list[object]:
    return [
        schedule.id,
        schedule.blueprint_id,
        cell(schedule.schedule, 24),
        schedule.timezone,
        schedule.enabled,
        schedule.overlap,
        schedule.next_fire_at,
        schedule.last_fire_at,
        schedule.last_execution_id,
    ]


def _show(args: argparse.Namespace, schedule: Schedule) -> int:
    if args.json:
        print_json(schedule)
    else:
        print_record(schedule)
    return 0


def list_schedules(client: Client, args: argparse.Namespace) -> int:
    """``flowyard schedules list [--blueprint ID]``: newest first."""
    schedules = client.workflows.schedules
    page = fetch(args, schedules.list, schedules.iter, blueprint_id=args.blueprint)
    print_page(args, "schedules", page, LIST_COLUMNS, _row)
    return 0


def create_schedule(client: Client, args: argparse.Namespace) -> int:
    """``flowyard schedules create BLUEPRINT_ID SCHEDULE``: the schedule as created."""
    schedule = client.workflows.schedules.create(
        args.blueprint_id,
        args.schedule,
        timezone=_given(args.timezone),
        input_data=_given(args.input),
        enabled=_given(args.enabled),
        overlap=_given(args.overlap),
    )
    return _show(args, schedule)


def get_schedule(client: Client, args: argparse.Namespace) -> int:
    """``flowyard schedules get ID``."""
    return _show(args, client.workflows.schedules.get(args.schedule_id))


def update_schedule(client: Client, args: argparse.Namespace) -> int:
    """``flowyard schedules update ID``: only the options given change."""
    schedule = client.workflows.schedules.update(
        args.schedule_id,
        schedule=_given(args.schedule),
        timezone=_given(args.timezone),
        input_data=_given(args.input),
        enabled=_given(args.enabled),
        overlap=_given(args.overlap),
    )
    return _show(args, schedule)


def delete_schedule(client: Client, args: argparse.Namespace) -> int:
    """``flowyard schedules delete ID``."""
    deleted = client.workflows.schedules.delete(args.schedule_id)
    if args.json:
        print_json(deleted)
    else:
        print_record(deleted)
    return 0


def trigger_schedule(client: Client, args: argparse.Namespace) -> int:
    """``flowyard schedules trigger ID``: the execution started."""
    started = client.workflows.schedules.trigger(args.schedule_id)
    if args.json:
        print_json(started)
    else:
        print_record(started)
    return 0
