"""The dashboard's execution page with wait_for_signal steps, in headless Chromium: the graph
shows the waiting step and the "Send signal" form completes it (name prefilled)."""

from tests.dashboard_support import (
    Page,
    Stack,
    expect,
    no_horizontal_scroll,
    node,
    screenshot,
    sign_in,
    stack_fixture,
    status_of,
    step,
    unique,
)

QUEUE = "dash-signals"


stack = stack_fixture(QUEUE, "dashboard-signals")


expect.set_options(timeout=10_000)


def test_a_waiting_step_is_shown_and_a_signal_sent_from_the_page_completes_it(
    page: Page, stack: Stack
) -> None:
    blueprint = stack.api.blueprint(
        unique("approval"),
        [
            {"id": "approve", "wait_for_signal": {"name": "manager-ok", "timeout_sec": 3600}},
            step("ship", QUEUE, {"by": "{{steps.approve.output.by}}"}, ["approve"]),
        ],
    )
    execution_id = stack.api.trigger(blueprint["id"])
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")
    expect(status_of(page)).to_have_attribute("data-status", "running")
    expect(node(page, "approve")).to_have_attribute("data-status", "waiting")
    expect(node(page, "approve")).to_contain_text("waiting")
    expect(page.locator("ol.timeline")).to_contain_text("step_waiting")
    node(page, "approve").click()
    expect(page.locator(".step-box")).to_contain_text("manager-ok (waiting)")

    form = page.get_by_role("form", name="Send signal")
    section = page.locator("section", has=page.get_by_role("heading", name="Send signal"))
    answer = section.get_by_role("status")
    expect(form.get_by_label("Signal name")).to_have_value("manager-ok")
    form.get_by_label("Data (JSON, optional)").fill("{oops")
    form.get_by_role("button", name="Send signal").click()
    expect(answer).to_contain_text("Data is not valid JSON")
    form.get_by_label("Signal name").fill("x" * 128 + "y")  # the field keeps 128 characters
    expect(form.get_by_label("Signal name")).to_have_value("x" * 128)
    form.get_by_label("Signal name").fill("someone-else")
    form.get_by_label("Data (JSON, optional)").fill('{"note": 1}')
    form.get_by_role("button", name="Send signal").click()
    expect(answer).to_contain_text('is kept: no step waits for "someone-else" yet')
    no_horizontal_scroll(page)
    screenshot(page, "execution-waiting")

    form.get_by_label("Signal name").fill("manager-ok")
    form.get_by_label("Data (JSON, optional)").fill('{"by": "ann"}')
    form.get_by_label("Idempotency key (optional)").fill("approve-1")
    form.get_by_role("button", name="Send signal").click()
    expect(answer).to_contain_text("completed step approve")
    expect(node(page, "approve")).to_have_attribute("data-status", "completed")
    expect(status_of(page)).to_have_attribute("data-status", "completed")
    expect(form).to_be_hidden()  # an ended execution takes no signals
    expect(section).to_contain_text("The execution has ended")
    expect(answer).to_contain_text("completed step approve")  # the answer stays in view
    expect(page.locator("ol.timeline")).to_contain_text("signal_received")
    ship = [s for s in stack.api.execution(execution_id)["steps"] if s["step_id"] == "ship"]
    assert ship[0]["output"]["echo"] == {"by": "ann"}


def test_the_form_shows_the_servers_refusal_under_the_field(page: Page, stack: Stack) -> None:
    blueprint = stack.api.blueprint(
        unique("refusal"), [{"id": "w", "wait_for_signal": {"name": "go"}}]
    )
    execution_id = stack.api.trigger(blueprint["id"])
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")
    form = page.get_by_role("form", name="Send signal")
    name = form.get_by_label("Signal name")
    expect(name).to_have_value("go")
    page.evaluate(
        "document.querySelector('form.signal input[name=name]').removeAttribute('required')"
    )
    name.fill("")
    form.get_by_role("button", name="Send signal").click()
    section = page.locator("section", has=page.get_by_role("heading", name="Send signal"))
    expect(section.get_by_role("status")).to_contain_text("400 bad_request")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(section.locator(".field-error").first).to_contain_text("$.name")
