"""Parent and child executions through the SDK and ``flowyard executions`` against a real
server process: the child's ``parent``, the step's ``child_execution_id``, and the list of a
parent's children."""

from tests.test_cli_remote import Cli, cli, running, wait_until  # noqa: F401 (fixtures)
from tests.workflow_support import pull_step


def test_parent_and_child_in_the_sdk_and_the_cli(cli: Cli) -> None:  # noqa: F811
    with cli.client() as client:
        child_bp = client.workflows.create_blueprint(
            {"name": "child", "steps": [pull_step("work", "cli-sub", {"n": "{{input.n}}"})]}
        )
        parent_bp = client.workflows.create_blueprint(
            {
                "name": "parent",
                "steps": [
                    {"id": "run", "sub_workflow": {"blueprint_id": child_bp.id, "input": {"n": 1}}}
                ],
            }
        )
        parent_id = client.workflows.trigger(parent_bp.id).execution_id
        parent = wait_until(
            lambda: (
                (e := client.workflows.get_execution(parent_id)).steps[0].child_execution_id and e
            ),
            "the child started",
        )
        child_id = parent.steps[0].child_execution_id
        assert parent.parent is None
        child = client.workflows.get_execution(child_id)
        assert child.parent is not None
        assert (child.parent.execution_id, child.parent.step_id) == (parent_id, "run")
        page = client.workflows.list_executions(parent_execution_id=parent_id)
        assert [e.id for e in page.items] == [child_id]

        lines = cli.ok("executions", "show", child_id).splitlines()
        fields = dict(line.split(None, 1) for line in lines[: lines.index("")])
        assert fields["parent:"] == f"{parent_id} step run"
        lines = cli.ok("executions", "show", parent_id).splitlines()
        fields = dict(line.split(None, 1) for line in lines[: lines.index("")])
        assert fields["parent:"] == "-"
        assert ["run", "child_execution_id", child_id] in [line.split() for line in lines]
        listed = cli.json("executions", "list", "--parent-execution-id", parent_id)
        assert listed == cli.raw(
            f"/infra/workflows/executions?parent_execution_id={parent_id}&limit=25"
        )
        assert [e["id"] for e in listed["executions"]] == [child_id]
