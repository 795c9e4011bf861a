"""The dashboard's Webhooks page in headless Chromium against ``flowyard serve``: create (the
server's errors next to their field), enable and disable, send a test, the delivery history
with its status filter, and the retry of a failed delivery, to a real receiver on 127.0.0.1.

The page also has to hold up against a server without the webhook routes (every call a 404):
it says so, and nothing on it throws.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowyard.storage.projects import create_key_sync
from tests.dashboard_support import (
    PHONE,
    Api,
    Page,
    Stack,
    console_messages,
    expect,
    no_horizontal_scroll,
    no_stray_values,
    running_stack,
    screenshot,
    sign_in,
    stack_fixture,
    unique,
)
from tests.receiver_support import Receiver, running_receiver

QUEUE = "hooked"
WEBHOOK_ROUTES = re.compile(r"/infra/webhooks(/|\?|$)")
FAILED_FETCH = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")

expect.set_options(timeout=10_000)


stack = stack_fixture(QUEUE, "webhooks-page")


def has_webhook_routes(stack: Stack) -> bool:
    """Whether the server under test answers ``POST /infra/webhooks`` (an empty body is a 400
    there, and creates nothing) rather than a 404 for an unknown route."""
    key = create_key_sync(stack.db, unique("probe"), ["*"]).key
    answer = httpx.post(
        f"{stack.url}/infra/webhooks",
        json={},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    return answer.status_code != 404


@dataclass
class Hooks:
    """A server whose deliveries retry fast, a key of the worker's project with every scope,
    and a receiver."""

    stack: Stack
    key: str
    api: Api
    receiver: Receiver


@pytest.fixture(scope="module")
def hooks(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    if not has_webhook_routes(stack):
        pytest.skip("this server has no POST /infra/webhooks yet")
    tmp: Path = tmp_path_factory.mktemp("webhooks-live")
    options = ("--webhook-retry-base-seconds", "0.01")
    with running_receiver() as receiver, running_stack(tmp, QUEUE, *options) as fast:
        key = create_key_sync(fast.db, "dash", ["*"]).key
        api = Api(fast.url, key)
        try:
            yield Hooks(fast, key, api, receiver)
        finally:
            api.close()


def section(page: Page, heading: str) -> Any:
    return page.locator("section", has=page.get_by_role("heading", name=heading, level=2))


def error_of(page: Page, control: Any) -> Any:
    """The error slot under a form field."""
    return page.locator(f"#{control.get_attribute('id')}-error")


def older_server(route: Any) -> None:
    """Answer a webhook call with this server's own 404 for a route it does not have."""
    url = WEBHOOK_ROUTES.sub(r"/infra/no-webhooks\1", route.request.url, count=1)
    route.fulfill(response=route.fetch(url=url))


def test_without_webhook_routes_the_page_says_so(page: Page, stack: Stack) -> None:
    console = console_messages(page)
    page.route(WEBHOOK_ROUTES, older_server)
    sign_in(page, stack.url, stack.key)
    page.get_by_role("link", name="Webhooks").click()
    expect(page).to_have_url(f"{stack.url}/dashboard/webhooks")
    expect(page).to_have_title("Webhooks · Flowyard")
    expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Webhooks")).to_have_attribute("aria-current", "page")
    listing = section(page, "Webhook list")
    expect(listing).to_contain_text("This server has no webhooks API")
    expect(listing).to_contain_text("404 not_found")

    form = page.get_by_role("form", name="Create webhook")
    form.get_by_label("Name").fill("orders")
    form.get_by_label("URL").fill("https://example.com/hook")
    form.get_by_role("button", name="Create webhook").click()
    expect(form.get_by_role("status")).to_contain_text("404 not_found")
    expect(form.locator("[aria-invalid=true]")).to_have_count(0)
    expect(section(page, "Deliveries")).to_contain_text("Choose Deliveries on a webhook")
    no_stray_values(page)
    # The browser notes each 404 answer; nothing else is logged (open_page: nothing threw).
    assert console and all(FAILED_FETCH.search(m) for m in console), console


