"""``flowyard executions list|show|items|cancel|pause|resume|signal``: workflow executions on a
server."""

import argparse
from typing import Any, get_args

from flowyard.cli.common import described, print_table
from flowyard.cli.display import (
    OUTPUT_WIDTH,
    cell,
    error_text,
    json_value,
    print_fields,
    print_json,
    print_record,
)
from flowyard.cli.remote import add_paging, fetch, print_page, remote, remote_options
from flowyard.client import UNSET, Client
from flowyard.client.models import Execution, ExecutionStatusName, ExecutionStep, StepItem

LIST_COLUMNS = ("id", "blueprint_id", "status", "steps", "started_at", "completed_at", "error")
STEP_COLUMNS = ("step_id", "status", "attempt", "job_id", "caught_by", "items")
ITEM_COLUMNS = ("index", "status", "attempt", "job_id", "output", "error")
DETAIL_COLUMNS = ("step_id", "field", "value")
EVENT_COLUMNS = ("seq", "at", "type", "step_id", "data")


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    executions = commands.add_parser("executions", help="inspect and steer workflow executions")
    sub = executions.add_subparsers(dest="executions_command", required=True)
    options = remote_options()

    listing = sub.add_parser("list", parents=[options], help="executions, newest first")
    listing.add_argument(
        "--blueprint-id", help=described("only this blueprint's executions", "every blueprint")
    )
    listing.add_argument(
        "--parent-execution-id",
        help=described("only the children this execution's sub_workflow steps started", "any"),
    )
    listing.add_argument(
        "--status",
        choices=get_args(ExecutionStatusName),
        help=described("only executions in this status", "any status"),
    )
    add_paging(listing)
    listing.set_defaults(run=remote(list_executions))

    show = sub.add_parser("show", parents=[options], help="one execution and its steps")
    show.add_argument("execution_id", metavar="ID", help="the execution's id (wfexec_...)")
    show.add_argument(
        "--events", action="store_true", help=described("also print its event log", "off")
    )
    show.set_defaults(run=remote(show_execution))

    items = sub.add_parser(
        "items", parents=[options], help="the items of a for_each step, in item order"
    )
    items.add_argument("execution_id", metavar="ID", help="the execution's id (wfexec_...)")
    items.add_argument("step_id", metavar="STEP", help="the for_each step's id")
    add_paging(items)
    items.set_defaults(run=remote(list_items))

    for name, command, what in (
        ("cancel", cancel, "cancel an execution (running, paused or failed)"),
        ("pause", pause, "pause a running execution: nothing new is queued until resumed"),
    ):
        control = sub.add_parser(name, parents=[options], help=what)
        control.add_argument("execution_id", metavar="ID", help="the execution's id (wfexec_...)")
        control.set_defaults(run=remote(command))

    resume_parser = sub.add_parser(
        "resume",
        parents=[options],
        help="resume an execution, retry one step, or complete a step by hand",
    )
    resume_parser.add_argument("execution_id", metavar="ID", help="the execution's id")
    resume_parser.add_argument(
        "--step",
        help=described("the step to run again (or to complete)", "the whole execution goes on"),
    )
    resume_parser.add_argument(
        "--override-output",
        type=json_value,
        default=UNSET,
        metavar="JSON",
        help=described(
            "complete --step with this output (a JSON value) instead of running it", "run it"
        ),
    )
    resume_parser.add_argument("--reason", help=described("kept in the event log", "no reason"))
    resume_parser.set_defaults(run=remote(resume))

    signal_parser = sub.add_parser(
        "signal",
        parents=[options],
        help="send a signal: it completes the oldest step waiting for NAME, or is kept",
    )
    signal_parser.add_argument("execution_id", metavar="ID", help="the execution's id")
    signal_parser.add_argument("name", metavar="NAME", help="the signal's name (1 to 128 chars)")
    signal_parser.add_argument(
        "--data",
        type=json_value,
        default=None,
        metavar="JSON",
        help=described("the output of the step that takes it (a JSON value)", "null"),
    )
    signal_parser.add_argument(
        "--idempotency-key",
        help=described("sending it again with this key answers the first answer", "none"),
    )
    signal_parser.set_defaults(run=remote(signal))


def _row(execution: Execution) -> list[object]:
    done = sum(step.status == "completed" for step in execution.steps)
    return [
        execution.id,
        execution.blueprint_id,
        execution.status,
        f"{done}/{len(execution.steps)}",
        execution.started_at,
        execution.completed_at,
        error_text(execution.error),
    ]


def list_executions(client: Client, args: argparse.Namespace) -> int:
    """``flowyard executions list``: newest first; ``steps`` is completed/total."""
    page = fetch(
        args,
        client.workflows.list_executions,
        client.workflows.iter_executions,
        blueprint_id=args.blueprint_id,
        status=args.status,
        parent_execution_id=args.parent_execution_id,
    )
    print_page(args, "executions", page, LIST_COLUMNS, _row)
    return 0


