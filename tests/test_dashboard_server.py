"""The overview's Server card in a real browser, against real servers: the figures a server's
``GET /metrics`` reports (live executions, queue depth per queue, rates from two samples), the
``--metrics-token`` path (401, a token field, then figures), and the page's Prometheus text
parser compared with ``prometheus_client``'s on the same text.

``docs/screenshots/overview.png`` (with this card) is taken by ``tests/test_dashboard.py``.
"""

import math
import re
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.dashboard_support import (
    Page,
    Stack,
    expect,
    running_stack,
    sign_in,
    stack_fixture,
    step,
    unique,
)

QUEUE = "server-card"

stack = stack_fixture(QUEUE, "server-card")

expect.set_options(timeout=10_000)

PARSE = """async (text) => {
  const m = await import("/dashboard/assets/js/prometheus.js");
  return m.parseMetrics(text).map((f) => [f.name, f.type, f.help,
    f.samples.map((s) => [s.name, s.labels, Number.isNaN(s.value) ? "NaN" : s.value])]);
}"""

TRICKY = r"""# A comment that is neither HELP nor TYPE
# HELP odd_total A help with a \\ backslash and a \n newline.
# TYPE odd_total counter
odd_total{path="/a \"quoted\" \\ path\nline",empty=""} 3.5e3
odd_total{path="b"} 1 1700000000000
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1"} 2
lat_seconds_bucket{le="+Inf"} 5
lat_seconds_sum 1.25
lat_seconds_count 5
# HELP temp Help before no type.
temp{room="x"} NaN
loose_metric -Inf
g_inf +Inf
"""


def card(page: Page) -> Any:
    return page.locator("section.server")


def figure(page: Page, name: str) -> Any:
    return card(page).locator(f'[data-figure="{name}"] .figure-n')


def scrape(url: str, token: str | None = None) -> dict[str, Any]:
    """The families a real server reports, as prometheus_client reads them."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    return {family.name: family for family in text_string_to_metric_families(text)}


def python_view(text: str) -> list[Any]:
    return [
        [
            family.name,
            family.type,
            family.documentation,
            [[s.name, s.labels, "NaN" if math.isnan(s.value) else s.value] for s in family.samples],
        ]
        for family in text_string_to_metric_families(text)
    ]


def test_the_parser_reads_what_prometheus_client_reads(page: Page, stack: Stack) -> None:
    stack.api.job({"name": "parsed", "trigger": {"type": "pull", "queue": "parser-q"}})
    page.goto(f"{stack.url}/dashboard")
    real = httpx.get(f"{stack.url}/metrics", timeout=10).text
    assert 'flowyard_job_queue_depth{queue="parser-q"} 1.0' in real
    for text in (real, TRICKY):
        assert page.evaluate(PARSE, text) == python_view(text)


def test_rates_and_quantiles_from_two_samples(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.url}/dashboard")
    before = """# TYPE flowyard_jobs_finished_total counter
