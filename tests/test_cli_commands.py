"""``flowyard blueprints trigger``, ``flowyard jobs create|claim|ack`` and what ``executions
show`` tells about each step, against a real server process."""

import json
import subprocess
import sys
import time

from flowyard.cli.display import OUTPUT_WIDTH
from tests import test_cli_remote
from tests.test_cli_remote import TIMEOUT, Cli, clean_env, make_blueprint

running = test_cli_remote.running  # the fixtures: one server for the module, a key per test
cli = test_cli_remote.cli

ORDER = '{"order": 1}'
HOOK = "http://127.0.0.1:9/hook"
CLAIM_COLUMNS = ["id", "claim_token", "attempt", "claimed_until", "payload"]


def fields_of(output: str) -> dict[str, str]:
    """The ``name: value`` lines a ``show`` prints first."""
    lines = output.splitlines()
    end = lines.index("") if "" in lines else len(lines)
    return {
        name.rstrip(":"): value for name, value in (line.split(None, 1) for line in lines[:end])
    }


# ------------------------------------------------------------------------------------ jobs


def test_jobs_create_claim_and_ack(cli: Cli) -> None:
    created = cli.json(
        "jobs", "create", "--queue", "cli-pull", "--payload", '{"n": 1}', "--name", "first",
        "--priority", "7",
    )  # fmt: skip
    assert created == cli.raw(f"/infra/jobs/{created['id']}")
    assert created["trigger"] == {"type": "pull", "queue": "cli-pull"}
    assert (created["payload"], created["name"], created["priority"]) == ({"n": 1}, "first", 7)
    assert created["status"] == "pending"
    later = fields_of(
        cli.ok("jobs", "create", "--delay-seconds", "600", "--handler", HOOK, "--disabled")
    )
    assert later["trigger"] == "delayed:600" and later["id"].startswith("job_")
    assert cli.raw(f"/infra/jobs/{later['id']}")["enabled"] is False
    every = cli.json(
        "jobs", "create", "--trigger", "scheduled", "--schedule", "*/5 * * * *", "--timezone",
        "Europe/Paris", "--handler", HOOK, "--max-attempts", "5",
        "--backoff", "fixed", "--timeout", "10", "--idempotency-key", "every-5",
    )  # fmt: skip
    assert every["trigger"] == {
        "type": "scheduled",
        "schedule": "*/5 * * * *",
        "timezone": "Europe/Paris",
    }
    assert (every["max_attempts"], every["backoff"], every["timeout"]) == (5, "fixed", 10)

    [claimed] = cli.json("jobs", "claim", "--queue", "cli-pull", "--wait", "5")
    assert claimed["id"] == created["id"] and claimed["claim_token"]
    acked = cli.json(
        "jobs", "ack", claimed["id"], "--claim-token", claimed["claim_token"], "--result",
        '{"ok": true}',
    )  # fmt: skip
    assert (acked["status"], acked["result"]) == ("completed", {"ok": True})
    again = cli("jobs", "ack", claimed["id"], "--claim-token", claimed["claim_token"])
    assert again.returncode == 1 and again.stderr.startswith("flowyard: conflict: ")

    second = cli.json("jobs", "create", "--queue", "cli-pull", "--max-attempts", "3")
    table = [line.split() for line in cli.ok("jobs", "claim", "--queue", "cli-pull").splitlines()]
    assert table[0] == CLAIM_COLUMNS
    [[job_id, token, attempt, _, payload]] = table[1:]
    assert (job_id, attempt, payload) == (second["id"], "1/3", "-")
    failed = fields_of(
        cli.ok("jobs", "ack", job_id, "--claim-token", token, "--status", "failed", "--error",
               "the printer is on fire", "--no-retry")
    )  # fmt: skip
    assert failed["status"] == "failed" and failed["error"] == "the printer is on fire"

    nothing = cli("jobs", "claim", "--queue", "cli-pull")
    assert nothing.returncode == 0 and nothing.stdout.split() == CLAIM_COLUMNS
    assert "no job of cli-pull was waiting" in nothing.stderr


def test_jobs_create_refuses_bad_input(cli: Cli) -> None:
    no_delay = cli("jobs", "create", "--trigger", "delayed")
    assert no_delay.returncode == 1 and no_delay.stdout == ""
    assert no_delay.stderr.startswith("flowyard: bad_request: ") and "$.trigger" in no_delay.stderr
    not_json = cli("jobs", "create", "--payload", "{nope")
    assert not_json.returncode == 2 and "not valid JSON" in not_json.stderr
    assert cli.json("jobs", "list")["jobs"] == []  # nothing was created


