"""``flowyard blueprints create|list|show|archive|trigger``: workflow blueprints on a server."""

import argparse
import json
import sys
from typing import Any

from flowyard.cli.common import described, fail, print_table
from flowyard.cli.display import (
    cell,
    json_object,
    note,
    print_fields,
    print_json,
    print_record,
    trigger_text,
)
from flowyard.cli.executions import print_execution
from flowyard.cli.remote import add_paging, fetch, print_page, remote, remote_options
from flowyard.client import Client
from flowyard.client.models import Blueprint, BlueprintSummary
from flowyard.workflows.blueprint import Step

LIST_COLUMNS = ("id", "name", "description", "created_at")
STEP_COLUMNS = ("id", "trigger", "handler", "depends_on", "catch", "template")


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    blueprints = commands.add_parser("blueprints", help="create and inspect workflow blueprints")
    sub = blueprints.add_subparsers(dest="blueprints_command", required=True)
    options = remote_options()

    create = sub.add_parser("create", parents=[options], help="create a blueprint from JSON")
    create.add_argument("file", metavar="FILE", help="a JSON file with the body; - reads stdin")
    create.set_defaults(run=_create)

    listing = sub.add_parser("list", parents=[options], help="blueprints, newest first")
    listing.add_argument("--name", help="only blueprints with exactly this name (default: any)")
    listing.add_argument(
        "--archived", action="store_true", help="list archived blueprints too (default: not)"
    )
    add_paging(listing)
    listing.set_defaults(run=remote(list_blueprints))

    trigger = sub.add_parser("trigger", parents=[options], help="start an execution")
    trigger.add_argument("blueprint_id", metavar="ID", help="the blueprint's id (wf_...)")
    trigger.add_argument(
        "--input",
        type=json_object,
        default={},
        metavar="JSON",
        help=described("the execution's input_data, a JSON object", "{}"),
    )
    trigger.add_argument(
        "--idempotency-key",
        help=described("triggering again with this key returns the first execution", "none"),
    )
    trigger.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help=described(
            "wait up to SECONDS for the execution to end, print it, exit 1 unless completed",
            "do not wait",
        ),
    )
    trigger.set_defaults(run=remote(trigger_blueprint))

    show = sub.add_parser("show", parents=[options], help="one blueprint with its steps")
    show.add_argument("blueprint_id", metavar="ID", help="the blueprint's id (wf_...)")
    show.set_defaults(run=remote(show_blueprint))

    archive = sub.add_parser(
        "archive",
        parents=[options],
        help="archive a blueprint: it leaves lists and cannot be triggered; its executions run on",
    )
    archive.add_argument("blueprint_id", metavar="ID", help="the blueprint's id (wf_...)")
    archive.set_defaults(run=remote(archive_blueprint))


def read_body(path: str) -> dict[str, Any]:
    """The JSON object in ``path`` (``-``: stdin); ``ValueError`` says what is wrong."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as file:
                text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"{name} must hold a JSON object (the blueprint body)")
    return body


def _create(args: argparse.Namespace) -> int:
    # The file is read before the key is checked or the server called: a bad file changes
    # nothing and says so first.
    try:
        args.body = read_body(args.file)
    except ValueError as exc:
        fail(str(exc))
        return 1
    return remote(create_blueprint)(args)


def create_blueprint(client: Client, args: argparse.Namespace) -> int:
    """``flowyard blueprints create``: the blueprint as the server stored it."""
    return _show(args, client.workflows.create_blueprint(args.body))


def trigger_blueprint(client: Client, args: argparse.Namespace) -> int:
    """``flowyard blueprints trigger``: the answer ``{execution_id, blueprint_id, status,
    started_at}`` and whether it was a replay; with ``--wait``, the ended execution."""
    started = client.workflows.trigger(
        args.blueprint_id, args.input, idempotency_key=args.idempotency_key
    )
    if started.replayed:
        note(f"(idempotency key {args.idempotency_key} was used before: its execution)")
    if args.wait is None:
        if args.json:
            print_json(started)
        else:
            print_record(started)
        return 0
    execution = client.workflows.wait_for_execution(started.execution_id, timeout=args.wait)
    print_execution(args, execution)
    return 0 if execution.status == "completed" else 1


def list_blueprints(client: Client, args: argparse.Namespace) -> int:
    """``flowyard blueprints list [--name NAME] [--archived]``: newest first."""
    page = fetch(
        args,
        client.workflows.list_blueprints,
        client.workflows.iter_blueprints,
        name=args.name,
        archived=args.archived,
    )
    if args.archived:  # only then can a row be archived
        print_page(args, "blueprints", page, (*LIST_COLUMNS, "archived_at"), _archived_row)
    else:
        print_page(args, "blueprints", page, LIST_COLUMNS, _row)
    return 0


def _row(blueprint: BlueprintSummary) -> list[object]:
    return [blueprint.id, blueprint.name, cell(blueprint.description), blueprint.created_at]


def _archived_row(blueprint: BlueprintSummary) -> list[object]:
    return [*_row(blueprint), blueprint.archived_at]


def show_blueprint(client: Client, args: argparse.Namespace) -> int:
    """``flowyard blueprints show``: its fields and a table of its steps."""
    return _show(args, client.workflows.get_blueprint(args.blueprint_id))


def archive_blueprint(client: Client, args: argparse.Namespace) -> int:
    """``flowyard blueprints archive``: the blueprint, now with its ``archived_at``."""
    return _show(args, client.workflows.archive_blueprint(args.blueprint_id))


def _show(args: argparse.Namespace, blueprint: Blueprint) -> int:
    if args.json:
        print_json(blueprint)
        return 0
    print_fields(
        [
            ("id", blueprint.id),
            ("name", blueprint.name),
            ("description", blueprint.description),
            ("max_duration_sec", blueprint.max_duration_sec),
            ("created_at", blueprint.created_at),
            ("archived_at", blueprint.archived_at),
        ]
    )
    print()
    rows = [
        [
            step.id,
            _kind_text(step),
            cell(step.job_trigger.handler if step.job_trigger else None),
            ",".join(step.depends_on),
            step.catch,
            cell(step.template),
        ]
        for step in blueprint.steps
    ]
    print_table(STEP_COLUMNS, rows)
    return 0


def _kind_text(step: Step) -> str:
    """What a step does, in a table cell: its job's trigger, the signal, or the child."""
    if step.wait_for_signal is not None:
        return f"signal {step.wait_for_signal.name}"
    if step.sub_workflow is not None:
        return f"child {step.sub_workflow.blueprint_id}"
    assert step.job_trigger is not None
    return trigger_text(step.job_trigger.trigger)
