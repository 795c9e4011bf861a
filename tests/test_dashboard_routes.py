"""``/dashboard`` in process: the page and its files are served, without a key, and the app's
modules all resolve (there is no build step: the files are the app). The browser tests are in
``test_dashboard.py``.
"""

import posixpath
import re

import httpx

from tests.conftest import Service


async def test_dashboard_routes_serve_the_app_without_a_key(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.url) as anonymous:
        for path in (
            "/dashboard",
            "/dashboard/",
            "/dashboard/executions/wfexec_1",
            "/dashboard/x/y",
        ):
            page = await anonymous.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert '<script type="module" src="/dashboard/assets/js/app.js">' in page.text
        # Every module the app imports is served (no build step: the files are the app).
        pending, seen = ["js/app.js"], set[str]()
        while pending:
            name = pending.pop()
            seen.add(name)
            asset = await anonymous.get(f"/dashboard/assets/{name}")
            assert asset.status_code == 200, name
            assert "javascript" in asset.headers["content-type"]
            for imported in re.findall(r'from "(\.\.?/[^"]+)"', asset.text):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), imported))
                if target not in seen:
                    pending.append(target)
        assert len(seen) >= 10
        css = await anonymous.get("/dashboard/assets/style.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
        missing = await anonymous.get("/dashboard/assets/nope.js")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