# ------------------------------------------------------------------------------ blueprints


def test_blueprints_trigger(cli: Cli) -> None:
    with cli.client() as client:
        blueprint_id = make_blueprint(client)
    started = cli(
        "blueprints", "trigger", blueprint_id, "--input", '{"order": 5}', "--idempotency-key",
        "ord-5", "--json",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    first = json.loads(started.stdout)
    assert (first["blueprint_id"], first["status"], first["replayed"]) == (
        blueprint_id,
        "running",
        False,
    )
    execution = cli.raw(f"/infra/workflows/executions/{first['execution_id']}")
    assert (execution["input_data"], execution["idempotency_key"]) == ({"order": 5}, "ord-5")
    replay = cli(
        "blueprints", "trigger", blueprint_id, "--input", '{"order": 5}', "--idempotency-key",
        "ord-5",
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    header, row = (line.split() for line in replay.stdout.splitlines())
    assert header == ["execution_id", "blueprint_id", "status", "started_at", "replayed"]
    assert row[0] == first["execution_id"] and row[-1] == "true"
    assert "ord-5 was used before" in replay.stderr
    listed = cli("blueprints", "trigger", blueprint_id, "--input", "[1]")
    assert listed.returncode == 2 and "must be a JSON object" in listed.stderr
    gone = cli("blueprints", "trigger", "wf_01JZZZZZZZZZZZZZZZZZZZZZZZ")
    assert gone.returncode == 1 and gone.stderr.startswith("flowyard: not_found: ")


def test_blueprints_trigger_waits_for_the_end(cli: Cli) -> None:
    with cli.client() as client:
        blueprint_id = make_blueprint(client)
        short = cli("blueprints", "trigger", blueprint_id, "--input", ORDER, "--wait", "0.3")
        assert short.returncode == 1 and short.stdout == ""
        [line] = short.stderr.splitlines()
        assert line.startswith("flowyard: timeout: execution wfexec_")
        assert line.endswith(" had not ended after 0.3 s")
        waiting = subprocess.Popen(
            [sys.executable, "-m", "flowyard", "blueprints", "trigger", blueprint_id, "--input",
             '{"order": 9}', "--wait", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(FLOWYARD_URL=cli.url, FLOWYARD_API_KEY=cli.key),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + TIMEOUT
            while waiting.poll() is None:  # work both queues (the first execution's too)
                assert time.monotonic() < deadline, "the command did not end"
                for queue in ("pay", "ship"):
                    for job in client.jobs.claim(queue, count=10, wait_seconds=0.1):
                        client.jobs.ack(job.id, job.claim_token, result={"done": queue})
            out, err = waiting.communicate(timeout=TIMEOUT)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait(10)
    assert waiting.returncode == 0, err
    shown = fields_of(out)
    assert shown["status"] == "completed" and shown["input_data"] == '{"order":9}'
    details = [line.split() for line in out.splitlines()[-3:]]
    assert details == [
        ["step_id", "field", "value"],
        ["charge", "output", '{"done":"pay"}'],
        ["ship", "output", '{"done":"ship"}'],
    ]


# ------------------------------------------------------------------------------ executions


def test_executions_show_prints_outputs_and_whole_errors(cli: Cli) -> None:
    big = {"receipt": "r" * 400}
    why = "the carrier refused the parcel: " + "no courier goes to that address " * 4
    with cli.client() as client:
        blueprint_id = make_blueprint(client)
        execution_id = client.workflows.trigger(blueprint_id, {"order": 7}).execution_id
        [charge] = client.jobs.claim("pay", wait_seconds=10)
        client.jobs.ack(charge.id, charge.claim_token, result=big)
        [ship] = client.jobs.claim("ship", wait_seconds=10)
        client.jobs.ack(ship.id, ship.claim_token, status="failed", error=why, retryable=False)
        ended = client.workflows.wait_for_execution(execution_id, timeout=TIMEOUT)
    assert ended.status == "failed"
    output = cli.ok("executions", "show", execution_id)
    lines = output.splitlines()
    details = lines[len(lines) - lines[::-1].index("") :]
    assert details[0].split() == ["step_id", "field", "value"]
    charge_row, ship_row = (line.split(None, 2) for line in details[1:])
    compact = json.dumps(big, separators=(",", ":"))
    assert charge_row[:2] == ["charge", "output"]
    assert charge_row[2] == compact[: OUTPUT_WIDTH - 3] + "..."
    assert ship_row[:2] == ["ship", "error"] and ship_row[2].endswith(" ".join(why.split()))
    assert " ".join(why.split()) in fields_of(output)["error"]  # the execution's, whole
