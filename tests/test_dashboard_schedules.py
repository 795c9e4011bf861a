"""The dashboard's Schedules page in headless Chromium against ``flowyard serve``: create (the
server's errors next to their field), the list, enable and disable, fire now, and the link to
the execution a schedule started last."""

import re
from typing import Any

import httpx

from tests.dashboard_support import (
    EXECUTION_URL,
    PHONE,
    Page,
    Stack,
    console_messages,
    expect,
    no_horizontal_scroll,
    no_stray_values,
    screenshot,
    sign_in,
    stack_fixture,
    step,
    unique,
)

QUEUE = "scheduled-page"
FAILED_FETCH = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")

expect.set_options(timeout=10_000)


stack = stack_fixture(QUEUE, "schedules-page")


def section(page: Page, heading: str) -> Any:
    return page.locator("section", has=page.get_by_role("heading", name=heading, level=2))


def error_of(page: Page, control: Any) -> Any:
    return page.locator(f"#{control.get_attribute('id')}-error")


def test_create_toggle_fire_and_follow_the_last_execution(page: Page, stack: Stack) -> None:
    console = console_messages(page)
    name = unique("nightly")
    blueprint = stack.api.blueprint(name, [step("a", QUEUE, {"gate": "{{input.gate}}"})])
    sign_in(page, stack.url, stack.key)
    page.get_by_role("link", name="Schedules").click()
    expect(page).to_have_url(f"{stack.url}/dashboard/schedules")
    expect(page).to_have_title("Schedules · Flowyard")
    expect(page.get_by_role("link", name="Schedules")).to_have_attribute("aria-current", "page")

    form = page.get_by_role("form", name="Create schedule")
    form.get_by_label("Blueprint").select_option(blueprint["id"])
    cron, zone = form.get_by_label("Cron schedule"), form.get_by_label("Timezone")
    data = form.get_by_label("Input data (JSON)")
    create = form.get_by_role("button", name="Create schedule")
    cron.fill("every night")
    zone.fill("Mars/Olympus")
    create.click()
    expect(error_of(page, cron)).to_contain_text("$.schedule")
    expect(error_of(page, zone)).to_contain_text("$.timezone")
    expect(error_of(page, data)).to_contain_text("$.input_data.gate")
    expect(form.get_by_role("status")).to_contain_text("400 bad_request")
    expect(cron).to_be_focused()
    cron.fill("0 3 * * *")
    zone.fill("Europe/Paris")
    data.fill("{not json")
    create.click()
    expect(error_of(page, data)).to_contain_text("not valid JSON")
    gate = unique("gate")
    data.fill(f'{{"gate": "{gate}"}}')
    create.click()
    expect(form.get_by_role("status")).to_contain_text("Created schedule wfsch_")
    expect(form.locator("[aria-invalid=true]")).to_have_count(0)

    [made] = stack.api.call("GET", f"/infra/workflows/schedules?blueprint_id={blueprint['id']}")[
        "schedules"
    ]
    assert (made["schedule"], made["timezone"]) == ("0 3 * * *", "Europe/Paris")
    assert made["input_data"] == {"gate": gate} and made["enabled"] is True

    listing = section(page, "Schedule list")
    row = listing.locator("tbody tr").filter(has_text=made["id"])
    expect(row).to_contain_text("0 3 * * *")
    expect(row).to_contain_text("Europe/Paris")
    expect(row).to_contain_text("enabled")
    expect(row.locator('td[data-label="Last execution"]')).to_have_text("—")

    page.get_by_role("button", name=f"Disable {made['id']}").click()
    expect(row).to_contain_text("disabled")
    expect(row.locator('td[data-label="Next fire"]')).to_have_text("—")
    assert stack.api.call("GET", f"/infra/workflows/schedules/{made['id']}")["enabled"] is False

    page.get_by_role("button", name=f"Fire {made['id']} now").click()
    answer = listing.get_by_role("status").first
    expect(answer).to_contain_text(f"Fired {made['id']}: execution wfexec_")
    fired = stack.api.call("GET", f"/infra/workflows/schedules/{made['id']}")
    execution_id = fired["last_execution_id"]
    assert execution_id is not None
    expect(row.locator('td[data-label="Last execution"] a')).to_have_text(execution_id)
    page.get_by_role("button", name=f"Enable {made['id']}").click()
    expect(row).to_contain_text("enabled")
    expect(row.locator('td[data-label="Next fire"] time')).to_be_visible()
    no_stray_values(page)
    screenshot(page, "schedules")

    page.set_viewport_size(PHONE)
    no_horizontal_scroll(page)
    row.get_by_role("link", name=execution_id).click()
    expect(page).to_have_url(EXECUTION_URL)
    assert page.url.endswith(execution_id)
    stack.worker.release(gate)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    # Only the refused creations (400s) are in the console.
    assert all(FAILED_FETCH.search(m) for m in console), console


def test_an_admin_viewing_another_project_is_sent_to_its_key(page: Page, stack: Stack) -> None:
    console = console_messages(page)
    project = unique("watched")
    watched_key = stack.project_key(project)
    sign_in(page, stack.url, stack.project_key(unique("ops"), admin=True))
    project_id = httpx.get(
        f"{stack.url}/core/whoami", headers={"Authorization": f"Bearer {watched_key}"}
    ).json()["project_id"]
    page.get_by_label("Project").select_option(project_id)
    page.get_by_role("link", name="Schedules").click()
    expect(page.get_by_text("Schedules are managed with a key of their project")).to_be_visible()
    expect(page.get_by_role("form", name="Create schedule")).to_have_count(0)
    no_stray_values(page)
    assert not console, console
