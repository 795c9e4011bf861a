"""``flowyard executions show`` with map progress and ``flowyard executions items``."""

from flowyard.client import Client
from tests import test_cli_remote
from tests.test_cli_remote import Cli, wait_until

running = test_cli_remote.running  # the module's server, and a key of its own per test
cli = test_cli_remote.cli

MAP = {
    "name": "cli-map",
    "steps": [
        {
            "id": "m",
            "job_trigger": {"trigger": {"type": "pull", "queue": "cli-map"}},
            "for_each": "{{input.xs}}",
            "max_concurrency": 2,
            "payload_template": {"x": "{{item}}"},
        }
    ],
}


def test_map_progress_and_items(cli: Cli) -> None:
    with cli.client() as client:
        check_map(cli, client)


def check_map(cli: Cli, client: Client) -> None:
    blueprint = client.workflows.create_blueprint(MAP)
    started = client.workflows.trigger(blueprint.id, {"xs": [1, 2, 3]})
    [first, _] = client.jobs.claim("cli-map", count=5, wait_seconds=5)
    client.jobs.ack(first.id, first.claim_token, result={"sq": 1})
    wait_until(
        lambda: client.workflows.get_execution(started.execution_id).steps[0].items.completed,  # type: ignore[union-attr]
        "item 0 completed",
    )
    shown = cli.ok("executions", "show", started.execution_id).splitlines()
    [row] = [line for line in shown if line.startswith("m ")]
    assert row.split()[1] == "running"
    assert row.endswith("1/3 (1 running, 1 queued)") or row.endswith("1/3 (2 queued)")

    table = cli.table("executions", "items", started.execution_id, "m")
    assert table[0] == ["index", "status", "attempt", "job_id", "output", "error"]
    assert [r[:2] for r in table[1:]] == [["0", "completed"], ["1", "queued"], ["2", "queued"]] or [
        r[:2] for r in table[1:]
    ] == [["0", "completed"], ["1", "running"], ["2", "queued"]]
    assert table[1][3] == first.id and table[1][4] == '{"sq":1}'
    listed = cli.json("executions", "items", started.execution_id, "m", "--all")
    path = f"/infra/workflows/executions/{started.execution_id}/steps/m/items?limit=100"
    assert listed == cli.raw(path)
    page = cli.json("executions", "items", started.execution_id, "m", "--limit", "1")
    assert [i["index"] for i in page["items"]] == [0] and page["next_cursor"]
    missing = cli("executions", "items", started.execution_id, "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("flowyard: not_found: ")
