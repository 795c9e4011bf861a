"""Expense reports: a map over a report's lines, a condition, and a manager's approval.

The blueprint ``expense-report``:

- ``check`` runs one ``receipts`` job per line of the report (``for_each``, five at once);
  its output is the list of checked lines, in order.
- ``approve`` waits for the signal ``manager-approval``, but only when the report is over
  500 (``when``); a smaller report skips it.
- ``pay`` runs once ``check`` is done and ``approve`` completed or was skipped by its
  condition, and only if the manager did not refuse.
- ``notify-refusal`` runs instead when the manager refused.

The script registers the blueprint, runs the ``receipts`` and ``payouts`` workers in this
process, files three reports (a small one, a large one the manager approves, a large one the
manager refuses), plays the manager by sending the signals, and prints how each report ended.
It exits 0 when every report ended as planned.

    FLOWYARD_URL=http://127.0.0.1:8080 FLOWYARD_API_KEY=... python examples/expenses.py
"""

import argparse
import os
import sys
from typing import Any

import anyio

from flowyard.client import AsyncClient
from flowyard.client.models import ClaimedJob, Execution
from flowyard.worker import Worker

APPROVAL = "manager-approval"
LIMIT = 500

BLUEPRINT: dict[str, Any] = {
    "name": "expense-report",
    "description": "Check every line, ask a manager above 500, then pay (examples/expenses.py)",
    "steps": [
        {
            "id": "check",
            "for_each": "{{input.lines}}",
            "max_concurrency": 5,
            "job_trigger": {"trigger": {"type": "pull", "queue": "receipts"}},
            "payload_template": {"line": "{{item}}", "index": "{{item_index}}"},
        },
        {
            "id": "approve",
            "depends_on": ["check"],
            "when": f"input.total > {LIMIT}",
            "wait_for_signal": {"name": APPROVAL, "timeout_sec": 86400},
        },
        {
            "id": "pay",
            "depends_on": ["approve"],
            "when": "steps.approve.status == 'skipped' || steps.approve.output.approved",
            "job_trigger": {"trigger": {"type": "pull", "queue": "payouts"}},
            "payload_template": {
                "employee": "{{input.employee}}",
                "total": "{{input.total}}",
                "lines": "{{steps.check.output}}",
            },
        },
        {
            "id": "notify-refusal",
            "depends_on": ["approve"],
            "when": "steps.approve.status == 'completed' && !steps.approve.output.approved",
            "job_trigger": {"trigger": {"type": "pull", "queue": "payouts"}},
            "payload_template": {
                "employee": "{{input.employee}}",
                "refused_by": "{{steps.approve.output.by}}",
            },
        },
    ],
}

REPORTS: list[tuple[dict[str, Any], bool | None]] = [
    # (input_data, the manager's answer: None when no approval is needed)
    (
        {
            "employee": "ann",
            "lines": [{"what": "train", "amount": 80}, {"what": "lunch", "amount": 25}],
            "total": 105,
        },
        None,
    ),
    (
        {
            "employee": "bob",
            "lines": [{"what": f"hotel night {n}", "amount": 150} for n in range(1, 7)],
            "total": 900,
        },
        True,
    ),
    (
        {
            "employee": "cy",
            "lines": [{"what": "conference", "amount": 1200}, {"what": "taxi", "amount": 40}],
            "total": 1240,
        },
        False,
    ),
]


def workers(client: AsyncClient) -> Worker:
    """The receipts checker and the payout service."""
    worker = Worker(client, wait_seconds=1)

    @worker.handler("receipts")
    async def check(job: ClaimedJob) -> dict[str, Any]:
        line = job.payload["line"]
        return {"line": job.payload["index"], "what": line["what"], "ok": line["amount"] > 0}

    @worker.handler("payouts")
    async def payout(job: ClaimedJob) -> dict[str, Any]:
        if "refused_by" in job.payload:
            return {"told": job.payload["employee"]}
        return {"paid": job.payload["employee"], "amount": job.payload["total"]}

    return worker


async def play(client: AsyncClient) -> bool:
    """File the reports, answer the approvals, print the outcomes; True if all as planned."""
    blueprint = await client.workflows.create_blueprint(BLUEPRINT)
    ok = True
    for input_data, answer in REPORTS:
        started = await client.workflows.trigger(blueprint.id, input_data)
        execution = await _until_settled(client, started.execution_id)
        if answer is not None:
            waiting = [s.step_id for s in execution.steps if s.status == "waiting"]
            print(f"{input_data['employee']}: {input_data['total']} waits for {waiting}")
            data = {"approved": answer, "by": "dana"}
            await client.workflows.signal(started.execution_id, APPROVAL, data)
        execution = await client.workflows.wait_for_execution(started.execution_id, timeout=60)
        steps = {s.step_id: s for s in execution.steps}
        expected = "skipped" if answer is False else "completed"
        ended = f"{execution.status}, pay {steps['pay'].status}"
        print(f"{input_data['employee']}: {input_data['total']} -> {ended}")
        print(f"  checked lines: {len(steps['check'].output or [])}")
        ok &= execution.status == "completed" and steps["pay"].status == expected
    return ok


async def _until_settled(client: AsyncClient, execution_id: str) -> Execution:
    """The execution once it waits for a signal or has ended."""
    with anyio.fail_after(60):
        while True:
            execution = await client.workflows.get_execution(execution_id)
            if execution.status != "running" or any(s.status == "waiting" for s in execution.steps):
                return execution
            await anyio.sleep(0.1)


async def main(url: str, api_key: str) -> int:
    async with AsyncClient(url, api_key) as client:
        worker = workers(client)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.arun)
            ok = await play(client)
            worker.stop()
    print("all reports ended as planned" if ok else "a report did not end as planned")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("FLOWYARD_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--api-key", default=os.environ.get("FLOWYARD_API_KEY"))
    args = parser.parse_args()
    if not args.api_key:
        sys.exit("give --api-key or set FLOWYARD_API_KEY")
    sys.exit(anyio.run(main, args.url, args.api_key))
