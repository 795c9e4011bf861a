"""``flowyard executions|blueprints|jobs`` and ``flowyard worker`` against a real server process.

One server serves the module; each test works in a project of its own (a fresh key), so that
its lists hold only what it made.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowyard.client import Client
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess, free_port, start_server
from tests.workflow_support import pull_step

JOB_COLUMNS = ["id", "name", "trigger", "status", "attempt", "created_at", "run_at", "error"]
STEP_COLUMNS = ["step_id", "status", "attempt", "job_id", "caught_by", "items"]
TIMEOUT = 30.0


@dataclass
class Running:
    server: ServerProcess
    db: str


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    path = tmp_path_factory.mktemp("cli-remote")
    db = str(path / "flowyard.db")
    server = start_server(db, path, "--retry-base-seconds", "0.05")
    yield Running(server, db)
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(10)


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any ``FLOWYARD_*`` variable, plus ``values``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLOWYARD_")}
    return {**env, **values}


@dataclass
class Cli:
    """``flowyard`` as a subprocess, pointed at the server by FLOWYARD_URL/FLOWYARD_API_KEY."""

    url: str
    key: str
    cwd: Path

    def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowyard", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.cwd,
            env=env
            if env is not None
            else clean_env(FLOWYARD_URL=self.url, FLOWYARD_API_KEY=self.key),
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        """Stdout of a command that must succeed."""
        done = self(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", stdin=stdin))

    def table(self, *args: str) -> list[list[str]]:
        """The table the command prints, as the words of each line (header first)."""
        return [line.split() for line in self.ok(*args).splitlines()]

    def raw(self, path: str) -> Any:
        """The API's own answer to ``GET path``, to compare ``--json`` output with."""
        response = httpx.get(self.url + path, headers={"X-API-Key": self.key}, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()

    def client(self) -> Client:
        return Client(self.url, self.key)


@pytest.fixture
def cli(running: Running, tmp_path: Path) -> Cli:
    key = create_key_sync(running.db, f"cli-{uuid.uuid4().hex[:12]}", list(ALL_SCOPES)).key
    return Cli(running.server.url, key, tmp_path)


def failed_once(message: str) -> Callable[[Client, str], None]:
    """Claim one job of ``queue`` and fail it for good with ``message``."""

    def fail(client: Client, queue: str) -> None:
        [job] = client.jobs.claim(queue, wait_seconds=10)
        client.jobs.ack(job.id, job.claim_token, status="failed", error=message, retryable=False)

    return fail


def wait_until(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something true (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)
    return found


BLUEPRINT: dict[str, Any] = {
    "name": "orders",
    "description": "charge the card, then ship; refund when the charge fails",
    "steps": [
        pull_step("charge", "pay", {"order": "{{input.order}}"}, catch="refund"),
        pull_step("ship", "ship", "{{steps.charge.output}}", depends_on=["charge"]),
        pull_step("refund", "pay", {"why": "{{failure.error}}"}),
    ],
}


def make_blueprint(client: Client) -> str:
    return client.workflows.create_blueprint(BLUEPRINT).id


# ------------------------------------------------------------------------------ blueprints


def test_blueprints_create_list_and_show(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(BLUEPRINT))
    lines = cli.ok("blueprints", "create", str(path)).splitlines()
    fields = dict(line.split(None, 1) for line in lines[: lines.index("")])
    blueprint_id = fields["id:"]
    assert fields["name:"] == "orders" and fields["max_duration_sec:"] == "86400"
    steps = [line.split() for line in lines[lines.index("") + 1 :]]
    assert steps[0] == ["id", "trigger", "handler", "depends_on", "catch", "template"]
    assert steps[1] == ["charge", "pull:pay", "-", "-", "refund", '{"order":"{{input.order}}"}']
    assert steps[2][:5] == ["ship", "pull:ship", "-", "charge", "-"]
    # From stdin, as JSON: exactly the API's object.
    created = cli.json("blueprints", "create", "-", stdin=json.dumps({**BLUEPRINT, "name": "b2"}))
    assert created == cli.raw(f"/infra/workflows/blueprints/{created['id']}")
    assert cli.json("blueprints", "show", blueprint_id) == cli.raw(
        f"/infra/workflows/blueprints/{blueprint_id}"
    )
    shown = cli.ok("blueprints", "show", blueprint_id).splitlines()
    assert shown[0].split() == ["id:", blueprint_id] and shown[-3:] == lines[-3:]
    # Lists: newest first, shortened descriptions, the API's list object with --json.
    table = cli.table("blueprints", "list")
    assert table[0] == ["id", "name", "description", "created_at"]
    assert [row[:2] for row in table[1:]] == [[created["id"], "b2"], [blueprint_id, "orders"]]
    assert table[1][-2].endswith("...")  # the 55-character description is cut
    assert cli.json("blueprints", "list") == cli.raw("/infra/workflows/blueprints?limit=25")
    one = cli("blueprints", "list", "--limit", "1")
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 2
    assert "--all" in one.stderr  # told that there are more
    everything = cli.json("blueprints", "list", "--all")
    assert [b["id"] for b in everything["blueprints"]] == [created["id"], blueprint_id]
    assert everything["next_cursor"] is None


def test_blueprints_create_reports_bad_files_and_invalid_bodies(cli: Cli, tmp_path: Path) -> None:
    missing = cli("blueprints", "create", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert (
        missing.stderr
        == f"flowyard: cannot read {tmp_path / 'nope.json'}: No such file or directory\n"
    )
    (tmp_path / "bad.json").write_text('{"name": ')
    bad = cli("blueprints", "create", str(tmp_path / "bad.json"))
    assert bad.returncode == 1 and "is not valid JSON" in bad.stderr
    listed = cli("blueprints", "create", "-", stdin="[1, 2]")
    assert listed.returncode == 1 and "stdin must hold a JSON object" in listed.stderr
    invalid = {**BLUEPRINT, "steps": [pull_step("a", "q", depends_on=["ghost"])]}
    refused = cli("blueprints", "create", "-", stdin=json.dumps(invalid))
    assert refused.returncode == 1 and refused.stdout == ""
    first, *details = refused.stderr.splitlines()
    assert first.startswith("flowyard: bad_request: ")
    assert any("$.steps[0].depends_on[0]: " in line for line in (first, *details)), details
    assert refused.stderr.count("$.steps[0].depends_on[0]: ") == 1  # said once
    assert "Traceback" not in refused.stderr
    assert cli.json("blueprints", "list")["blueprints"] == []  # nothing was created


# ------------------------------------------------------------------------------ executions


def test_executions_list_and_show(cli: Cli) -> None:
    with cli.client() as client:
        blueprint_id = make_blueprint(client)
        failed = client.workflows.trigger(blueprint_id, {"order": 1}).execution_id
        failed_once("card declined")(client, "pay")
        running = client.workflows.trigger(blueprint_id, {"order": 2}).execution_id
    wait_until(
        lambda: cli.json("executions", "show", failed)["steps"][2]["status"] == "queued",
        "the refund step queued",
    )
    table = cli.table("executions", "list")
    assert table[0] == [
        "id",
        "blueprint_id",
        "status",
        "steps",
        "started_at",
        "completed_at",
        "error",
    ]
    assert [row[:4] for row in table[1:]] == [
        [running, blueprint_id, "running", "0/3"],
        [failed, blueprint_id, "running", "0/3"],
    ]
    assert cli.json("executions", "list") == cli.raw("/infra/workflows/executions?limit=25")
    only = cli.json("executions", "list", "--blueprint-id", blueprint_id, "--limit", "1")
    assert [e["id"] for e in only["executions"]] == [running] and only["next_cursor"]
    assert cli.json("executions", "list", "--status", "paused")["executions"] == []
    assert len(cli.json("executions", "list", "--all")["executions"]) == 2

    lines = cli.ok("executions", "show", failed).splitlines()
    fields = dict(line.split(None, 1) for line in lines[: lines.index("")])
    assert fields["id:"] == failed and fields["status:"] == "running"
    assert fields["input_data:"] == '{"order":1}' and fields["completed_at:"] == "-"
    below = lines[lines.index("") + 1 :]
    steps = [line.split() for line in below[: below.index("")]]
    assert steps[0] == STEP_COLUMNS
    charge, ship, refund = steps[1:]
    assert charge[:3] == ["charge", "failed", "1"] and charge[3].startswith("job_")
    assert charge[4:] == ["refund", "-"]
    assert ship == ["ship", "skipped", "0", "-", "-", "-"]
    assert refund[:3] == ["refund", "queued", "1"]
    details = [line.split(None, 2) for line in below[below.index("") + 1 :]]
    assert details == [
        ["step_id", "field", "value"],
        ["charge", "error", "job_failed: card declined"],
    ]
    assert cli.json("executions", "show", failed) == cli.raw(
        f"/infra/workflows/executions/{failed}"
    )

    with_events = cli.ok("executions", "show", failed, "--events").splitlines()
    log = [line.split() for line in with_events[len(lines) + 1 :]]
    assert log[0] == ["seq", "at", "type", "step_id", "data"]
    assert [row[2] for row in log[1:]] == [
        "triggered",
        "step_queued",
        "step_started",
        "step_failed",
        "caught",
        "step_skipped",
        "step_queued",
    ]
    both = cli.json("executions", "show", failed, "--events")
    assert both["execution"] == cli.raw(f"/infra/workflows/executions/{failed}")
    assert (
        both["events"]
        == cli.raw(f"/infra/workflows/executions/{failed}/events?limit=100")["events"]
    )


def test_executions_pause_resume_with_override_and_cancel(cli: Cli) -> None:
    with cli.client() as client:
        execution_id = client.workflows.trigger(make_blueprint(client), {"order": 3}).execution_id
    paused = cli.table("executions", "pause", execution_id)
    assert paused[0] == ["id", "status", "paused_at"]
    assert paused[1][:2] == [execution_id, "paused"]
    again = cli("executions", "pause", execution_id)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("flowyard: conflict: ")
    resumed = cli.json(
        "executions",
        "resume",
        execution_id,
        "--step",
        "charge",
        "--override-output",
        '{"charge_id": "ch_by_hand"}',
        "--reason",
        "charged by phone",
    )
    assert set(resumed) == {"id", "status", "resumed_at"}
    assert resumed["id"] == execution_id and resumed["status"] == "running"
    state = wait_until(
        lambda: (
            (s := cli.json("executions", "show", execution_id))["steps"][1]["status"] == "queued"
            and s
        ),
        "the ship step queued",
    )
    assert state["steps"][0]["status"] == "completed"
    assert state["result"] == {"charge": {"charge_id": "ch_by_hand"}}
    events = cli.json("executions", "show", execution_id, "--events")["events"]
    overridden = [e for e in events if e["type"] == "output_overridden"]
    assert [e["step_id"] for e in overridden] == ["charge"]
    assert any(e["type"] == "resumed" and "charged by phone" in json.dumps(e) for e in events)
    without_step = cli("executions", "resume", execution_id, "--override-output", "1")
    assert without_step.returncode == 1 and "bad_request" in without_step.stderr
    not_json = cli("executions", "resume", execution_id, "--override-output", "{oops")
    assert not_json.returncode == 2 and "not valid JSON" in not_json.stderr
    cancelled = cli.table("executions", "cancel", execution_id)
    assert cancelled[0] == ["id", "status", "cancelled_at"]
    assert cancelled[1][:2] == [execution_id, "cancelled"]
    twice = cli("executions", "cancel", execution_id, "--json")
    assert twice.returncode == 1 and twice.stdout == ""
    assert twice.stderr.startswith("flowyard: conflict: ")


def test_executions_signal(cli: Cli) -> None:
    steps = [{"id": "approve", "wait_for_signal": {"name": "approval"}}]
    with cli.client() as client:
        blueprint = client.workflows.create_blueprint({"name": "approval", "steps": steps})
        execution_id = client.workflows.trigger(blueprint.id).execution_id
    kept = cli.json("executions", "signal", execution_id, "other", "--idempotency-key", "k1")
    assert kept["consumed_by"] is None and kept["replayed"] is False
    again = cli.json("executions", "signal", execution_id, "other", "--idempotency-key", "k1")
    assert again == {**kept, "replayed": True}
    table = cli.table("executions", "signal", execution_id, "approval", "--data", '{"by": "ann"}')
    assert table[0] == ["signal_id", "execution_id", "name", "consumed_by", "replayed"]
    assert table[1][1:] == [execution_id, "approval", "approve", "false"]
    state = cli.json("executions", "show", execution_id)
    assert state["status"] == "completed" and state["result"] == {"approve": {"by": "ann"}}
    ended = cli("executions", "signal", execution_id, "approval")
    assert ended.returncode == 1 and ended.stderr.startswith("flowyard: conflict: ")
    not_json = cli("executions", "signal", execution_id, "approval", "--data", "{oops")
    assert not_json.returncode == 2 and "not valid JSON" in not_json.stderr


# ------------------------------------------------------------------------------------ jobs


def test_jobs_list_and_show(cli: Cli) -> None:
    with cli.client() as client:
        done = client.jobs.create({"trigger": {"type": "pull", "queue": "a"}, "payload": {"n": 1}})
        [claimed] = client.jobs.claim("a", wait_seconds=10)
        client.jobs.ack(claimed.id, claimed.claim_token, result={"ok": True})
        client.jobs.create({"trigger": {"type": "pull", "queue": "b"}, "name": "second"})
        hook = "http://127.0.0.1:9/hook"
        later = client.jobs.create(
            {"trigger": {"type": "delayed", "delay_seconds": 3600}, "handler": hook}
        )
        failing = client.jobs.create({"trigger": {"type": "pull", "queue": "c"}})
        failed_once("x" * 80)(client, "c")
    table = cli.table("jobs", "list")
    assert table[0] == JOB_COLUMNS
    assert [row[:5] for row in table[1:]] == [
        [failing.id, "-", "pull:c", "failed", "1/3"],
        [later.id, "-", "delayed:3600", "pending", "0/3"],
        [table[3][0], "second", "pull:b", "pending", "0/3"],
        [done.id, "-", "pull:a", "completed", "1/3"],
    ]
    assert table[1][-1] == "x" * 45 + "..."  # long errors are cut in tables
    assert cli.json("jobs", "list") == cli.raw("/infra/jobs?limit=25")
    assert [j["id"] for j in cli.json("jobs", "list", "--status", "failed")["jobs"]] == [failing.id]
    by_type = cli.json("jobs", "list", "--trigger-type", "delayed")["jobs"]
    assert [j["id"] for j in by_type] == [later.id]
    assert [j["id"] for j in cli.json("jobs", "list", "--queue", "a")["jobs"]] == [done.id]
    assert len(cli.json("jobs", "list", "--all")["jobs"]) == 4

    lines = cli.ok("jobs", "show", done.id).splitlines()
    fields = dict(line.split(None, 1) for line in lines[: lines.index("")])
    assert fields["status:"] == "completed" and fields["result:"] == '{"ok":true}'
    assert fields["payload:"] == '{"n":1}' and fields["trigger:"] == "pull:a"
    runs = [line.split() for line in lines[lines.index("") + 1 :]]
    assert runs[0][:3] == ["id", "attempt", "status"]
    assert len(runs) == 2 and runs[1][1:3] == ["1", "completed"]
    shown = cli.json("jobs", "show", failing.id)
    assert shown == {
        "job": cli.raw(f"/infra/jobs/{failing.id}"),
        "runs": cli.raw(f"/infra/jobs/{failing.id}/runs?limit=100")["runs"],
    }
    assert shown["runs"][0]["error"] == "x" * 80  # whole in JSON


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("executions", "show", "wfexec_01JZZZZZZZZZZZZZZZZZZZZZZZ"), "execution"),
        (("executions", "cancel", "wfexec_01JZZZZZZZZZZZZZZZZZZZZZZZ"), "execution"),
        (("blueprints", "show", "wf_01JZZZZZZZZZZZZZZZZZZZZZZZ"), "blueprint"),
        (("jobs", "show", "job_01JZZZZZZZZZZZZZZZZZZZZZZZ"), "job"),
    ],
)
def test_unknown_ids_are_404_and_exit_1(cli: Cli, args: tuple[str, ...], message: str) -> None:
    for extra in ((), ("--json",)):
        done = cli(*args, *extra)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("flowyard: not_found: ") and message in done.stderr
        assert len(done.stderr.splitlines()) == 1


