"""``flowyard serve`` as a child process of the demo: started on a port (0: any free one),
awaited until ready, stopped with SIGTERM.

The child runs in its own process group, so that a Ctrl-C in the terminal reaches the demo
alone: its workers must finish and ack the jobs they hold while the server still answers, and
only then does the demo stop the server. On Linux the child also gets SIGTERM if the demo dies
without stopping it.
"""

import ctypes
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import IO

import httpx

LISTENING = "flowyard listening on "
_PR_SET_PDEATHSIG = 1


class ServerFailed(Exception):
    """The server exited, or did not get ready in time."""


def _end_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServerChild:
    """A running ``flowyard serve``: its ``url`` (with the port it bound) and ``pid``."""

    def __init__(self, proc: subprocess.Popen[str], url: str, relay: threading.Thread) -> None:
        self.proc = proc
        self.url = url
        self.pid = proc.pid
        self._relay = relay

    @classmethod
    def start(cls, db: str, port: int, *, timeout: float = 60) -> "ServerChild":
        """Start the server on 127.0.0.1 and return once ``/readyz`` answers 200.

        Raises:
            ServerFailed: it exited first (e.g. the port is taken), or ``timeout`` passed.
        """
        # A single-file build is itself the ``flowyard`` command; Python needs ``-m flowyard``.
        flowyard = (
            [sys.executable]
            if getattr(sys, "frozen", False)
            else [sys.executable, "-m", "flowyard"]
        )
        command = [*flowyard, "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--db", db, "--log-level", "warning"]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            process_group=0,
            preexec_fn=_end_with_parent if sys.platform == "linux" else None,
        )
        urls: queue.SimpleQueue[str] = queue.SimpleQueue()
        assert proc.stderr is not None
        relay = threading.Thread(target=_relay, args=(proc.stderr, urls), daemon=True)
        relay.start()
        child = cls(proc, "", relay)
        try:
            child.url = child._await_url(urls, time.monotonic() + timeout)
            child._await_ready(time.monotonic() + timeout)
        except BaseException:
            child.stop()
            raise
        return child

    def _await_url(self, urls: "queue.SimpleQueue[str]", deadline: float) -> str:
        while time.monotonic() < deadline:
            try:
                return urls.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    status = self.proc.returncode
                    raise ServerFailed(f"the server exited with status {status}") from None
        raise ServerFailed("the server did not start listening in time")

    def _await_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"the server exited with status {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise ServerFailed("the server did not get ready in time")

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then wait for a graceful exit (SIGKILL after ``timeout``); its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._relay.join(5)
        return self.proc.returncode


def _relay(stream: IO[str], urls: "queue.SimpleQueue[str]") -> None:
    """Pass the server's log on to our stderr, and its URL on to :meth:`ServerChild.start`."""
    for line in stream:
        if line.startswith(LISTENING):
            urls.put(line[len(LISTENING) :].strip())
        else:
            sys.stderr.write(line)
            sys.stderr.flush()
    stream.close()
