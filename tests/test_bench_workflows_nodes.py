"""``python -m bench.workflows --nodes 2``: the diamond benchmark against two cluster nodes.

A tiny real run on a throwaway PostgreSQL cluster prints one line with today's figures plus
the node count and each node's CPU; ``--nodes`` is refused with SQLite. Skipped, with the
reason, where PostgreSQL is not installed.
"""

import orjson
import pytest
from bench import postgres, workflows

pytest.importorskip("asyncpg")


def test_two_nodes_share_the_triggers_and_the_workers(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        postgres.find_binaries()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))
    argv = ["--postgres", "--nodes", "2", "--executions", "60", "--skip-latency"]
    code = workflows.main([*argv, "--lanes", "2", "--trigger-threads", "2", "--verify-sample", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    result = orjson.loads(lines[0])
    assert code == 0, result
    assert (result["nodes"], result["store"]) == (2, "postgresql")
    assert result["throughput_executions_finished"] == 60
    assert result["completed_missing"] == result["sample_wrong"] == 0
    assert result["throughput_errors"] == 0 and result["server_exit_code"] == 0
    # Every node took part: each used CPU during the phase.
    node_cpu = result["throughput_node_cpu_s"]
    assert len(node_cpu) == 2 and all(cpu > 0 for cpu in node_cpu), node_cpu


def test_nodes_are_refused_without_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        workflows.main(["--nodes", "2"])
    assert exited.value.code == 2
    assert "--nodes needs PostgreSQL" in capsys.readouterr().err
