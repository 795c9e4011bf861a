"""``/docs`` in headless Chromium: Swagger UI renders offline and calls the API with a key."""

import re
from pathlib import Path

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import start_server
from tests.dashboard_support import chromium, expect


def test_docs_renders_offline_and_authorizes_with_a_key(tmp_path: Path) -> None:
    db = str(tmp_path / "docs.db")
    key = create_key_sync(db, "docs", list(ALL_SCOPES)).key
    server = start_server(db, tmp_path, "--sync", "normal")
    elsewhere: list[str] = []
    try:
        with chromium() as browser:
            context = browser.new_context()
            context.set_default_timeout(15_000)

            def local_only(route, request):  # type: ignore[no-untyped-def]
                if request.url.startswith(server.url):
                    route.continue_()
                else:
                    elsewhere.append(request.url)
                    route.abort()

            context.route("**/*", local_only)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{server.url}/docs")
            expect(page.locator(".info .title")).to_contain_text("Flowyard")
            balance = page.locator("#operations-tokens-get_core_tokens_balance")
            expect(balance).to_be_visible()

            page.get_by_role("button", name="Authorize").first.click()
            bearer = page.locator(".auth-container").first  # schemes in document order
            bearer.locator("#auth-bearer-value").fill(key)
            bearer.get_by_role("button", name="Apply credentials").click()
            expect(bearer.get_by_role("button", name="Remove authorization")).to_be_visible()
            page.locator(".modal-ux .close-modal").click()

            balance.locator(".opblock-summary").click()
            balance.get_by_role("button", name="Try it out").click()
            balance.get_by_role("button", name="Execute").click()
            answer = balance.locator(".live-responses-table tr.response .response-col_status")
            expect(answer).to_have_text(re.compile(r"^\s*200"))
            expect(balance.locator(".live-responses-table")).to_contain_text("total_balance")
            assert errors == []
    finally:
        assert server.terminate() == 0
    assert elsewhere == []
