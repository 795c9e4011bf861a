"""``python -m bench.chaos --nodes 3``: the crash soak against three cluster nodes.

Three ``flowyard serve --node-url`` processes share a throwaway PostgreSQL database; the load
is spread over them while one node at a time is killed (or stopped with SIGTERM) and brought
back on its port. Skipped, with the reason, where PostgreSQL is not installed.
"""

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench import postgres
from bench.chaos import Outcome, main, report, soak
from bench.chaos_load import Settings

pytest.importorskip("asyncpg")


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    try:
        postgres.find_binaries()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with postgres.running_cluster() as cluster:
        settings = Settings(
            cycles=2,
            seconds_per_cycle=3.0,
            seed=random.randrange(2**31),
            triggers_per_second=15.0,
            jobs_per_second=3.0,
            quiesce_timeout=60.0,
            workdir=tmp_path_factory.mktemp("chaos-nodes"),
            db=cluster.create_database(),
            nodes=3,
            sigterm_share=0.5,
        )
        yield soak(settings)


def describe(outcome: Outcome) -> str:
    return f"{json.dumps(outcome.figures)}\n{report(outcome.violations)}"


def test_three_nodes_keep_every_invariant_across_kills(soaked: Outcome) -> None:
    figures = soaked.figures
    assert figures["violations"] == 0, describe(soaked)
    assert figures["quiesced"] and figures["webhooks_drained"], describe(soaked)
    assert figures["nodes"] == 3 and figures["final_exit_codes"] == [0, 0, 0], describe(soaked)
    kills = figures["kills"]
    assert kills["SIGKILL"] + kills["SIGTERM"] == 2, describe(soaked)
    # Each ended node's shards were owned by the others again, and the time was measured.
    assert figures["takeover_timeouts"] == 0, describe(soaked)
    assert figures["takeover_ms"]["max"] is not None, describe(soaked)
    # The load reached every node and was acknowledged across the kills.
    assert all(cpu > 0 for cpu in figures["node_cpu_s"]), describe(soaked)
    assert figures["triggers_confirmed"] > 0 and figures["acks"] > 0, describe(soaked)
    assert figures["webhook_events_distinct"] == figures["webhook_events_stored"], describe(soaked)


def test_nodes_need_postgresql(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--nodes", "3", "--cycles", "1", "--keep", str(tmp_path)])
    assert exited.value.code == 2
    assert "--nodes needs PostgreSQL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--nodes", "99", "--postgres"])