def show_execution(client: Client, args: argparse.Namespace) -> int:
    """``flowyard executions show``: the execution's fields, its steps, and with ``--events``
    its whole event log (``--json``: ``{"execution", "events"}``)."""
    execution = client.workflows.get_execution(args.execution_id)
    events = list(client.workflows.iter_events(execution.id)) if args.events else None
    if args.json and events is not None:
        print_json({"execution": execution, "events": events})
        return 0
    print_execution(args, execution)
    if events is not None:
        print()
        print_table(
            EVENT_COLUMNS,
            [[e.seq, e.at, e.type, e.step_id, cell(e.data or None)] for e in events],
        )
    return 0


def print_execution(args: argparse.Namespace, execution: Execution) -> None:
    """An execution as ``executions show`` prints it: the API's object with ``--json``, else
    its fields, a table of its steps and one of their outputs and errors."""
    if args.json:
        print_json(execution)
        return
    print_fields(
        [
            ("id", execution.id),
            ("blueprint_id", execution.blueprint_id),
            ("parent", parent_text(execution)),
            ("status", execution.status),
            ("error", error_text(execution.error, None)),
            ("input_data", execution.input_data),
            ("idempotency_key", execution.idempotency_key),
            ("started_at", execution.started_at),
            ("completed_at", execution.completed_at),
            ("cancelled_at", execution.cancelled_at),
            ("paused_at", execution.paused_at),
            ("resumed_at", execution.resumed_at),
            ("deadline_at", execution.deadline_at),
        ],
        uncut={"error"},
    )
    print()
    rows = [
        [step.step_id, step.status, step.attempt, step.job_id, step.caught_by, progress(step)]
        for step in execution.steps
    ]
    print_table(STEP_COLUMNS, rows)
    details = step_details(execution)
    if details:
        print()
        print_table(DETAIL_COLUMNS, details)


def progress(step: ExecutionStep) -> str | None:
    """A for_each step's progress: ``done/total``, and what failed or is out."""
    counts = step.items
    if counts is None:
        return None
    text = f"{counts.completed}/{counts.total}"
    extra = [
        f"{n} {name}"
        for n, name in (
            (counts.running, "running"),
            (counts.queued, "queued"),
            (counts.failed, "failed"),
            (counts.cancelled, "cancelled"),
        )
        if n
    ]
    return f"{text} ({', '.join(extra)})" if extra else text


def list_items(client: Client, args: argparse.Namespace) -> int:
    """``flowyard executions items ID STEP``: a for_each step's items, in item order."""
    page = fetch(
        args,
        lambda **kw: client.workflows.items(args.execution_id, args.step_id, **kw),
        lambda **kw: client.workflows.iter_items(args.execution_id, args.step_id, **kw),
    )
    print_page(args, "items", page, ITEM_COLUMNS, _item_row)
    return 0


def _item_row(item: StepItem) -> list[object]:
    output = None if item.output is None else cell(item.output, OUTPUT_WIDTH)
    return [item.index, item.status, item.attempt, item.job_id, output, error_text(item.error)]


def step_details(execution: Execution) -> list[list[object]]:
    """A row per step output (compact JSON, cut at :data:`OUTPUT_WIDTH`) and per step error
    (whole), in step order: what a person looks at to see how an execution went."""
    rows: list[list[object]] = []
    for step in execution.steps:
        if step.status == "completed" or step.output is not None:
            shown = "null" if step.output is None else cell(step.output, OUTPUT_WIDTH)
            rows.append([step.step_id, "output", shown])
        if step.error is not None:
            rows.append([step.step_id, "error", error_text(step.error, None)])
        if step.child_execution_id is not None:
            rows.append([step.step_id, "child_execution_id", step.child_execution_id])
    return rows


def parent_text(execution: Execution) -> str | None:
    """``<execution id> step <step id>`` (``item <index>`` added for a for_each item's child)
    for a child execution; None for a client's own."""
    parent = execution.parent
    if parent is None:
        return None
    text = f"{parent.execution_id} step {parent.step_id}"
    return text if parent.item_index is None else f"{text} item {parent.item_index}"


def cancel(client: Client, args: argparse.Namespace) -> int:
    """``flowyard executions cancel``: the answer ``{id, status, cancelled_at}``."""
    return _answer(args, client.workflows.cancel(args.execution_id))


def pause(client: Client, args: argparse.Namespace) -> int:
    """``flowyard executions pause``: the answer ``{id, status, paused_at}``."""
    return _answer(args, client.workflows.pause(args.execution_id))


def resume(client: Client, args: argparse.Namespace) -> int:
    """``flowyard executions resume``: the answer ``{id, status, resumed_at}``."""
    answer = client.workflows.resume(
        args.execution_id,
        step_id=args.step,
        override_output=args.override_output,
        reason=args.reason,
    )
    return _answer(args, answer)


def signal(client: Client, args: argparse.Namespace) -> int:
    """``flowyard executions signal``: the answer ``{signal_id, execution_id, name,
    consumed_by, replayed}``."""
    answer = client.workflows.signal(
        args.execution_id, args.name, args.data, idempotency_key=args.idempotency_key
    )
    return _answer(args, answer)


def _answer(args: argparse.Namespace, answer: Any) -> int:
    if args.json:
        print_json(answer)
    else:
        print_record(answer)
    return 0