def test_an_admin_viewing_another_project_is_sent_to_its_key(page: Page, stack: Stack) -> None:
    project = unique("watched")
    watched = Api(stack.url, stack.project_key(project))
    project_id = watched.call("GET", "/core/whoami")["project_id"]
    watched.close()
    console = console_messages(page)
    sign_in(page, stack.url, stack.project_key(unique("ops"), admin=True))
    page.get_by_label("Project").select_option(project_id)
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_text("Webhooks are managed with a key of their project")).to_be_visible()
    expect(page.get_by_text(f"viewing {project}")).to_be_visible()
    expect(page.get_by_role("form", name="Create webhook")).to_have_count(0)
    no_stray_values(page)
    assert not console, console


def test_create_enable_disable_and_send_a_test(page: Page, hooks: Hooks) -> None:
    console = console_messages(page)
    sign_in(page, hooks.stack.url, hooks.key)
    page.get_by_role("link", name="Webhooks").click()
    expect(page).to_have_title("Webhooks · Flowyard")
    form = page.get_by_role("form", name="Create webhook")
    name, url = form.get_by_label("Name"), form.get_by_label("URL")
    topics, secret = form.get_by_label("Topics"), form.get_by_label("Secret (optional)")
    create = form.get_by_role("button", name="Create webhook")

    url.fill("ftp://example.com/hook")
    create.click()  # no name
    expect(error_of(page, name)).to_contain_text("$.name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    title = unique("orders")
    name.fill(title)
    create.click()  # not http(s)
    expect(error_of(page, url)).to_contain_text("$.url")
    expect(error_of(page, name)).to_be_hidden()
    url.fill(hooks.receiver.script("/ok", (200, "thanks, got it")))
    topics.fill("")
    create.click()  # no topic
    expect(error_of(page, topics)).to_contain_text("$.topics")
    topics.fill("jobs.*")
    secret.fill("short")
    create.click()  # a secret of fewer than 16 characters
    expect(error_of(page, secret)).to_contain_text("$.secret")
    expect(form.get_by_role("status")).to_contain_text("400 bad_request")
    secret.fill("")
    create.click()
    expect(form.get_by_role("status")).to_contain_text(f"Created webhook {title}")
    expect(form.locator("code.secret")).to_have_text(re.compile(r"^.{16,256}$"))
    expect(form.locator("[aria-invalid=true]")).to_have_count(0)

    listing = section(page, "Webhook list")
    row = listing.locator("tbody tr").filter(has_text=title)
    expect(row).to_contain_text(f"{hooks.receiver.url}/ok")
    expect(row).to_contain_text("jobs.*")
    expect(row).to_contain_text("enabled")

    page.get_by_role("button", name=f"Send a test to {title}").click()
    answer = listing.get_by_role("status").first
    expect(answer).to_contain_text(f"Test of {title}: delivered")
    expect(answer).to_contain_text("200")
    expect(answer).to_contain_text(" ms")
    expect(answer).to_contain_text("thanks, got it")
    [test] = hooks.receiver.wait_for("/ok")
    assert test.headers["x-flowyard-topic"] == "webhooks.test"

    page.get_by_role("button", name=f"Disable {title}").click()
    expect(row).to_contain_text("disabled")
    [webhook] = [
        w for w in hooks.api.call("GET", "/infra/webhooks")["webhooks"] if w["name"] == title
    ]
    assert webhook["enabled"] is False
    page.get_by_role("button", name=f"Enable {title}").click()
    expect(row.get_by_role("button", name=f"Disable {title}")).to_be_visible()
    assert hooks.api.call("GET", f"/infra/webhooks/{webhook['id']}")["enabled"] is True

    # A job completes: its event reaches the receiver and shows in the history.
    hooks.api.job({"name": "hooked-job", "trigger": {"type": "pull", "queue": QUEUE}})
    hooks.receiver.wait_for("/ok", 2)
    page.get_by_role("button", name=f"Deliveries of {title}").click()
    history = section(page, "Deliveries")
    done = history.locator("tbody tr").filter(has_text="jobs.completed")
    expect(done).to_contain_text("succeeded")
    expect(done).to_contain_text("200")
    expect(done).to_contain_text("thanks, got it")
    no_stray_values(page)
    # Only the refused creations (400s) are in the console.
    assert all(FAILED_FETCH.search(m) for m in console), console


def test_delivery_history_filter_and_retry(page: Page, hooks: Hooks) -> None:
    console = console_messages(page)
    title = unique("flaky")
    flaky = hooks.receiver.script("/flaky", *[(500, "busy, try later")] * 8, (200, "recovered"))
    body = {"name": title, "url": flaky, "topics": ["orders.*"]}
    webhook = hooks.api.call("POST", "/infra/webhooks", body, status=201)
    event = {"topic": "orders.created", "data": {"order": 7}}
    hooks.api.call("POST", "/infra/webhooks/publish", event, status=202)
    hooks.receiver.wait_for("/flaky", 8)  # every attempt refused

    sign_in(page, hooks.stack.url, hooks.key, f"/dashboard/webhooks?webhook={webhook['id']}")
    history = section(page, "Deliveries")
    expect(history).to_contain_text(title)
    rows = history.locator("tbody tr")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row).to_contain_text("failed")  # the page follows it while it is pending
    expect(row).to_contain_text("orders.created")
    expect(row.locator('td[data-label="Attempts"]')).to_have_text("8")
    expect(row.locator('td[data-label="HTTP status"]')).to_have_text("500")
    expect(row).to_contain_text("busy, try later")
    expect(row.locator('td[data-label="Next attempt"]')).to_have_text("—")

    filters = history.get_by_role("form", name="Filter deliveries")
    filters.get_by_label("Status").select_option("succeeded")
    filters.get_by_role("button", name="Apply").click()
    expect(history.get_by_text("No deliveries match.")).to_be_visible()
    assert "status=succeeded" in page.url and f"webhook={webhook['id']}" in page.url
    filters.get_by_label("Status").select_option("failed")
    filters.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    filters.get_by_label("Status").select_option("")
    filters.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)

    [delivery] = hooks.api.call("GET", f"/infra/webhooks/{webhook['id']}/deliveries")["deliveries"]
    page.get_by_role("button", name=f"Retry delivery {delivery['id']}").click()
    expect(history.get_by_role("status").first).to_contain_text("another round of attempts")
    expect(row).to_contain_text("succeeded")
    expect(row.locator('td[data-label="HTTP status"]')).to_have_text("200")
    expect(row).to_contain_text("recovered")
    expect(page.get_by_role("button", name=f"Retry delivery {delivery['id']}")).to_have_count(0)
    assert hooks.receiver.to("/flaky")[-1].json()["data"] == {"order": 7}
    no_stray_values(page)
    screenshot(page, "webhooks")

    page.set_viewport_size(PHONE)
    page.reload()
    expect(section(page, "Deliveries").locator("tbody tr")).to_have_count(1)
    no_horizontal_scroll(page)
    assert not console, console


def test_a_key_without_webhook_scopes_is_told_which_is_missing(page: Page, hooks: Hooks) -> None:
    console = console_messages(page)
    key = create_key_sync(hooks.stack.db, unique("jobs-only"), ["jobs:read", "jobs:write"]).key
    sign_in(page, hooks.stack.url, key, "/dashboard/webhooks")
    listing = section(page, "Webhook list")
    expect(listing.get_by_role("status").filter(has_text="403 forbidden")).to_contain_text(
        "webhooks:read"
    )
    expect(listing).not_to_contain_text("This server has no webhooks API")
    no_stray_values(page)
    assert all(FAILED_FETCH.search(m) for m in console), console