flowyard_jobs_finished_total{status="completed"} 10
flowyard_jobs_finished_total{status="failed"} 2
# TYPE flowyard_job_wait_seconds histogram
flowyard_job_wait_seconds_bucket{le="0.1"} 0
flowyard_job_wait_seconds_bucket{le="1.0"} 0
flowyard_job_wait_seconds_bucket{le="+Inf"} 0
"""
    after = (
        before.replace("} 10", "} 16")
        .replace("} 2\n", "} 4\n")
        .replace('"0.1"} 0', '"0.1"} 50')
        .replace('"1.0"} 0', '"1.0"} 100')
        .replace('"+Inf"} 0', '"+Inf"} 100')
    )
    figures = page.evaluate(
        """async ([before, after]) => {
          const m = await import("/dashboard/assets/js/prometheus.js");
          const name = "flowyard_jobs_finished";
          const wait = "flowyard_job_wait_seconds";
          const a = { at: 1000, families: m.parseMetrics(before) };
          const b = { at: 3000, families: m.parseMetrics(after) };
          const observed = m.bucketsBetween(a, b, wait);
          return {
            rate: m.rate(a, b, name),
            first: m.rate(null, a, name),
            restarted: m.rate(b, { at: 5000, families: a.families }, name),
            p50: m.quantile(0.5, observed),
            p95: m.quantile(0.95, observed),
            none: m.quantile(0.5, m.bucketsBetween(a, a, wait)),
          };
        }""",
        [before, after],
    )
    assert figures["rate"] == 4.0  # (16 + 4) - (10 + 2) jobs in 2 s
    assert figures["first"] is None and figures["restarted"] is None
    assert figures["p50"] == 0.1  # half of the waits were under 100 ms
    assert abs(figures["p95"] - 0.91) < 1e-9  # interpolated in the (0.1, 1] bucket
    assert figures["none"] is None


def test_the_card_shows_what_the_server_reports(page: Page, stack: Stack) -> None:
    held = unique("held")
    for number in range(3):
        stack.api.job({"name": f"held-{number}", "trigger": {"type": "pull", "queue": held}})
    idle = unique("idle")
    blueprint = stack.api.blueprint(unique("idle"), [step("wait", idle, {})])
    for _ in range(2):
        stack.api.trigger(blueprint["id"])
    sign_in(page, stack.url, stack.key)
    expect(card(page).get_by_role("heading", name="Server")).to_be_visible()
    expect(card(page)).to_contain_text("not only yours")
    expect(card(page).locator(f'li[data-queue="{held}"]')).to_have_text(f"{held}: 3")
    expect(card(page).locator(f'li[data-queue="{idle}"]')).to_have_text(f"{idle}: 2")
    live = scrape(stack.url)["flowyard_executions_live"].samples[0].value
    assert live >= 2
    expect(figure(page, "executions-live")).to_have_text(str(int(live)))
    # one more live execution shows at the next sample
    stack.api.trigger(blueprint["id"])
    expect(figure(page, "executions-live")).to_have_text(str(int(live) + 1))
    expect(card(page).locator(f'li[data-queue="{idle}"]')).to_have_text(f"{idle}: 3")
    # rates show once there are two samples
    number = re.compile(r"^\d+(\.\d)?$")
    for name in ("jobs-finished-rate", "executions-finished-rate", "http-requests-rate"):
        expect(figure(page, name)).to_have_text(number)
    # work done by the worker moves the server's counter; the card then shows a rate above 0
    before = finished_jobs(stack.url)
    quick = stack.api.blueprint(
        unique("quick"), [step("a", QUEUE, {}), step("b", QUEUE, {}, ["a"])]
    )
    for _ in range(20):
        stack.api.trigger(quick["id"])
    deadline = time.monotonic() + 30
    while finished_jobs(stack.url) < before + 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert finished_jobs(stack.url) >= before + 40
    expect(figure(page, "jobs-finished-rate")).not_to_have_text("0.0")


def finished_jobs(url: str) -> float:
    """``flowyard_jobs_finished_total``, over every status."""
    return sum(sample.value for sample in scrape(url)["flowyard_jobs_finished"].samples)


def test_a_metrics_token_is_asked_for_and_kept_in_the_tab(page: Page, tmp_path: Path) -> None:
    token = "metrics-" + unique("token")
    with running_stack(tmp_path, "token-q", "--metrics-token", token) as guarded:
        guarded.api.job({"name": "waiting", "trigger": {"type": "pull", "queue": "guarded-q"}})
        assert httpx.get(f"{guarded.url}/metrics", timeout=10).status_code == 401
        sign_in(page, guarded.url, guarded.key)
        expect(card(page)).to_contain_text("--metrics-token")
        field = card(page).get_by_label("Metrics token")
        field.fill("not-the-token")
        card(page).get_by_role("button", name="Use token").click()
        expect(card(page)).to_contain_text("refused")
        card(page).get_by_label("Metrics token").fill(token)
        card(page).get_by_role("button", name="Use token").click()
        expect(card(page).locator('li[data-queue="guarded-q"]')).to_have_text("guarded-q: 1")
        expect(card(page).get_by_label("Metrics token")).to_have_count(0)
        assert page.evaluate("sessionStorage.getItem('flowyard.metrics_token')") == token
        page.reload()  # the tab keeps the token: figures at once, no field
        expect(figure(page, "executions-live")).to_have_text("0")
        expect(card(page).get_by_label("Metrics token")).to_have_count(0)
        page.get_by_role("button", name="Sign out").click()
        assert page.evaluate("sessionStorage.getItem('flowyard.metrics_token')") is None
