"""What ``flowyard serve`` writes to stderr with ``--log-format json`` and ``text``: the real
server process, a push handler that fails and a webhook receiver that is not there."""

import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess
from tests.receiver_support import running_receiver

StartServer = Callable[..., ServerProcess]


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone"


async def wait_lines(server: ServerProcess, found: Callable[[list[str]], bool]) -> list[str]:
    with anyio.fail_after(20):
        while True:
            lines = server.log_path.read_text().splitlines()
            if found(lines):
                return lines
            await anyio.sleep(0.05)


def failing_work(url: str, key: str, handler: str) -> tuple[str, str]:
    """A webhook to a dead receiver, then a push job whose one attempt fails; the job's id
    and the project's."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        hook = {"name": "dead", "url": dead_url(), "topics": ["jobs.*"]}
        made = client.post("/infra/webhooks", json=hook, headers={"X-Request-Id": "hook-1"})
        assert made.status_code == 201, made.text
        body = {"trigger": {"type": "immediate"}, "handler": handler, "max_attempts": 1}
        job = client.post("/infra/jobs", json=body, headers={"X-Request-Id": "make-job-1"})
        assert job.status_code == 202, job.text
        assert job.headers["x-request-id"] == "make-job-1"
        me = client.get("/core/whoami")
        assert me.status_code == 200, me.text
        return str(job.json()["id"]), str(me.json()["project_id"])


async def test_json_logs_are_one_object_per_line_with_the_ids(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "logs", list(ALL_SCOPES)).key
    with running_receiver() as receiver:
        handler = receiver.script("/fails", (500, "no"))
        server = await anyio.to_thread.run_sync(
            lambda: server_process(db, "--log-format", "json", "--log-level", "debug")
        )
        job_id, project_id = await anyio.to_thread.run_sync(failing_work, server.url, key, handler)
        lines = await wait_lines(
            server,
            lambda ls: (
                any('"flowyard.push"' in x for x in ls)
                and any('"flowyard.webhooks"' in x and "failed" in x for x in ls)
            ),
        )
    assert server.terminate() == 0
    lines = server.log_path.read_text().splitlines()
    parsed: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line
    for entry in parsed:
        assert {"ts", "level", "logger", "msg"} <= set(entry), entry
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["ts"]), entry
        assert set(entry) <= {"ts", "level", "logger", "msg", "exc", *ID_FIELDS}, entry
    messages = [entry["msg"] for entry in parsed]
    assert f"flowyard listening on {server.url}" in messages
    assert "ready" in messages and messages[-1] == "shut down"

    [push] = [e for e in parsed if e["logger"] == "flowyard.push"]
    assert push["msg"].startswith(f"delivery of {job_id} (attempt 1) failed")
    assert push["job_id"] == job_id
    assert push["request_id"] == "make-job-1"  # the request that created the job
    assert push["project_id"] == project_id

    hooks = [e for e in parsed if e["logger"] == "flowyard.webhooks" and "failed" in e["msg"]]
    assert hooks
    for entry in hooks:  # each attempt's line: the job's events came from its request
        assert entry["request_id"] == "make-job-1"
        assert entry["project_id"] == project_id

    access = [e for e in parsed if e["logger"] == "flowyard.access"]
    [create] = [e for e in access if e["msg"].startswith("POST /infra/jobs 202 ")]
    assert create["request_id"] == "make-job-1"
    assert create["project_id"] == project_id  # bound once the key was resolved
    [whoami] = [e for e in access if e["msg"].startswith("GET /core/whoami 200 ")]
    assert re.match(r"^[0-9a-f]{12}-[0-9a-f]+$", whoami["request_id"])


ID_FIELDS = ("request_id", "project_id", "execution_id", "job_id")


async def test_text_logs_stay_readable_and_carry_the_ids(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "logs", list(ALL_SCOPES)).key
    with running_receiver() as receiver:
        handler = receiver.script("/fails", (500, "no"))
        server = await anyio.to_thread.run_sync(lambda: server_process(db))
        job_id, project_id = await anyio.to_thread.run_sync(failing_work, server.url, key, handler)
        lines = await wait_lines(server, lambda ls: any("flowyard.push:" in x for x in ls))
    assert server.terminate() == 0
    assert f"flowyard listening on {server.url}" in lines  # the bare line, as before
    [push] = [line for line in lines if " flowyard.push: " in line]
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO flowyard.push: delivery", push)
    assert push.endswith(f" request_id=make-job-1 project_id={project_id} job_id={job_id}")
    assert not any(line.startswith("{") for line in lines)
    assert not any("flowyard.access" in line for line in lines)  # DEBUG: off at INFO


def test_a_refusal_to_start_is_a_json_line_too(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = ["serve", "--db", str(tmp_path / "f.db"), "--port", str(port)]
        done = subprocess.run(
            [sys.executable, "-m", "flowyard", *serve, "--log-format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    [line] = [json.loads(line) for line in done.stderr.splitlines()]
    assert line["level"] == "ERROR" and line["logger"] == "flowyard"
    assert line["msg"].startswith(f"cannot listen on 127.0.0.1:{port}: ")
