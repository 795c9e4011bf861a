"""``flowyard demo``: a real server child process, real workers, real executions that end
completed or compensated as planned, twice on the same file, and a clean stop on SIGINT."""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from flowyard.cli import main
from flowyard.client.models import Execution
from flowyard.demo import orders
from flowyard.demo.tally import Order, Tally
from flowyard.workflows.state import ExecutionStatus
from tests.conftest import ServerProcess, free_port

KEY = re.compile(r"^sign in with the API key: (sk_live_[0-9A-Za-z]{32,})$", re.M)
DASHBOARD = re.compile(r"^dashboard: (http://127\.0\.0\.1:(\d+))/dashboard$", re.M)
SERVER_PID = re.compile(r"^server pid (\d+) ", re.M)
FLOWYARD_DEMO = [sys.executable, "-m", "flowyard", "demo"]


def demo(db: str, *args: str, port: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLOWYARD_DEMO, "--db", db, "--port", str(port), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def executions(url: str, key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = http.get("/infra/workflows/executions", params=params).json()
            found += page["executions"]
            cursor = page["next_cursor"]
            if cursor is None:
                return found


def found(pattern: re.Pattern[str], text: str) -> re.Match[str]:
    match = pattern.search(text)
    assert match, text
    return match


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_demo_runs_twice_on_one_file_and_ends_as_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "demo.db")
    port = free_port()
    first = demo(db, "--executions", "20", "--exit", port=port)
    assert first.returncode == 0, first.stdout + first.stderr
    assert found(DASHBOARD, first.stdout).group(2) == str(port)
    assert "all 20 orders ended as planned: completed 15, compensated 5" in first.stdout
    assert gone(int(found(SERVER_PID, first.stdout).group(1)))

    # Again, in this process, on the same file: the project exists, a new key, the same
    # blueprint, new idempotency keys.
    assert main(["demo", "--db", db, "--port", "0", "--executions", "8", "--exit"]) == 0
    second = capsys.readouterr().out
    assert "(from an earlier run)" in second
    assert "all 8 orders ended as planned: completed 6, compensated 2" in second
    first_key, second_key = (found(KEY, out).group(1) for out in (first.stdout, second))
    assert first_key != second_key

    server = server_process(db)
    listed = executions(server.url, first_key)
    assert Counter(e["status"] for e in listed) == {"completed": 21, "compensated": 7}
    assert len({e["blueprint_id"] for e in listed}) == 1
    assert len({e["idempotency_key"] for e in listed}) == 28
    auth = {"Authorization": f"Bearer {second_key}"}
    for execution in listed:
        steps = {step["step_id"]: step for step in execution["steps"]}
        charge_id = steps["charge"]["output"]["charge_id"]
        refused = execution["input_data"]["address"] == orders.REFUSED_ADDRESS
        assert execution["status"] == ("compensated" if refused else "completed")
        if not refused:
            assert steps["ship"]["output"]["charge_id"] == charge_id
            assert steps["refund"]["status"] == "skipped"
            continue
        assert steps["ship"]["status"] == "failed"
        assert steps["ship"]["caught_by"] == "refund"
        assert "P.O. boxes" in steps["ship"]["error"]["message"]
        job = httpx.get(f"{server.url}/infra/jobs/{steps['refund']['job_id']}", headers=auth)
        assert job.json()["payload"]["charge_id"] == charge_id
        assert job.json()["payload"]["reason"] == steps["ship"]["error"]["message"]
        assert steps["refund"]["output"]["reason"] == steps["ship"]["error"]["message"]


def test_demo_serves_until_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(
            [*FLOWYARD_DEMO, "--db", str(tmp_path / "demo.db"), "--port", "0", "--executions", "4"],
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        text = out.read_text()
        url = found(DASHBOARD, text).group(1)
        key = found(KEY, text).group(1)
        assert "all 4 orders ended as planned: completed 3, compensated 1" in text
        assert httpx.get(f"{url}/dashboard").status_code == 200
        # The workers still run: an order triggered now is shipped too.
        blueprint_id = executions(url, key)[0]["blueprint_id"]
        trigger = httpx.post(
            f"{url}/infra/workflows/blueprints/{blueprint_id}/trigger",
            headers={"Authorization": f"Bearer {key}"},
            json={"input_data": orders.order("late", 1)},
        )
        execution_id = trigger.json()["execution_id"]
        while True:
            statuses = {e["id"]: e["status"] for e in executions(url, key)}
            if statuses[execution_id] == "completed":
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, out.read_text()
        assert gone(int(found(SERVER_PID, text).group(1)))
        assert "stopping the server" in out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def execution(execution_id: str, status: str, error: dict[str, str] | None = None) -> Execution:
    stamp = "2026-11-26T00:00:00.000Z"
    return msgspec.convert(
        {
            "id": execution_id,
            "blueprint_id": "wf_1",
            "project_id": "proj_1",
            "status": status,
            "input_data": {},
            "result": {},
            "error": error,
            "idempotency_key": None,
            "started_at": stamp,
            "completed_at": None,
            "cancelled_at": None,
            "paused_at": None,
            "pause_reason": None,
            "resumed_at": None,
            "deadline_at": stamp,
            "steps": [],
            "parent": None,
        },
        Execution,
    )


def test_tally_reports_each_end_once_and_names_what_went_otherwise() -> None:
    tally = Tally()
    tally.add(Order("ord-1", "wfexec_1", ExecutionStatus.COMPLETED))
    tally.add(Order("ord-2", "wfexec_2", ExecutionStatus.COMPENSATED))
    assert tally.record(execution("wfexec_other", "completed")) is None
    assert tally.record(execution("wfexec_1", "running")) is None
    line = tally.record(execution("wfexec_1", "completed"))
    assert line == "[1/2] ord-1 wfexec_1 completed   (completed 1, running 1)"
    assert tally.record(execution("wfexec_1", "completed")) is None
    assert not tally.done
    failure = {"code": "job_failed", "message": "boom"}
    assert tally.record(execution("wfexec_2", "failed", failure)) is not None
    assert tally.done
    assert tally.verdict() == [
        "1 of 2 orders did not end as planned: completed 1, failed 1",
        "  ord-2 wfexec_2: failed, planned compensated (job_failed: boom)",
    ]
