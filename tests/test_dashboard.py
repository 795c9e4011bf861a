"""The dashboard in a real browser: headless Chromium driven by Playwright against ``flowyard
serve`` (a real process on a real SQLite file) with a real pull worker thread doing the steps.

Screenshots of the main pages land in ``docs/screenshots/`` (the README links them) when
``FLOWYARD_SCREENSHOTS=1``; otherwise in a temporary folder.
"""

import json
import re
from typing import Any

from tests.dashboard_support import (
    EXECUTION_URL,
    PHONE,
    Api,
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

QUEUE = "dash"


stack = stack_fixture(QUEUE, "dashboard")


def tile(page: Page, card: str, status: str) -> Any:
    """The number on a status tile of the overview card titled ``card``."""
    section = page.locator("section", has=page.get_by_role("heading", name=card))
    return section.locator(f'.tile[data-status="{status}"] .tile-n')


expect.set_options(timeout=10_000)


def test_sign_in_with_a_key_kept_in_the_tab(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.url}/dashboard/workflows")
    # keyboard only: the key field has focus, Enter submits
    page.keyboard.type("sk_live_not_a_real_key_000000000000000000")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="401 unauthorized")).to_be_visible()
    page.get_by_label("API key").fill(stack.key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Workflows", level=1)).to_be_visible()
    assert stack.key not in page.url
    assert page.evaluate("sessionStorage.getItem('flowyard.key')") == stack.key
    assert page.evaluate("localStorage.length") == 0
    page.reload()  # the tab keeps the session
    expect(page.get_by_role("heading", name="Workflows", level=1)).to_be_visible()
    page.get_by_role("link", name="Jobs").click()
    expect(page).to_have_url(f"{stack.url}/dashboard/jobs")
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('flowyard.key')") is None


def test_blueprint_errors_show_next_to_their_field(page: Page, stack: Stack) -> None:
    sign_in(page, stack.url, stack.key, "/dashboard/workflows")
    form = page.get_by_role("form", name="Create blueprint")
    name, steps = form.get_by_label("Name"), form.get_by_label("Steps (JSON array)")
    create = form.get_by_role("button", name="Create blueprint")
    name_error = page.locator(f"#{name.get_attribute('id')}-error")
    steps_error = page.locator(f"#{steps.get_attribute('id')}-error")

    steps.fill("[{")
    create.click()
    expect(steps_error).to_contain_text("Steps is not valid JSON")

    first = step("fetch", QUEUE)
    second = step("ship", QUEUE, None, ["fetch", "nope"])
    steps.fill(json.dumps([first, second]))
    create.click()  # no name: the server names $.name
    expect(name_error).to_contain_text("$.name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()

    title = unique("orders")
    name.fill(title)
    create.click()  # the unknown dependency: $.steps[1].depends_on[1]
    expect(steps_error).to_contain_text("$.steps[1].depends_on[1]")
    expect(steps_error).to_contain_text("nope")
    expect(name_error).to_be_hidden()
    expect(steps).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_role("status")).to_contain_text("400 bad_request")

    second["depends_on"] = ["fetch"]
    steps.fill(json.dumps([first, second], indent=2))
    form.get_by_label("Description").fill("fetch, then ship")
    create.click()
    expect(form.get_by_role("status")).to_contain_text(f"Created blueprint {title}")
    expect(steps_error).to_be_hidden()
    catalog = page.locator("section", has=page.get_by_role("heading", name="Blueprint catalog"))
    expect(catalog.get_by_role("row").filter(has_text=title)).to_have_count(1)
    # the new blueprint is in the trigger card, ready to go
    trigger = page.get_by_role("form", name="Trigger execution")
    expect(trigger.get_by_label("Blueprint ID")).to_have_value(re.compile(r"^wf_"))


def test_trigger_opens_the_execution_and_follows_it_live(page: Page, stack: Stack) -> None:
    name, gate = unique("fulfil"), unique("gate")
    stack.api.blueprint(
        name,
        [
            step("fetch", QUEUE, {"order": "{{input.order}}"}),
            step("pack", QUEUE, {"gate": "{{input.gate}}"}, ["fetch"], catch="refund"),
            step("ship", QUEUE, {"box": "{{steps.pack.output.ok}}"}, ["pack"]),
            step("refund", QUEUE, {"why": "{{failure.error}}"}),
        ],
    )
    sign_in(page, stack.url, stack.key, "/dashboard/workflows")
    page.get_by_role("button", name=f"Trigger {name}").click()
    trigger = page.get_by_role("form", name="Trigger execution")
    expect(trigger.get_by_label("Input data (JSON object)")).to_be_focused()
    trigger.get_by_label("Input data (JSON object)").fill(json.dumps({"order": 7, "gate": gate}))
    trigger.get_by_label("Idempotency key (optional)").fill(unique("idem"))
    trigger.get_by_role("button", name="Trigger").click()

    expect(page).to_have_url(EXECUTION_URL)
    execution_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("svg.dag .node")).to_have_count(4)
    expect(page.locator("svg.dag path.edge.catch")).to_have_count(1)
    expect(page.locator("svg.dag path.edge:not(.catch)")).to_have_count(2)
    # the worker holds "pack": the page shows it running, then completed once released
    expect(node(page, "fetch")).to_have_attribute("data-status", "completed")
    expect(node(page, "pack")).to_have_attribute("data-status", "running")
    expect(status_of(page)).to_have_attribute("data-status", "running")
    stack.worker.release(gate)
    expect(status_of(page)).to_have_attribute("data-status", "completed")
    expect(node(page, "ship")).to_have_attribute("data-status", "completed")
    expect(node(page, "refund")).to_have_attribute("data-status", "skipped")
    expect(page.get_by_text("Finished: completed.")).to_be_visible()

    # keyboard: focus a node, Enter shows the step with its job, payload and output
    node(page, "pack").focus()
    page.keyboard.press("Enter")
    panel = page.locator("section", has=page.get_by_role("heading", name="Step", exact=True))
    state = stack.api.execution(execution_id)
    [pack] = [s for s in state["steps"] if s["step_id"] == "pack"]
    expect(panel.get_by_role("link", name=pack["job_id"])).to_be_visible()
    expect(panel.get_by_label("Payload")).to_contain_text(gate)
    expect(panel.get_by_label("Output")).to_contain_text('"ok": true')
    expect(node(page, "pack")).to_have_attribute("aria-pressed", "true")
    timeline = page.locator("ol.timeline")
    expect(timeline.locator("li").first).to_contain_text("triggered")
    expect(timeline.locator("li").last).to_contain_text("completed")
    screenshot(page, "execution")

    panel.get_by_role("link", name=pack["job_id"]).click()  # the step's job, with its run
    expect(page.get_by_role("heading", name=f"Job {pack['job_id']}")).to_be_visible()
    runs = page.locator("section", has=page.get_by_role("heading", name="Runs"))
    expect(runs.locator("tbody tr").filter(has_text="completed")).to_have_count(1)


