"""``flowyard schedules list|create|get|update|delete|trigger`` as a real process against the
real server: what each command sends, prints and exits with."""

import json
import os
import sys
from typing import Any

import anyio

from tests.conftest import Service
from tests.schedule_support import get_schedule, scheduled_blueprint
from tests.workflow_support import execution


async def flowyard(service: Service, *argv: str) -> tuple[int, str, str]:
    """Run ``python -m flowyard ARGV`` against the service; exit status, stdout, stderr."""
    env = {**os.environ, "FLOWYARD_URL": service.url, "FLOWYARD_API_KEY": service.key}
    done = await anyio.run_process([sys.executable, "-m", "flowyard", *argv], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def as_json(service: Service, *argv: str) -> Any:
    status, out, err = await flowyard(service, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


async def test_schedules_commands(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    made = await as_json(
        service,
        "schedules",
        "create",
        blueprint["id"],
        "0 9 * * 1",
        "--timezone",
        "Europe/Paris",
        "--input",
        '{"who": "cli"}',
        "--overlap",
        "allow",
    )
    assert made["id"].startswith("wfsch_")
    assert (made["schedule"], made["timezone"], made["overlap"]) == (
        "0 9 * * 1",
        "Europe/Paris",
        "allow",
    )
    assert made["input_data"] == {"who": "cli"} and made["enabled"] is True
    assert await get_schedule(service.client, made["id"]) == made
    assert await as_json(service, "schedules", "get", made["id"]) == made

    status, out, err = await flowyard(service, "schedules", "list")
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split()[:3] == ["id", "blueprint_id", "schedule"]
    assert row.startswith(made["id"]) and "Europe/Paris" in row
    listed = await as_json(service, "schedules", "list", "--blueprint", blueprint["id"])
    assert [s["id"] for s in listed["schedules"]] == [made["id"]]
    none = await as_json(service, "schedules", "list", "--blueprint", "wf_none")
    assert none == {"schedules": [], "next_cursor": None}

    changed = await as_json(service, "schedules", "update", made["id"], "--disable")
    assert changed["enabled"] is False and changed["next_fire_at"] is None
    assert changed["timezone"] == "Europe/Paris" and changed["input_data"] == {"who": "cli"}
    changed = await as_json(
        service, "schedules", "update", made["id"], "--enable", "--schedule", "0 0 1 1 *"
    )
    assert changed["enabled"] is True and changed["schedule"] == "0 0 1 1 *"

    started = await as_json(service, "schedules", "trigger", made["id"])
    assert started["blueprint_id"] == blueprint["id"] and started["status"] == "running"
    state = await execution(service.client, started["execution_id"])
    assert state["input_data"] == {"who": "cli"}

    status, out, err = await flowyard(service, "schedules", "delete", made["id"])
    assert status == 0, err
    assert made["id"] in out
    status, _, err = await flowyard(service, "schedules", "get", made["id"])
    assert status == 1 and "not found" in err


async def test_bad_schedule_is_one_message_and_exit_1(service: Service) -> None:
    blueprint = await scheduled_blueprint(service.client)
    status, out, err = await flowyard(
        service, "schedules", "create", blueprint["id"], "every day", "--input", '{"who": 1}'
    )
    assert status == 1 and out == ""
    assert "$.schedule" in err and "Traceback" not in err
    status, _, err = await flowyard(service, "schedules", "create", blueprint["id"])
    assert status == 2 and "SCHEDULE" in err
