"""For the dashboard tests: a pull worker thread, a sync API client, the browser and sign-in."""

import functools
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import start_server

try:
    from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright
except ImportError:  # pragma: no cover - only without the dev extras
    pytest.fail(
        "the dashboard tests need Playwright for Python: pip install -e '.[dev]'",
        pytrace=False,
    )

__all__ = [
    "DESKTOP",
    "EXECUTION_URL",
    "PHONE",
    "Api",
    "Browser",
    "Page",
    "Stack",
    "Worker",
    "chromium",
    "console_messages",
    "expect",
    "no_horizontal_scroll",
    "no_stray_values",
    "node",
    "open_page",
    "running_stack",
    "screenshot",
    "sign_in",
    "status_of",
    "step",
    "unique",
]

CHROMIUM = os.environ.get("FLOWYARD_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
Json = dict[str, Any]


class Api:
    """A blocking client for one project's key: set up data without going through the page."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = self.client.request(method, path, json=body)
        assert response.status_code == status, response.text
        return response.json()

    def blueprint(self, name: str, steps: list[Json]) -> Json:
        body = {"name": name, "steps": steps}
        return dict(self.call("POST", "/infra/workflows/blueprints", body))

    def trigger(self, blueprint_id: str, input_data: Json | None = None) -> str:
        path = f"/infra/workflows/blueprints/{blueprint_id}/trigger"
        return str(self.call("POST", path, {"input_data": input_data or {}})["execution_id"])

    def execution(self, execution_id: str) -> Json:
        return dict(self.call("GET", f"/infra/workflows/executions/{execution_id}"))

    def job(self, body: Json) -> Json:
        return dict(self.call("POST", "/infra/jobs", body, status=202))

    def claim(self, queue: str, count: int = 1) -> list[Json]:
        return list(self.call("POST", "/infra/jobs/claim", {"queue": queue, "count": count}))

    def ack(self, job: Json, result: Any = None, error: str | None = None) -> Json:
        body: Json = {"claim_token": job["claim_token"], "retryable": False}
        body |= {"status": "failed", "error": error} if error else {"status": "completed"}
        if not error:
            body["result"] = result
        return dict(self.call("POST", f"/infra/jobs/{job['id']}/ack", body))

    def close(self) -> None:
        self.client.close()


def step(
    step_id: str,
    queue: str,
    payload: Any = None,
    depends_on: list[str] | None = None,
    **extra: Any,
) -> Json:
    """A blueprint step whose job is on a pull queue; ``max_attempts`` 1 so failures stick."""
    body: Json = {
        "id": step_id,
        "job_trigger": {"trigger": {"type": "pull", "queue": queue}, "max_attempts": 1},
        "payload_template": payload,
        **extra,
    }
    if depends_on:
        body["depends_on"] = depends_on
    return body


class Worker:
    """A real pull worker on its own thread: claims over HTTP and acks by what the payload says.

    ``{"fail": text}`` fails the job (not retryable); ``{"gate": name}`` holds it, claimed and
    running, until ``release(name)``; anything else completes with ``{"ok": true, "echo": ...}``.
    """

    def __init__(self, url: str, key: str, queue: str) -> None:
        self.api = Api(url, key)
        self.queue = queue
        self.released: set[str] = set()
        self.held: list[Json] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name="dashboard-worker", daemon=True)

    def release(self, gate: str) -> None:
        with self.lock:
            self.released.add(gate)

    def _ack(self, job: Json) -> None:
        payload = job["payload"] if isinstance(job["payload"], dict) else {}
        if "fail" in payload:
            self.api.ack(job, error=str(payload["fail"]))
        else:
            self.api.ack(job, {"ok": True, "echo": payload})

    def _run(self) -> None:
        claim = {"queue": self.queue, "count": 10, "wait_seconds": 0.25, "visibility_timeout": 600}
        try:
            while not self.stopping.is_set():
                jobs = self.api.call("POST", "/infra/jobs/claim", claim)
                with self.lock:
                    self.held.extend(jobs)
                    ready = [j for j in self.held if _gate(j) in self.released or not _gate(j)]
                    self.held = [j for j in self.held if j not in ready]
                for job in ready:
                    self._ack(job)
        except Exception as exc:  # surfaced by the fixture's teardown
            self.errors.append(repr(exc))

    @contextmanager
    def running(self) -> Iterator["Worker"]:
        self.thread.start()
        try:
            yield self
        finally:
            with self.lock:
                self.released |= {_gate(job) for job in self.held}
            self.stopping.set()
            self.thread.join(10)
            self.api.close()
            assert not self.errors, self.errors


def _gate(job: Json) -> str:
    payload = job["payload"]
    return str(payload.get("gate") or "") if isinstance(payload, dict) else ""


@dataclass
class Stack:
    """The server process, its main project's key and API client, and the worker on a queue."""

    url: str
    db: str
    key: str
    api: Api
    worker: Worker

    def project_key(self, project: str, *, admin: bool = False) -> str:
        """A key for another (fresh) project, straight in the SQLite file."""
        return create_key_sync(self.db, project, list(ALL_SCOPES), admin=admin).key


@contextmanager
def running_stack(tmp: Path, queue: str, *options: str) -> Iterator[Stack]:
    """``flowyard serve`` (with more ``options``) on a fresh file in ``tmp``, a key of project
    ``dash``, and a :class:`Worker` on ``queue``."""
    db = str(tmp / "flowyard.db")
    key = create_key_sync(db, "dash", list(ALL_SCOPES)).key
    server = start_server(db, tmp, "--sync", "normal", *options)
    api = Api(server.url, key)
    try:
        with Worker(server.url, key, queue).running() as worker:
            yield Stack(server.url, db, key, api, worker)
    finally:
        api.close()
        assert server.terminate() == 0


@contextmanager
def open_page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh desktop-sized context; fails if any script on it threw."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not problems, problems  # no uncaught script errors on any page


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def node(page: Page, step_id: str) -> Any:
    """A step's node in the execution graph."""
    return page.locator(f'svg.dag [data-step="{step_id}"]')


def status_of(page: Page) -> Any:
    """The execution or job heading, which carries the status it shows."""
    return page.locator("h1[data-status]")


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium from the system package (Playwright's own download is not used)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install it with `apt-get install -y chromium`"
            " (CI's .ci/run does) or point FLOWYARD_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, url: str, key: str, path: str = "/dashboard") -> None:
    """Open ``path`` and sign in through the form."""
    page.goto(url + path)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def screenshot(page: Page, name: str, down_to: Any = None) -> None:
    """Take the viewport (or, with ``down_to``, a locator, the page from its top to that
    element's bottom) as ``<name>.png`` (small enough to commit): into ``docs/screenshots``
    when ``FLOWYARD_SCREENSHOTS=1`` (to refresh the README's pictures), else into a temporary
    folder, so that a test run leaves the checkout as it found it."""
    folder = SCREENSHOTS if os.environ.get("FLOWYARD_SCREENSHOTS") == "1" else _scratch()
    folder.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    if down_to is None:
        page.screenshot(path=str(folder / f"{name}.png"))
        return
    box = down_to.bounding_box()
    assert box is not None, "the element to end the screenshot at is not shown"
    width = page.evaluate("document.documentElement.clientWidth")
    clip: Any = {"x": 0, "y": 0, "width": width, "height": box["y"] + box["height"] + 12}
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True, clip=clip)


@functools.cache
def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="flowyard-screenshots-"))