def test_failed_execution_resumed_with_an_override(page: Page, stack: Stack) -> None:
    blueprint = stack.api.blueprint(
        unique("carrier"),
        [
            step("charge", QUEUE, {"amount": 5}),
            step("ship", QUEUE, {"fail": "carrier down"}, ["charge"]),
            step("notify", QUEUE, {"tracking": "{{steps.ship.output.tracking}}"}, ["ship"]),
        ],
    )
    execution_id = stack.api.trigger(blueprint["id"])
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")
    expect(status_of(page)).to_have_attribute("data-status", "failed")
    expect(page.locator(".summary")).to_contain_text("job_failed: carrier down")
    expect(node(page, "notify")).to_have_attribute("data-status", "pending")

    controls = page.get_by_role("form", name="Resume execution")
    answer = page.locator("section", has=page.get_by_role("heading", name="Controls"))
    answer = answer.get_by_role("status")
    controls.get_by_label("Override output (JSON, optional)").fill('{"tracking": "T-1"}')
    controls.get_by_role("button", name="Resume").click()  # no step: the server refuses
    expect(answer).to_contain_text("400 bad_request")
    expect(status_of(page)).to_have_attribute("data-status", "failed")

    controls.get_by_label("Step").select_option("ship")
    controls.get_by_label("Reason").fill("shipped by hand")
    controls.get_by_role("button", name="Resume").click()
    expect(answer).to_contain_text('"status": "running"')
    expect(answer).to_contain_text('"resumed_at"')
    expect(status_of(page)).to_have_attribute("data-status", "completed")
    expect(node(page, "ship")).to_have_attribute("data-status", "completed")
    expect(page.locator("ol.timeline")).to_contain_text("output_overridden")
    expect(page.locator("ol.timeline")).to_contain_text("shipped by hand")
    notify = [s for s in stack.api.execution(execution_id)["steps"] if s["step_id"] == "notify"]
    assert notify[0]["output"]["echo"] == {"tracking": "T-1"}

    # the executions list, filtered by this blueprint and then by status
    page.get_by_role("link", name="← Workflows").click()
    page.get_by_role("button", name=f"Executions of {blueprint['name']}").click()
    executions = page.locator("section", has=page.get_by_role("heading", name="Executions"))
    rows = executions.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(execution_id)
    filters = executions.get_by_role("form", name="Filter executions")
    expect(filters.get_by_label("Blueprint ID")).to_have_value(blueprint["id"])
    filters.get_by_label("Status").select_option("failed")
    filters.get_by_role("button", name="Apply").click()
    expect(executions.get_by_text("No executions match.")).to_be_visible()
    filters.get_by_label("Status").select_option("completed")
    filters.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    assert f"blueprint_id={blueprint['id']}" in page.url and "status=completed" in page.url