def test_key_url_and_connection_errors(cli: Cli) -> None:
    missing = cli("jobs", "list", env=clean_env(FLOWYARD_URL=cli.url))
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == "flowyard: no API key: pass --api-key or set FLOWYARD_API_KEY\n"
    # Options instead of the environment.
    given = cli("jobs", "list", "--url", cli.url, "--api-key", cli.key, env=clean_env())
    assert given.returncode == 0, given.stderr
    assert given.stdout.split() == JOB_COLUMNS
    wrong = cli("executions", "list", "--api-key", "sk_live_" + "0" * 32)
    assert wrong.returncode == 1 and wrong.stderr.startswith("flowyard: unauthorized: ")
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = cli("blueprints", "list", "--url", nobody)
    assert unreachable.returncode == 1 and unreachable.stdout == ""
    [line] = unreachable.stderr.splitlines()
    assert line.startswith(f"flowyard: cannot reach the server at {nobody}: ")
    too_many = cli("jobs", "list", "--limit", "500")
    assert too_many.returncode == 1
    assert too_many.stderr.splitlines()[0].startswith("flowyard: bad_request: ")
    assert too_many.stderr.count("$.limit: ") == 1  # the message says it; not again below
    both = cli("jobs", "list", "--limit", "5", "--all")
    assert both.returncode == 2 and "not allowed with" in both.stderr