def no_horizontal_scroll(page: Page) -> None:
    """The page fits the viewport's width (tables and graphs scroll inside their boxes)."""
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page is {widths[0]}px wide in a {widths[1]}px viewport"


NO_VALUE = re.compile(r"\b(None|null|undefined|NaN)\b")


def no_stray_values(page: Page) -> None:
    """Nothing on screen reads None, null, undefined or NaN (an empty value is a dash)."""
    text = page.locator("body").inner_text()
    found = NO_VALUE.search(text)
    assert found is None, text[max(0, found.start() - 80) : found.end() + 80]


def console_messages(page: Page) -> list[str]:
    """Every error or warning the page logs from now on (a failed fetch logs one, a 403
    included)."""
    messages: list[str] = []

    def keep(message: Any) -> None:
        if message.type in ("error", "warning"):
            messages.append(f"{message.type}: {message.text} at {message.location}")

    page.on("console", keep)
    return messages


EXECUTION_URL = re.compile(r"/dashboard/executions/wfexec_[0-9A-Z]+$")


def stack_fixture(queue: str, folder: str, *options: str) -> Any:
    """A module-scoped ``stack`` fixture: the module's server, key and worker on ``queue``."""

    @pytest.fixture(scope="module")
    def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        with running_stack(tmp_path_factory.mktemp(folder), queue, *options) as running:
            yield running

    return stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page per test."""
    with open_page(browser) as opened:
        yield opened
