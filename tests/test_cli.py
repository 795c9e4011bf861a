"""The ``flowyard`` command line: ``keys create``, ``serve``, environment variables, signals."""

import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import ServerProcess, free_port

KEY_LINE = re.compile(r"sk_live_[0-9A-Za-z]{32,}")
ALL_SCOPES = [
    "jobs:read",
    "jobs:write",
    "workflows:read",
    "workflows:write",
    "webhooks:read",
    "webhooks:write",
]


def flowyard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flowyard ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "flowyard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def create_key(db: str, project: str, *extra: str) -> str:
    """``flowyard keys create``; returns the key, checking it is alone on the last line."""
    done = flowyard("keys", "create", "--db", db, "--project", project, *extra)
    assert done.returncode == 0, done.stderr
    last = done.stdout.rstrip("\n").split("\n")[-1]
    assert KEY_LINE.fullmatch(last), done.stdout
    return last


def stored_keys(db: str) -> list[tuple[str, str, list[str], int]]:
    """(project name, key hash, scopes, admin) of every key in the file, oldest first."""
    import json

    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT p.name, k.key_hash, k.scopes, k.admin FROM api_keys k"
            " JOIN projects p ON p.id = k.project_id ORDER BY k.created_at, k.rowid"
        ).fetchall()
    return [(name, digest, json.loads(scopes), admin) for name, digest, scopes, admin in rows]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """Start ``python -m flowyard ARGS`` with a log file; killed at the end if still running."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = tmp_path / f"spawned-{len(started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flowyard", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
            )
        started.append(proc)
        return proc, log_path

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def wait_ready(proc: subprocess.Popen[bytes], log_path: Path, url: str) -> None:
    """Block until ``url/readyz`` answers 200 (or the process dies)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise AssertionError("server never became ready: " + log_path.read_text())


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


PULL_JOB: dict[str, Any] = {"trigger": {"type": "pull", "queue": "q"}, "payload": {"x": 1}}


# ----------------------------------------------------------------------------- keys create


