"""The overview's Nodes card in a real browser against ``flowyard serve``: admin keys see the
nodes of ``GET /admin/cluster`` (a single server: one node owning every shard); project keys
do not get the card at all (the route is admin-only and the nodes are the whole service's).
"""

import re

from tests.dashboard_support import (
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
    unique,
)

stack = stack_fixture("nodes", "nodes-card")

expect.set_options(timeout=10_000)


def test_an_admin_sees_one_node_owning_every_shard(page: Page, stack: Stack) -> None:
    sign_in(page, stack.url, stack.project_key(unique("ops"), admin=True))
    card = page.locator("section", has=page.get_by_role("heading", name="Nodes", exact=True))
    expect(card).to_be_visible()
    rows = card.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator('[data-label="Node"]')).to_have_text("solo")
    expect(rows.first.locator('[data-label="URL"]')).to_have_text(stack.url)
    expect(rows.first.locator("[data-shards]")).to_have_text("64")
    expect(rows.first.locator("[data-shards]")).to_have_attribute(
        "title", "shards 0\u201363"
    )  # an en dash
    expect(rows.first.locator('[data-label="Last seen"]')).to_have_text(re.compile(r"^\d+ s ago$"))
    summary = card.locator("p[data-unowned]")
    expect(summary).to_have_attribute("data-unowned", "0")
    expect(summary).to_have_text("0 of 64 shards unowned.")
    no_stray_values(page)
    screenshot(page, "nodes", down_to=card)
    page.set_viewport_size(PHONE)
    expect(card.locator("[data-shards]")).to_be_visible()
    no_horizontal_scroll(page)
    screenshot(page, "phone-nodes", down_to=card)


def test_a_project_key_gets_no_nodes_card_and_no_403(page: Page, stack: Stack) -> None:
    problems = console_messages(page)
    sign_in(page, stack.url, stack.key)
    expect(page.get_by_role("heading", name="Jobs by status")).to_be_visible()
    expect(page.locator(".tile").first).to_be_visible()
    expect(page.get_by_role("heading", name="Nodes", exact=True)).to_have_count(0)
    assert not [message for message in problems if "/admin/cluster" in message], problems
