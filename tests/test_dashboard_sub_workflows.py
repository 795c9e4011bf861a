"""The dashboard links parent and child executions, in headless Chromium against ``flowyard
serve``: a sub_workflow step's node is marked and its step card links the child, and the
child's page links back to its parent."""

from tests.dashboard_support import (
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

QUEUE = "dash-sub"


stack = stack_fixture(QUEUE, "dashboard-sub")


expect.set_options(timeout=10_000)


def test_parent_and_child_pages_link_to_each_other(page: Page, stack: Stack) -> None:
    gate = unique("gate")
    child_bp = stack.api.blueprint(
        unique("child"), [step("work", QUEUE, {"gate": "{{input.gate}}"})]
    )
    parent_bp = stack.api.blueprint(
        unique("parent"),
        [
            {
                "id": "run",
                "sub_workflow": {"blueprint_id": child_bp["id"], "input": {"gate": gate}},
            },
            step("after", QUEUE, {"got": "{{steps.run.output.work.ok}}"}, ["run"]),
        ],
    )
    parent_id = stack.api.trigger(parent_bp["id"])
    child_id = stack.api.execution(parent_id)["steps"][0]["child_execution_id"]
    assert child_id

    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{parent_id}")
    run = node(page, "run")
    expect(run).to_have_attribute("data-status", "running")
    expect(run).to_have_attribute("data-child", child_id)
    expect(run).to_contain_text("child")
    summary = page.locator(".summary")
    expect(summary).not_to_contain_text("Parent")
    run.click()
    step_card = page.locator("section", has=page.get_by_role("heading", name="Step"))
    step_card.get_by_role("link", name=child_id).click()

    expect(page).to_have_url(f"{stack.url}/dashboard/executions/{child_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(child_id)
    expect(summary).to_contain_text("Parent")
    expect(summary).to_contain_text("step run")
    expect(node(page, "work")).to_have_attribute("data-status", "running")
    summary.get_by_role("link", name=parent_id).click()

    expect(page).to_have_url(f"{stack.url}/dashboard/executions/{parent_id}")
    stack.worker.release(gate)
    expect(status_of(page)).to_have_attribute("data-status", "completed")
    expect(node(page, "run")).to_have_attribute("data-status", "completed")
    expect(node(page, "after")).to_have_attribute("data-status", "completed")
