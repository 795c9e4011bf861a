"""``bench.http_clients``: a small real run prints one line with every client's figures.

The figures are the benchmark's business (``python -m bench.http_clients``); here only that
each client's requests all reach the receiver, answered 200, and are reported.
"""

import orjson
import pytest
from bench import http_clients


def test_a_small_run_measures_each_client_in_its_own_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = http_clients.main(["--requests", "60", "--concurrency", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 1
    result = orjson.loads(lines[0])
    assert (result["bench"], result["requests"], result["concurrency"]) == ("http_clients", 60, 3)
    assert set(result["clients"]) == {"httpx", "http1", "aiohttp"}
    for name, figures in result["clients"].items():
        if "skipped" in figures:
            assert name == "aiohttp"
            continue
        assert figures["failed"] == 0 and figures["received"] is True, name
        assert figures["cpu_us_per_request"] > 0 and figures["requests_per_s"] > 0, name
    assert result["ratio_httpx_over_ours"] > 0


def test_the_events_look_like_webhook_deliveries() -> None:
    deliveries = http_clients.events()
    assert len({body for body, _ in deliveries}) == len(deliveries)
    for body, headers in deliveries:
        assert 250 <= len(body) <= 400
        assert orjson.loads(body)["topic"] == "jobs.completed"
        assert sum(name.startswith("X-Flowyard-") for name, _ in headers) == 5
