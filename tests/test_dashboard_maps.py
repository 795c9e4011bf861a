"""The dashboard on a for_each step, in headless Chromium against ``flowyard serve``: map
progress (done/total) on the graph and in the step list, the step's items, and its one row on
the timeline."""

import json

from tests.dashboard_support import (
    EXECUTION_URL,
    Page,
    Stack,
    expect,
    node,
    sign_in,
    stack_fixture,
    status_of,
    step,
    unique,
)

QUEUE = "dash-map"


stack = stack_fixture(QUEUE, "dashboard-maps")


expect.set_options(timeout=10_000)


def test_map_progress_on_the_graph_and_the_items_list(page: Page, stack: Stack) -> None:
    name, gate = unique("map"), unique("gate")
    mapped = step("fan", QUEUE, "{{item}}", for_each="{{input.xs}}", max_concurrency=2)
    blueprint = stack.api.blueprint(
        name, [mapped, step("after", QUEUE, {"all": "{{steps.fan.output}}"}, ["fan"])]
    )
    xs = [{"n": 0}, {"gate": gate}, {"n": 2}]
    execution_id = stack.api.trigger(blueprint["id"], {"xs": xs})
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")
    expect(page).to_have_url(EXECUTION_URL)

    # item 1 is held by the worker: 2 of 3 done, the map running
    expect(node(page, "fan")).to_have_attribute("data-progress", "2/3")
    expect(node(page, "fan")).to_have_attribute("data-status", "running")
    expect(node(page, "fan")).to_contain_text("running · 2/3")
    expect(page.get_by_role("button", name="fan · running · 2/3")).to_be_visible()
    node(page, "fan").click()
    panel = page.locator("section", has=page.get_by_role("heading", name="Step", exact=True))
    expect(panel.locator(".progress")).to_have_text("2/3 done (1 running)")
    items = panel.get_by_label("Items of fan")
    expect(items.locator("tbody tr")).to_have_count(3)
    statuses = items.locator("[data-item-status]")
    expect(statuses).to_have_text(["completed", "running", "completed"])
    expect(items.locator("tbody tr").nth(0)).to_contain_text(
        json.dumps({"ok": True, "echo": {"n": 0}}).replace(" ", "")
    )

    stack.worker.release(gate)
    expect(status_of(page)).to_have_attribute("data-status", "completed")
    expect(node(page, "fan")).to_have_attribute("data-progress", "3/3")
    expect(node(page, "fan")).to_have_attribute("data-status", "completed")
    expect(panel.locator(".progress")).to_have_text("3/3 done")
    expect(items.locator("[data-item-status]")).to_have_text(["completed"] * 3)
    state = stack.api.execution(execution_id)
    [fan] = [s for s in state["steps"] if s["step_id"] == "fan"]
    assert [o["echo"] for o in fan["output"]] == xs
    # the timeline has one row for the map step, running from map_started to its end
    rows = page.locator(".waterfall li.wf-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-step", "fan")
    expect(rows.nth(0).locator("rect.wf-run")).to_have_count(1)
    expect(rows.nth(1).locator("rect.wf-run")).to_have_count(1)
    # an item's job opens the job page
    job_id = stack.api.call("GET", f"/infra/workflows/executions/{execution_id}/steps/fan/items")[
        "items"
    ][1]["job_id"]
    items.get_by_role("link", name=job_id).click()
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