def test_keys_create_prints_the_key_last_and_stores_only_its_hash(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    key = create_key(db, "acme")
    [(project, digest, scopes, admin)] = stored_keys(db)
    assert project == "acme"
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert scopes == ALL_SCOPES  # default: every scope
    assert admin == 0
    assert key.encode() not in Path(db).read_bytes()
    for suffix in ("-wal", "-shm"):
        extra = Path(db + suffix)
        assert not extra.exists() or key.encode() not in extra.read_bytes()


def test_keys_create_reuses_an_existing_project(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "keys.db")
    first = create_key(db, "acme")
    second = create_key(db, "acme")
    other = create_key(db, "globex")
    assert len({first, second, other}) == 3
    with closing(sqlite3.connect(db)) as conn:
        names = sorted(name for (name,) in conn.execute("SELECT name FROM projects"))
    assert names == ["acme", "globex"]
    server = server_process(db)
    created = httpx.post(f"{server.url}/infra/jobs", json=PULL_JOB, headers=auth(first))
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    same = httpx.get(f"{server.url}/infra/jobs/{job_id}", headers=auth(second))
    assert same.status_code == 200 and same.json()["id"] == job_id
    elsewhere = httpx.get(f"{server.url}/infra/jobs/{job_id}", headers=auth(other))
    assert elsewhere.status_code == 404
    assert elsewhere.json()["code"] == "not_found"


def test_keys_create_scopes_restrict_the_key(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "keys.db")
    reader = create_key(db, "acme", "--scope", "jobs:read")
    writer = create_key(db, "acme", "--scope", "jobs:read", "--scope", "jobs:write")
    assert [scopes for *_, scopes, _ in stored_keys(db)] == [
        ["jobs:read"],
        ["jobs:read", "jobs:write"],
    ]
    server = server_process(db)
    refused = httpx.post(f"{server.url}/infra/jobs", json=PULL_JOB, headers=auth(reader))
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "forbidden"
    assert "jobs:write" in refused.json()["message"]
    listed = httpx.get(f"{server.url}/infra/jobs", headers=auth(reader))
    assert listed.status_code == 200
    assert listed.json()["jobs"] == []  # the refused create changed nothing
    created = httpx.post(f"{server.url}/infra/jobs", json=PULL_JOB, headers=auth(writer))
    assert created.status_code == 202, created.text
    seen = httpx.get(f"{server.url}/infra/jobs", headers={"X-API-Key": reader})
    assert [job["id"] for job in seen.json()["jobs"]] == [created.json()["id"]]


def test_keys_create_admin_flag(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    create_key(db, "ops", "--admin")
    create_key(db, "ops")
    assert [admin for *_, admin in stored_keys(db)] == [1, 0]


def test_keys_create_via_console_script(tmp_path: Path) -> None:
    script = shutil.which("flowyard")
    assert script is not None, "the flowyard console script is not installed"
    db = str(tmp_path / "script.db")
    done = subprocess.run(
        [script, "keys", "create", "--db", db, "--project", "p"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert KEY_LINE.fullmatch(done.stdout.rstrip("\n").split("\n")[-1])
    assert [name for name, *_ in stored_keys(db)] == ["p"]


def test_keys_create_needs_a_project(tmp_path: Path) -> None:
    done = flowyard("keys", "create", "--db", str(tmp_path / "k.db"))
    assert done.returncode == 2
    assert "--project" in done.stderr
    assert not (tmp_path / "k.db").exists()


# ----------------------------------------------------------------------------- python -m


def test_python_dash_m_flowyard_help() -> None:
    done = flowyard("--help")
    assert done.returncode == 0
    assert "serve" in done.stdout and "keys" in done.stdout
    serve_help = flowyard("serve", "--help")
    assert serve_help.returncode == 0
    for option in ("--host", "--port", "--db", "--retry-base-seconds", "--sync"):
        assert option in serve_help.stdout
    nothing = flowyard()
    assert nothing.returncode == 2
    assert "usage" in nothing.stderr


# ----------------------------------------------------------------------------- serve


def test_serve_logs_its_listening_line(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "serve.db")
    port = free_port()
    server = server_process(db, port=port)
    lines = server.log_path.read_text().splitlines()
    assert f"flowyard listening on http://127.0.0.1:{port}" in lines
    assert sum("flowyard listening on" in line for line in lines) == 1
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert Path(db).exists()


def test_serve_reads_environment_variables(
    tmp_path: Path, spawn: Callable[..., tuple[subprocess.Popen[bytes], Path]]
) -> None:
    db = str(tmp_path / "from-env.db")
    key = create_key(db, "env")
    port = free_port()
    env = {**os.environ, "FLOWYARD_PORT": str(port), "FLOWYARD_DB": db}
    proc, log_path = spawn("serve", env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, log_path, url)
    assert f"flowyard listening on http://127.0.0.1:{port}" in log_path.read_text()
    # The key was created in FLOWYARD_DB, so the server uses that file.
    created = httpx.post(f"{url}/infra/jobs", json=PULL_JOB, headers=auth(key))
    assert created.status_code == 202, created.text
    assert not (tmp_path / "flowyard.db").exists()  # not the default ./flowyard.db
    proc.terminate()
    assert proc.wait(10) == 0
    # Options win over the environment.
    other_port = free_port()
    proc, log_path = spawn("serve", "--port", str(other_port), env=env)
    wait_ready(proc, log_path, f"http://127.0.0.1:{other_port}")
    assert f"flowyard listening on http://127.0.0.1:{other_port}" in log_path.read_text()
    listed = httpx.get(f"http://127.0.0.1:{other_port}/infra/jobs", headers=auth(key))
    assert [job["id"] for job in listed.json()["jobs"]] == [created.json()["id"]]


def test_keys_create_reads_flowyard_db(tmp_path: Path) -> None:
    db = str(tmp_path / "env-keys.db")
    done = flowyard("keys", "create", "--project", "e", env={**os.environ, "FLOWYARD_DB": db})
    assert done.returncode == 0, done.stderr
    assert [name for name, *_ in stored_keys(db)] == ["e"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_exits_0_promptly_during_a_long_poll(
    tmp_path: Path, server_process: Callable[..., ServerProcess], signum: int
) -> None:
    db = str(tmp_path / "signal.db")
    key = create_key(db, "sig")
    server = await anyio.to_thread.run_sync(lambda: server_process(db))
    answer: dict[str, Any] = {}

    async def long_poll() -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=auth(key), timeout=30) as api:
            try:
                response = await api.post(
                    "/infra/jobs/claim", json={"queue": "idle", "wait_seconds": 20}
                )
            except httpx.TransportError as exc:
                answer["error"] = exc
            else:
                answer["status"] = response.status_code
                answer["body"] = response.json()
            answer["at"] = time.monotonic()

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_poll)
        await anyio.sleep(0.3)  # let the claim reach the server and start waiting
        assert answer == {}, "the claim should still be waiting"
        sent = time.monotonic()
        server.proc.send_signal(signum)
        code = await anyio.to_thread.run_sync(lambda: server.proc.wait(10))
        exited = time.monotonic()
    assert code == 0, server.log_path.read_text()
    assert exited - sent < 5
    assert "error" not in answer, answer
    assert answer["at"] - sent < 5
    if answer["status"] == 200:
        assert answer["body"] == [], answer  # nothing was ever claimable
    else:
        assert answer["status"] == 503, answer
        assert answer["body"]["code"] == "unavailable", answer
    log = server.log_path.read_text()
    assert "Traceback" not in log, log


async def test_sigterm_keeps_acknowledged_writes(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "term.db")
    key = create_key(db, "term")
    server = await anyio.to_thread.run_sync(lambda: server_process(db))
    async with httpx.AsyncClient(base_url=server.url, headers=auth(key), timeout=30) as api:
        ids = [(await api.post("/infra/jobs", json=PULL_JOB)).json()["id"] for _ in range(5)]
    assert await anyio.to_thread.run_sync(server.terminate) == 0
    server = await anyio.to_thread.run_sync(lambda: server_process(db))
    async with httpx.AsyncClient(base_url=server.url, headers=auth(key), timeout=30) as api:
        claimed = (await api.post("/infra/jobs/claim", json={"queue": "q", "count": 10})).json()
    assert sorted(job["id"] for job in claimed) == sorted(ids)


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    from flowyard.storage.projects import create_key_sync

    db = str(tmp_path / "pipe.db")
    for index in range(400):  # more JSON than a pipe buffers
        create_key_sync(db, "piped", ["jobs:read"], name=f"key-{index}")
    listing = subprocess.Popen(
        [sys.executable, "-m", "flowyard", "keys", "list", "--db", db, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.read(10)
    listing.stdout.close()  # like ``| head -c 10``
    assert listing.wait(timeout=60) == 1
    with listing.stderr:
        assert b"Traceback" not in listing.stderr.read()


def test_serve_on_a_taken_port_says_so_without_a_traceback(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = flowyard("serve", "--port", str(port), "--db", str(tmp_path / "taken.db"))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
