"""The examples in ``examples/`` run as written against a real server process."""

import subprocess
import sys
from pathlib import Path

from tests.test_cli_remote import Cli, clean_env, cli, running  # noqa: F401 (fixtures)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_expense_example_maps_asks_and_pays(cli: Cli) -> None:  # noqa: F811
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "expenses.py")],
        env=clean_env(FLOWYARD_URL=cli.url, FLOWYARD_API_KEY=cli.key),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "ann: 105 -> completed, pay completed" in lines
    assert "bob: 900 waits for ['approve']" in lines
    assert "bob: 900 -> completed, pay completed" in lines
    assert "cy: 1240 -> completed, pay skipped" in lines
    assert "  checked lines: 6" in lines
    assert lines[-1] == "all reports ended as planned"
    with cli.client() as client:
        (blueprint,) = client.workflows.list_blueprints(name="expense-report").items
        executions = client.workflows.list_executions(blueprint_id=blueprint.id).items
        assert sorted(e.status for e in executions) == ["completed"] * 3
        big = next(e for e in executions if e.input_data["employee"] == "bob")
        steps = {s.step_id: s for s in big.steps}
        assert [line["what"] for line in steps["check"].output] == [
            f"hotel night {n}" for n in range(1, 7)
        ]
        assert steps["approve"].output == {"approved": True, "by": "dana"}
        small = next(e for e in executions if e.input_data["employee"] == "ann")
        assert {s.step_id: s.status for s in small.steps}["approve"] == "skipped"
