"""A webhook receiver on 127.0.0.1 for the browser tests, which are synchronous (Playwright's
sync API), so it runs on a thread of its own rather than in an event loop."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Scripted answers per path: ``script(path, (status, text), ...)`` answers in order and
    repeats the last; a path with no script answers ``200 thanks``."""

    url: str = ""
    answers: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def script(self, path: str, *answers: tuple[int, str]) -> str:
        with self.arrived:
            self.answers[path] = list(answers)
        return f"{self.url}{path}"

    def to(self, path: str) -> list[Received]:
        with self.arrived:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30) -> list[Received]:
        """The first ``count`` POSTs to ``path``, once they have arrived."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.to(path)) >= count, timeout):
                raise TimeoutError(f"{len(self.to(path))} of {count} POSTs to {path} arrived")
        return self.to(path)[:count]

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        with self.arrived:
            self.received.append(Received(path, {k.lower(): v for k, v in headers.items()}, body))
            self.arrived.notify_all()
            script = self.answers.get(path)
            if not script:
                return 200, "thanks"
            return script.pop(0) if len(script) > 1 else script[0]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A :class:`Receiver` listening on a free port of 127.0.0.1 until the block ends."""
    receiver = Receiver()

    class Handle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, text = receiver.answer(self.path, dict(self.headers), body)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is not the place for an access log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
