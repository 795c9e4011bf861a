"""``docs/grafana/flowyard.json`` imports into Grafana and only asks for what a real server's
``GET /metrics`` holds: every panel has queries, every ``flowyard_*`` name in them is a series
the server exposes (a counter's ``_total``, a histogram's ``_bucket``/``_sum``/``_count``),
and every metric of DESIGN §9 is on some panel."""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "flowyard.json"

DESIGN_METRICS = {  # DESIGN §9, as families (a counter's name without ``_total``)
    "flowyard_http_requests",
    "flowyard_http_request_duration_seconds",
    "flowyard_jobs_created",
    "flowyard_jobs_finished",
    "flowyard_job_queue_depth",
    "flowyard_job_wait_seconds",
    "flowyard_job_run_seconds",
    "flowyard_executions_started",
    "flowyard_executions_finished",
    "flowyard_executions_live",
    "flowyard_step_handoff_seconds",
    "flowyard_commit_batch_rows",
    "flowyard_commit_duration_seconds",
    "flowyard_webhook_deliveries",
    "flowyard_mailbox_full",
}
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}
METRIC_NAME = re.compile(r"\bflowyard_[a-zA-Z0-9_]+")


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def exposed_series(url: str) -> dict[str, str]:
    """Every series name a real server's /metrics offers to a query -> its family's name."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    series = {}
    for family in text_string_to_metric_families(text):
        for suffix in SERIES_SUFFIXES[family.type]:
            series[family.name + suffix] = family.name
    return series


def expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def test_the_dashboard_is_importable_json() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["title"] == "Flowyard" and board["uid"] == "flowyard"
    [source] = board["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, panel["title"]


def test_every_metric_it_queries_is_one_a_real_server_exposes(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    server = server_process(str(tmp_path / "flowyard.db"))
    series = exposed_series(server.url)
    used: set[str] = set()
    for expr in expressions(dashboard()):
        names = METRIC_NAME.findall(expr)
        assert names, expr
        for name in names:
            assert name in series, f"{name} (in {expr}) is not on the server's /metrics"
            used.add(series[name])
        if "histogram_quantile" in expr:  # quantiles come from buckets, per le
            assert all(name.endswith("_bucket") for name in names), expr
            assert re.search(r"by \((le|le, \w+)\)", expr), expr
    missing = DESIGN_METRICS - used
    assert not missing, f"no panel shows {sorted(missing)}"
    assert set(series.values()) >= DESIGN_METRICS