# ---------------------------------------------------------------------------------- worker

HANDLERS = """
from flowyard.worker import Worker

worker = Worker(wait_seconds=1)


@worker.handler("cli-work")
def double(job):
    return {"double": job.payload["n"] * 2, "concurrency": worker.concurrency}


def make():
    return worker


not_a_worker = 42
"""


def flowyard_script() -> str:
    script = shutil.which("flowyard")
    assert script is not None, "the flowyard console script is not installed"
    return script


@pytest.mark.parametrize("target", ["handlers:worker", "handlers:make"])
def test_worker_runs_a_module_s_worker_until_sigterm(cli: Cli, tmp_path: Path, target: str) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    with cli.client() as client:
        ids = [
            client.jobs.create(
                {"trigger": {"type": "pull", "queue": "cli-work"}, "payload": {"n": n}}
            ).id
            for n in range(5)
        ]
        connection = ["--url", cli.url, "--api-key", cli.key]
        log_path = tmp_path / "worker.log"
        with open(log_path, "wb") as log:
            # The console script (not ``python -m``) so that the current directory is on
            # sys.path only because ``flowyard worker`` puts it there; a wrong FLOWYARD_URL
            # in the environment shows that --url wins.
            proc = subprocess.Popen(
                [flowyard_script(), "worker", target, "--concurrency", "3", *connection],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env=clean_env(FLOWYARD_URL=f"http://127.0.0.1:{free_port()}"),
            )
        try:
            jobs = wait_until(
                lambda: (
                    (found := [client.jobs.get(i) for i in ids])
                    and all(job.status == "completed" for job in found)
                    and found
                ),
                "every job completed",
            )
            assert [job.result for job in jobs] == [
                {"double": 2 * n, "concurrency": 3} for n in range(5)
            ]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(TIMEOUT) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    output = log_path.read_text()
    assert "SIGTERM" in output and "Traceback" not in output, output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("handlers", "expected MODULE:OBJECT"),
        ("handlers:", "expected MODULE:OBJECT"),
        ("no_such_module:worker", "cannot import 'no_such_module'"),
        ("handlers:missing", "'handlers' has no attribute 'missing'"),
        ("handlers:not_a_worker", "handlers:not_a_worker is not a flowyard.worker.Worker (int)"),
        ("flowyard.worker:Worker", "flowyard.worker:Worker has no handlers registered"),
    ],
)
def test_worker_refuses_a_bad_target(cli: Cli, tmp_path: Path, target: str, message: str) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    done = cli("worker", target)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"flowyard: {message}")
    assert "Traceback" not in done.stderr


def test_worker_without_a_key_exits_2_at_once(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    done = cli("worker", "handlers:worker", env=clean_env(FLOWYARD_URL=cli.url))
    assert done.returncode == 2, done.stderr
    assert done.stderr == "flowyard: no API key: pass --api-key or set FLOWYARD_API_KEY\n"
    (tmp_path / "keyed.py").write_text(HANDLERS.replace("Worker(", f"Worker(api_key={cli.key!r}, "))
    with cli.client() as client:
        job = client.jobs.create({"trigger": {"type": "pull", "queue": "cli-work"}})
    # A Worker with a key of its own needs none from the command line: it claims the job.
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowyard", "worker", "keyed:worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        env=clean_env(FLOWYARD_URL=cli.url),
    )
    try:
        with cli.client() as client:
            wait_until(lambda: client.jobs.get(job.id).status != "pending", "the job was claimed")
    finally:
        proc.kill()
        proc.wait(10)


def test_worker_exits_1_when_its_claims_are_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    done = cli("worker", "handlers:worker", "--api-key", "sk_live_" + "0" * 32)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1].startswith("flowyard: unauthorized: ")
    assert "Traceback" not in done.stderr
