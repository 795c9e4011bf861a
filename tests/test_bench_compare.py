"""``bench.compare``: a tiny real run of both sides prints one line of the promised shape.

The figures are the benchmark's business (``python -m bench.compare``). Nothing is installed
here (``--no-install``): BullMQ runs where redis-server, Node and the cached npm folder are
present, and is otherwise skipped with a message that says what is missing.
"""

import shutil
from pathlib import Path

import orjson
import pytest
from bench import compare, compare_bullmq

FLOWYARD_KEYS = {
    "flowyard_executions_per_s",
    "flowyard_p50_ms",
    "flowyard_p99_ms",
    "flowyard_server_cpu_s_per_1000_steps",
    "flowyard_low_load_p50_ms",
    "flowyard_low_load_p99_ms",
}
BULLMQ_KEYS = {
    "bullmq_workflows_per_s",
    "bullmq_p50_ms",
    "bullmq_p99_ms",
    "bullmq_redis_cpu_s_per_1000_steps",
    "bullmq_node_cpu_s_per_1000_steps",
    "bullmq_low_load_p50_ms",
    "bullmq_low_load_p99_ms",
}


def bullmq_can_run() -> bool:
    cached = compare_bullmq.CACHE / "node_modules" / "bullmq" / "package.json"
    return all(shutil.which(name) for name in ("redis-server", "node")) and cached.is_file()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = compare.main(["--no-install", *argv])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    return code, orjson.loads(lines[0])


def test_a_tiny_run_of_both_sides_prints_both_figures_and_their_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, result = run(capsys, "--workflows", "30", "--low-load-workflows", "5")
    assert code == 0
    assert (result["bench"], result["workflows"], result["in_flight"]) == ("compare", 30, 64)
    assert result.keys() >= FLOWYARD_KEYS
    assert all(isinstance(result[k], float) and result[k] > 0 for k in FLOWYARD_KEYS)
    assert result["flowyard_errors"] == result["flowyard_completed_missing"] == 0
    if not bullmq_can_run():
        skipped = str(result["bullmq_skipped"])
        assert any(what in skipped for what in ("redis-server", "Node.js", "--no-install"))
        assert result["ratio_flowyard_over_bullmq"] is None
        return
    assert result["bullmq_skipped"] is None
    assert result.keys() >= BULLMQ_KEYS
    assert all(isinstance(result[k], float) and result[k] > 0 for k in BULLMQ_KEYS)
    assert (result["bullmq_finished"], result["bullmq_wrong"]) == (30, 0)
    versions = result["bullmq_versions"]
    assert isinstance(versions, dict) and versions["bullmq"] and versions["redis"]
    ratio = result["flowyard_executions_per_s"] / result["bullmq_workflows_per_s"]  # type: ignore[operator]
    assert result["ratio_flowyard_over_bullmq"] == round(ratio, 2)


def test_without_bullmq_at_hand_and_no_installing_the_skip_says_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, result = run(
        capsys, "--skip-flowyard", "--node-modules", str(tmp_path / "absent"), "--workflows", "5"
    )
    assert code == 0
    skipped = str(result["bullmq_skipped"])
    if shutil.which("redis-server") and shutil.which("node") and shutil.which("npm"):
        assert (
            skipped
            == f"bullmq is not in {tmp_path / 'absent'} (and --no-install forbids installing it)"
        )
    else:
        assert "redis-server" in skipped or "Node.js" in skipped
    assert result["ratio_flowyard_over_bullmq"] is None
    assert "flowyard_executions_per_s" not in result


def test_skip_bullmq_is_reported_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, "--skip-flowyard", "--skip-bullmq")
    assert code == 0 and result["bullmq_skipped"] == "--skip-bullmq"