def test_running_execution_paused_resumed_and_cancelled(page: Page, stack: Stack) -> None:
    gate = unique("hold")
    blueprint = stack.api.blueprint(
        unique("long"),
        [step("hold", QUEUE, {"gate": gate}), step("after", QUEUE, None, ["hold"])],
    )
    execution_id = stack.api.trigger(blueprint["id"])
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")
    expect(node(page, "hold")).to_have_attribute("data-status", "running")
    controls = page.locator("section", has=page.get_by_role("heading", name="Controls"))
    answer = controls.get_by_role("status")

    controls.get_by_role("button", name="Pause").click()
    expect(answer).to_contain_text('"status": "paused"')
    expect(status_of(page)).to_have_attribute("data-status", "paused")
    expect(controls.get_by_role("button", name="Pause")).to_be_hidden()

    controls.get_by_role("button", name="Resume").click()
    expect(answer).to_contain_text('"status": "running"')
    expect(status_of(page)).to_have_attribute("data-status", "running")

    controls.get_by_role("button", name="Cancel execution").click()
    expect(answer).to_contain_text('"status": "cancelled"')
    expect(answer).to_contain_text('"cancelled_at"')
    expect(status_of(page)).to_have_attribute("data-status", "cancelled")
    expect(page.get_by_text("Finished: cancelled.")).to_be_visible()
    expect(node(page, "after")).to_have_attribute("data-status", "pending")
    stack.worker.release(gate)


