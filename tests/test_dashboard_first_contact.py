"""The dashboard as a newcomer meets it, in headless Chromium against ``flowyard serve``: the
project by its name, a title per page, no stray ``None``/``null`` text, why an execution failed
at the top of its page, and a quiet browser console for a key that is not an admin's.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.dashboard_support import (
    Api,
    Page,
    Stack,
    console_messages,
    expect,
    no_stray_values,
    sign_in,
    stack_fixture,
    status_of,
    step,
    unique,
)

QUEUE = "first"


stack = stack_fixture(QUEUE, "first-contact")


@pytest.fixture
def console(page: Page) -> list[str]:
    return console_messages(page)


@dataclass
class Tour:
    """A project of its own (not an admin's), and the pages a newcomer opens."""

    project: str
    project_id: str
    key: str
    pages: dict[str, tuple[str, str]]
    """path -> (the page's title, something that only shows once its data is in)"""


@pytest.fixture(scope="module")
def tour(stack: Stack) -> Tour:
    project = unique("acme")
    key = stack.project_key(project)
    api = Api(stack.url, key)
    project_id = api.call("GET", "/core/whoami")["project_id"]
    blueprint = api.blueprint("tidy", [step("only", "elsewhere", {"n": 1})])
    execution_id = api.trigger(blueprint["id"])
    job_id = api.job({"name": "solo", "trigger": {"type": "pull", "queue": "elsewhere"}})["id"]
    api.close()
    pages = {
        "/dashboard": ("Overview · Flowyard", ".tile"),
        "/dashboard/workflows": ("Workflows · Flowyard", "tbody tr"),
        "/dashboard/jobs": ("Jobs · Flowyard", "tbody tr"),
        "/dashboard/queues": ("Queues · Flowyard", "tbody tr"),
        f"/dashboard/executions/{execution_id}": (
            f"Execution {execution_id} · Flowyard",
            "svg.dag .node",
        ),
        f"/dashboard/jobs/{job_id}": (f"Job {job_id} · Flowyard", "pre.json"),
        "/dashboard/nowhere": ("Not found · Flowyard", "main h1"),
    }
    return Tour(project, project_id, key, pages)


def visit(page: Page, stack: Stack, tour: Tour) -> Iterator[str]:
    """Sign in with the tour's key, then open each of its pages once its data is shown."""
    sign_in(page, stack.url, tour.key)
    for path, (_, loaded) in tour.pages.items():
        page.goto(stack.url + path)
        expect(page.locator(loaded).first).to_be_visible()
        yield path


def test_a_project_key_sees_its_project_by_name(page: Page, stack: Stack, tour: Tour) -> None:
    header = page.locator("header")
    for _ in visit(page, stack, tour):
        expect(header).to_contain_text(f"Project {tour.project}")
        expect(header).not_to_contain_text(tour.project_id)
    expect(page.get_by_label("Project")).to_be_hidden()  # no picker: not an admin key


def test_each_page_has_its_own_title(page: Page, stack: Stack, tour: Tour) -> None:
    for path in visit(page, stack, tour):
        expect(page).to_have_title(tour.pages[path][0])


def test_a_project_key_logs_no_errors_in_the_console(
    page: Page, stack: Stack, tour: Tour, console: list[str]
) -> None:
    visited = list(visit(page, stack, tour))
    assert len(visited) == len(tour.pages)
    assert not console, console


def test_an_admin_sees_project_names_in_the_switcher_and_the_lists(
    page: Page, stack: Stack
) -> None:
    project = unique("watched")
    api = Api(stack.url, stack.project_key(project))
    watched = api.call("GET", "/core/whoami")["project_id"]
    api.job({"name": "watched-job", "trigger": {"type": "pull", "queue": "nobody"}})
    api.close()
    own = unique("ops")
    sign_in(page, stack.url, stack.project_key(own, admin=True))
    picker = page.get_by_label("Project")
    expect(picker.locator(f'option[value="{watched}"]')).to_have_text(project)
    expect(picker.locator("option:checked")).to_have_text(f"{own} · this key")
    picker.select_option(watched)
    expect(page.get_by_text(f"Viewing {project} through the admin API")).to_be_visible()
    page.get_by_role("link", name="Jobs").click()
    row = page.locator("tbody tr").filter(has_text="watched-job")
    expect(row.locator('td[data-label="Project"]')).to_have_text(project)
    expect(page.locator("main")).not_to_contain_text(watched)


def test_the_failure_reason_tops_a_failed_or_compensated_execution(
    page: Page, stack: Stack
) -> None:
    compensated = stack.api.blueprint(
        unique("po-box"),
        [
            step("charge", QUEUE, {"amount": 5}),
            step(
                "ship", QUEUE, {"fail": "no deliveries to P.O. boxes"}, ["charge"], catch="refund"
            ),
            step("refund", QUEUE, {"why": "{{failure.error}}"}),
        ],
    )
    failed = stack.api.blueprint(
        unique("declined"), [step("charge", QUEUE, {"fail": "card declined"})]
    )
    completed = stack.api.blueprint(unique("fine"), [step("charge", QUEUE, {"amount": 1})])

    sign_in(
        page, stack.url, stack.key, f"/dashboard/executions/{stack.api.trigger(compensated['id'])}"
    )
    expect(status_of(page)).to_have_attribute("data-status", "compensated")
    reason = page.locator("main h1[data-status] + [role=note]")
    expect(reason).to_have_text(
        "Compensated: step ship failed with job_failed: no deliveries to P.O. boxes;"
        " catch step refund ran."
    )
    no_stray_values(page)

    page.goto(f"{stack.url}/dashboard/executions/{stack.api.trigger(failed['id'])}")
    expect(status_of(page)).to_have_attribute("data-status", "failed")
    expect(reason).to_have_text("Failed: step charge failed with job_failed: card declined.")

    page.goto(f"{stack.url}/dashboard/executions/{stack.api.trigger(completed['id'])}")
    expect(status_of(page)).to_have_attribute("data-status", "completed")
    expect(page.get_by_role("note")).to_have_count(0)


def test_empty_values_show_as_a_dash(page: Page, stack: Stack) -> None:
    blueprint = stack.api.blueprint(
        unique("blanks"),
        [
            step("first", QUEUE, {"n": 1}),
            step("second", "nobody-works-here", None, ["first"]),
            step("third", "nobody-works-here", {"n": 3}, ["second"]),
        ],
    )
    execution_id = stack.api.trigger(blueprint["id"], None)
    sign_in(page, stack.url, stack.key, f"/dashboard/executions/{execution_id}")
    chips = page.get_by_role("list", name="Steps")
    expect(chips.get_by_role("button", name="first · completed")).to_be_visible()
    panel = page.locator("section", has=page.get_by_role("heading", name="Step", exact=True))
    for step_id in ("first", "second", "third"):  # done, waiting in its queue, not started
        chips.get_by_role("button", name=re.compile(f"^{step_id} ")).click()
        expect(panel.get_by_role("heading", name=step_id)).to_be_visible()
        expect(panel.get_by_text("Loading…")).to_have_count(0)
        expect(page.locator("ol.timeline li").first).to_be_visible()
        no_stray_values(page)
    expect(panel.get_by_label("Output")).to_have_text("—")

    chips.get_by_role("button", name=re.compile("^second ")).click()
    panel.get_by_role("link", name=re.compile("^job_")).click()
    expect(status_of(page)).to_have_attribute("data-status", "pending")
    expect(page.get_by_label("Payload")).to_have_text("—")
    expect(page.get_by_label("Result")).to_have_text("—")
    no_stray_values(page)
    for path, loaded in (
        ("", ".tile"),
        ("/workflows", "tbody tr"),
        ("/jobs", "tbody tr"),
        ("/queues", "tbody tr"),
    ):
        page.goto(f"{stack.url}/dashboard{path}")
        expect(page.locator(loaded).first).to_be_visible()
        no_stray_values(page)
