"""The execution page's timeline (a waterfall of its steps) in a real browser, against a real
server and pull worker: one row per step in dependency order, a running step's bar growing,
the slow step's bar the longest and marked, skipped steps shown as such, and the phone layout.

``docs/screenshots/timeline.png`` is taken here (``FLOWYARD_SCREENSHOTS=1``).
"""

from typing import Any

from tests.dashboard_support import (
    PHONE,
    Page,
    Stack,
    expect,
    no_horizontal_scroll,
    screenshot,
    sign_in,
    stack_fixture,
    status_of,
    step,
    unique,
)

QUEUE = "timeline"

stack = stack_fixture(QUEUE, "timeline")

expect.set_options(timeout=10_000)


def rows(page: Page) -> Any:
    return page.locator(".waterfall li.wf-row")


def row(page: Page, step_id: str) -> Any:
    return page.locator(f'.waterfall li.wf-row[data-step="{step_id}"]')


def total_ms(page: Page, step_id: str) -> int:
    return int(row(page, step_id).get_attribute("data-total-ms") or "-1")


def test_the_slow_step_stands_out_and_grows_while_it_runs(page: Page, stack: Stack) -> None:
    gate = unique("slow")
    # listed out of dependency order on purpose: the timeline orders by depends_on
    blueprint = stack.api.blueprint(
        unique("waterfall"),
        [
            step("ship", QUEUE, {}, ["pack"]),
            step("pack", QUEUE, {"gate": gate}, ["fetch"], catch="refund"),
            step("fetch", QUEUE, {}),
            step("refund", QUEUE, {}),
        ],
    )
    execution_id = stack.api.trigger(blueprint["id"])
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")

    expect(row(page, "pack")).to_have_attribute("data-status", "running")
    expect(rows(page)).to_have_count(4)
    order = [rows(page).nth(i).get_attribute("data-step") for i in range(4)]
    assert order == ["fetch", "pack", "ship", "refund"], order
    expect(row(page, "ship")).to_contain_text("pending")
    expect(row(page, "pack")).to_contain_text("running")
    # a running step's bar grows to now on every refresh
    first = total_ms(page, "pack")
    page.wait_for_function(
        "(before) => Number(document.querySelector("
        "'.waterfall li[data-step=\"pack\"]').dataset.totalMs) > before + 1500",
        arg=first,
        timeout=10_000,
    )
    bar = row(page, "pack").locator("svg.wf-track rect.wf-run")
    expect(bar).to_have_count(1)
    assert float((bar.get_attribute("width") or "0%").rstrip("%")) > 50
    stack.worker.release(gate)

    expect(status_of(page)).to_have_attribute("data-status", "completed")
    expect(row(page, "refund")).to_have_attribute("data-status", "skipped")
    expect(row(page, "refund")).to_contain_text("skipped")
    expect(row(page, "ship")).to_have_attribute("data-status", "completed")
    expect(page.locator(".waterfall li.live")).to_have_count(0)
    # the slow step is the longest bar and the one marked so
    expect(page.locator(".waterfall li.longest")).to_have_count(1)
    expect(row(page, "pack")).to_have_class("wf-row st-completed longest")
    expect(row(page, "pack").locator(".wf-mark")).to_have_text("longest")
    totals = {sid: total_ms(page, sid) for sid in ("fetch", "pack", "ship")}
    assert totals["pack"] >= 1500 and totals["pack"] > 3 * max(totals["fetch"], totals["ship"])
    widths = {
        sid: sum(
            float((rect.get_attribute("width") or "0%").rstrip("%"))
            for rect in row(page, sid).locator("rect").all()
        )
        for sid in ("fetch", "pack", "ship")
    }
    assert widths["pack"] > 3 * max(widths["fetch"], widths["ship"]), widths
    # every bar says its times in words, for screen readers and as a tooltip
    track = row(page, "pack").locator("svg.wf-track")
    label = track.get_attribute("aria-label") or ""
    assert "queued" in label and "started" in label and "ended" in label, label
    expect(track.locator(":scope > title")).to_have_text(label)
    expect(track.locator("rect.wf-run > title")).to_contain_text("pack ran")
    expect(page.locator(".waterfall .wf-ticks text").first).to_have_text("+0 ms")
    timeline = page.locator("section", has=page.get_by_role("heading", name="Timeline"))
    screenshot(page, "timeline", down_to=timeline)

    page.set_viewport_size(PHONE)
    expect(row(page, "pack").locator("svg.wf-track")).to_be_visible()
    box = timeline.bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    no_horizontal_scroll(page)


def test_a_step_waiting_in_its_queue_shows_as_waiting(page: Page, stack: Stack) -> None:
    blueprint = stack.api.blueprint(
        unique("queued"),
        [step("first", QUEUE, {}), step("stuck", "nobody-claims", {}, ["first"])],
    )
    execution_id = stack.api.trigger(blueprint["id"])
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")
    expect(row(page, "stuck")).to_have_attribute("data-status", "queued")
    expect(row(page, "stuck").locator(".wf-dur")).to_contain_text("waiting")
    expect(row(page, "stuck").locator("rect.wf-wait")).to_have_count(1)
    expect(row(page, "stuck").locator("rect.wf-run")).to_have_count(0)
    expect(row(page, "first").locator("rect.wf-run")).to_have_count(1)
    stack.api.call("POST", f"/infra/workflows/executions/{execution_id}/cancel")
    expect(status_of(page)).to_have_attribute("data-status", "cancelled")
    expect(row(page, "stuck")).to_have_attribute("data-status", "cancelled")
    expect(row(page, "stuck").locator(".wf-dur")).not_to_contain_text("waiting")