def test_catalog_pages_with_load_more(page: Page, stack: Stack) -> None:
    key = stack.project_key(unique("paging"))
    api = Api(stack.url, key)
    for number in range(27):
        api.blueprint(f"bp-{number:02d}", [step("only", "paging")])
    api.close()
    sign_in(page, stack.url, key, "/dashboard/workflows")
    catalog = page.locator("section", has=page.get_by_role("heading", name="Blueprint catalog"))
    rows = catalog.locator("tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text("bp-26")  # newest first
    expect(catalog.get_by_role("status")).to_contain_text("25 blueprints shown, more to load")
    catalog.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(27)
    expect(rows.last).to_contain_text("bp-00")
    expect(catalog.get_by_role("button", name="Load more")).to_be_hidden()
    catalog.get_by_role("button", name="Refresh").click()
    expect(rows).to_have_count(25)
    expect(catalog.get_by_role("button", name="Load more")).to_be_visible()


def test_jobs_list_filters_detail_actions_and_queues(page: Page, stack: Stack) -> None:
    key = stack.project_key(unique("jobs"))
    api = Api(stack.url, key)
    api.job({"name": "doomed", "trigger": {"type": "pull", "queue": "broken"}, "max_attempts": 1})
    [claimed] = api.claim("broken")
    failed = api.ack(claimed, error="disk full")
    cron = api.job(
        {
            "name": "nightly",
            "trigger": {"type": "scheduled", "schedule": "0 0 1 1 *"},
            "handler": "http://127.0.0.1:9/hook",
        }
    )
    api.close()

    sign_in(page, stack.url, key, "/dashboard/jobs")
    listing = page.locator("section", has=page.get_by_role("heading", name="Job list"))
    rows = listing.locator("tbody tr")
    expect(rows).to_have_count(2)

    create = page.get_by_role("form", name="Create job")
    body = create.get_by_label("Job (JSON body of POST /infra/jobs)")
    body.fill('{"trigger": {"type": "pull"}}')
    create.get_by_role("button", name="Create job").click()
    expect(page.locator(f"#{body.get_attribute('id')}-error")).to_contain_text("$.trigger.queue")
    create.get_by_label("Start from").select_option("Pull job")
    body.fill(json.dumps({"name": "ui-made", "trigger": {"type": "pull", "queue": "inbox"}}))
    create.get_by_role("button", name="Create job").click()
    expect(create.get_by_role("status")).to_contain_text("Created job job_")
    expect(rows).to_have_count(3)

    filters = listing.get_by_role("form", name="Filter jobs")
    filters.get_by_label("Status").select_option("failed")
    filters.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("doomed")
    assert "status=failed" in page.url
    filters.get_by_label("Status").select_option("")
    filters.get_by_label("Trigger type").select_option("scheduled")
    filters.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("nightly")
    filters.get_by_label("Trigger type").select_option("")
    filters.get_by_label("Queue").fill("inbox")
    filters.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ui-made")

    page.goto(f"{stack.url}/dashboard/jobs/{failed['id']}")
    expect(status_of(page)).to_have_attribute("data-status", "failed")
    runs = page.locator("section", has=page.get_by_role("heading", name="Runs"))
    expect(runs.locator("tbody tr")).to_have_count(1)
    expect(runs.locator("tbody tr")).to_contain_text("disk full")
    page.get_by_role("button", name="Retry").click()
    actions = page.locator("section", has=page.get_by_role("heading", name="Actions"))
    expect(actions.get_by_role("status")).to_contain_text('"status": "pending"')
    expect(status_of(page)).to_have_attribute("data-status", "pending")

    page.goto(f"{stack.url}/dashboard/jobs/{cron['id']}")
    expect(status_of(page)).to_have_attribute("data-status", "scheduled")
    page.get_by_role("button", name="Trigger now").click()
    expect(actions.get_by_role("status")).to_contain_text(cron["id"])
    expect(page.get_by_role("button", name="Retry")).to_be_hidden()

    page.get_by_role("link", name="Queues").click()
    queues = page.locator("section", has=page.get_by_role("heading", name="Queues", level=2))
    inbox = queues.locator("tbody tr").filter(has_text="inbox")
    expect(inbox).to_contain_text("active")
    page.get_by_role("button", name="Pause queue inbox", exact=True).click()
    expect(queues.get_by_role("status")).to_contain_text('"paused": true')
    expect(inbox).to_contain_text("paused")
    page.get_by_role("button", name="Unpause queue inbox", exact=True).click()
    expect(queues.get_by_role("status")).to_contain_text('"paused": false')
    expect(inbox).to_contain_text("active")


def test_overview_counts_throughput_and_oldest_pending(page: Page, stack: Stack) -> None:
    key = stack.project_key(unique("overview"))
    api = Api(stack.url, key)
    for number in range(3):
        api.job({"name": f"task-{number}", "trigger": {"type": "pull", "queue": "ovq"}})
    for job in api.claim("ovq", count=2):
        api.ack(job, {"done": True})
    api.close()
    sign_in(page, stack.url, key)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(tile(page, "Jobs by status", "completed")).to_have_text("2")
    expect(tile(page, "Jobs by status", "pending")).to_have_text("1")
    expect(tile(page, "Jobs by status", "running")).to_have_text("0")
    expect(tile(page, "Executions by status", "running")).to_have_text("0")
    expect(page.locator("p[data-total]")).to_have_attribute("data-total", "2")
    expect(page.locator("svg.bars rect.bar[data-count='2']")).to_have_count(1)
    oldest = page.locator("section", has=page.get_by_role("heading", name="Oldest pending"))
    expect(oldest.locator("tbody tr").filter(has_text="ovq")).to_contain_text(" s")


def test_admin_key_switches_projects(page: Page, stack: Stack) -> None:
    project = unique("watched")
    api = Api(stack.url, stack.project_key(project))
    watched = api.call("GET", "/core/tokens/balance")["project_id"]
    api.job({"name": "watched-job", "trigger": {"type": "pull", "queue": "nobody"}})
    blueprint = api.blueprint("watched-flow", [step("only", "nobody")])
    execution_id = api.trigger(blueprint["id"])
    api.close()

    sign_in(page, stack.url, stack.project_key(unique("ops"), admin=True))
    picker = page.get_by_label("Project")
    expect(picker).to_be_visible()
    expect(picker.locator(f'option[value="{watched}"]')).to_have_text(project)
    picker.select_option(watched)
    expect(page.get_by_text(f"Viewing {project}")).to_be_visible()
    expect(tile(page, "Jobs by status", "pending")).to_have_text("2")  # the job and the step's
    expect(tile(page, "Jobs by status", "running")).to_have_text("0")
    expect(tile(page, "Executions by status", "running")).to_have_text("1")

    page.get_by_role("link", name="Workflows").click()
    expect(page.get_by_text("executions are read-only here")).to_be_visible()
    executions = page.locator("section", has=page.get_by_role("heading", name="Executions"))
    row = executions.locator("tbody > tr").first
    expect(row).to_contain_text(execution_id)
    expect(row).to_contain_text(project)
    row.locator("summary").click()
    expect(row.locator("details[open] table")).to_contain_text("queued")

    page.get_by_role("link", name="Jobs").click()
    expect(page.locator("thead")).to_contain_text("Project")
    expect(page.locator("tbody tr")).to_have_count(2)
    picker.select_option("*")
    expect(page.get_by_text("Viewing all projects")).to_be_visible()
    expect(page.locator("tbody tr").filter(has_text="watched-job")).to_have_count(1)


def test_main_pages_at_desktop_and_phone_width(page: Page, stack: Stack) -> None:
    blueprint = stack.api.blueprint(
        unique("phone"),
        [step("a", QUEUE, {}), step("b", QUEUE, {}, ["a"]), step("c", QUEUE, {}, ["a"])],
    )
    execution_id = stack.api.trigger(blueprint["id"])
    sign_in(page, stack.url, stack.key)
    expect(tile(page, "Executions by status", "completed")).not_to_have_text("0")
    expect(page.locator("p[data-total]")).not_to_have_attribute("data-total", "0")
    rate = page.locator('[data-figure="jobs-finished-rate"] .figure-n')
    expect(rate).to_have_text(re.compile(r"^\d"))  # the Server card has two samples
    screenshot(page, "overview")
    page.get_by_role("link", name="Workflows").click()
    expect(page.locator("tbody tr").first).to_be_visible()
    screenshot(page, "workflows")
    page.get_by_role("link", name="Jobs").click()
    expect(page.locator("tbody tr").first).to_be_visible()
    screenshot(page, "jobs")

    page.set_viewport_size(PHONE)
    pages = {  # path -> (heading, something that only shows once the data is in)
        "/dashboard": ("Overview", ".tile"),
        "/dashboard/workflows": ("Workflows", "tbody tr"),
        f"/dashboard/executions/{execution_id}": ("Execution", "svg.dag .node"),
        "/dashboard/jobs": ("Jobs", "tbody tr"),
        "/dashboard/queues": ("Queues", "tbody tr"),
    }
    for path, (heading, loaded) in pages.items():
        page.goto(stack.url + path)
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        expect(page.locator(loaded).first).to_be_visible()
        no_horizontal_scroll(page)
    page.goto(f"{stack.url}/dashboard/executions/{execution_id}")
    expect(status_of(page)).to_have_attribute("data-status", "completed")
    no_horizontal_scroll(page)
    screenshot(page, "phone-execution")
    # the header's navigation still works at this width, and list rows fit it
    page.get_by_role("link", name="Jobs").click()
    first = page.locator("tbody tr").first
    expect(first).to_be_visible()
    box = first.bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]


def test_a_step_skipped_by_its_when(page: Page, stack: Stack) -> None:
    blueprint = stack.api.blueprint(
        unique("branch"),
        [
            step("check", QUEUE, {"amount": "{{input.amount}}"}),
            step("manual", QUEUE, None, ["check"], when="input.amount > 100.0"),
            step("auto", QUEUE, None, ["check"], when="!(input.amount > 100.0)"),
        ],
    )
    execution_id = stack.api.trigger(blueprint["id"], {"amount": 12})
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")
    expect(status_of(page)).to_have_attribute("data-status", "completed")
    expect(node(page, "manual")).to_have_attribute("data-status", "skipped")
    expect(node(page, "auto")).to_have_attribute("data-status", "completed")
    node(page, "manual").focus()
    page.keyboard.press("Enter")
    panel = page.locator("section", has=page.get_by_role("heading", name="Step", exact=True))
    expect(panel).to_contain_text("its when was false")
    expect(page.locator("ol.timeline")).to_contain_text("condition_false")
