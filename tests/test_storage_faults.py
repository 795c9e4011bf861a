"""The database's disk fills up or turns read-only under a running server, then recovers.

The real ``flowyard serve`` runs with its SQLite file on a small ext4 file system of its own
(a loop-mounted image): filling that file system with a dummy file gives the server real
``ENOSPC`` errors, and ``chattr +i`` on the database and its WAL makes every write fail even
for root, on file descriptors already open (a ``remount,ro`` is refused while the server holds
the files open for writing, and ``chmod`` does not stop root). While storage fails, writes
answer ``503 unavailable`` and ``/readyz`` says so, reads keep working; once space returns or
the files are writable again, the server takes writes again without a restart, and every write
it acknowledged is still there.
"""

import errno
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import Handler, ServerProcess
from tests.workflow_support import create_blueprint, pull_step, trigger, wait_status

StartServer = Callable[..., ServerProcess]

PULL = {"trigger": {"type": "pull", "queue": "q"}}
BIG = "x" * 200_000  # a payload that makes the WAL grow by ~50 pages
RECOVERY_SECONDS = 30.0


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB ext4 file system mounted under ``tmp_path`` (skipped where mounts are refused).

    Request it before ``server_process`` so that the servers are gone before it is unmounted.
    """
    missing = [
        tool for tool in ("mkfs.ext4", "mount", "umount", "chattr") if not shutil.which(tool)
    ]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with open(image, "wb") as file:
        file.truncate(24 * 1024 * 1024)
    made = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    mounted = _run("mount", "-o", "loop", str(image), str(mount))
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount a file system here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        for path in mount.iterdir():
            _run("chattr", "-i", str(path))
        if _run("umount", str(mount)).returncode != 0:
            _run("umount", "-l", str(mount))


def fill(path: Path) -> None:
    """Write ``path`` until the file system has no space left."""
    chunk = b"\0" * (1024 * 1024)
    with open(path, "wb", buffering=0) as file:
        try:
            while True:
                file.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with open(path.with_suffix(".small"), "wb", buffering=0) as file:
        try:  # the last blocks, smaller than a chunk
            while True:
                file.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def free(path: Path) -> None:
    path.unlink()
    path.with_suffix(".small").unlink()


@contextmanager
def read_only(db: str) -> Iterator[None]:
    """The database and its WAL refuse every write for the duration of the block."""
    files = [db, f"{db}-wal"]  # not the -shm file: it is mapped into memory
    frozen = _run("chattr", "+i", *files)
    if frozen.returncode != 0:
        pytest.skip(f"cannot make the files immutable here: {frozen.stderr.strip()}")
    try:
        yield
    finally:
        _run("chattr", "-i", *files)


def api(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def create_job(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/infra/jobs", json={**PULL, **body})


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "unavailable"
    assert "Traceback" not in response.text


def wait_for(condition: Callable[[], bool], what: str, timeout: float = RECOVERY_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def readyz(server: ServerProcess) -> int:
    return httpx.get(f"{server.url}/readyz", timeout=10).status_code


def start(disk: Path, server_process: StartServer) -> tuple[ServerProcess, str, str]:
    db = str(disk / "flowyard.db")
    key = create_key_sync(db, "test", list(ALL_SCOPES)).key
    return server_process(db), key, db


def check_file(db: str, acknowledged: list[str]) -> None:
    """After the server stopped: the file is sound and holds every acknowledged job."""
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in conn.execute("SELECT id FROM jobs")}
    assert set(acknowledged) <= stored


def test_disk_full_answers_503_and_recovers_without_restart(
    disk: Path, server_process: StartServer
) -> None:
    server, key, db = start(disk, server_process)
    dummy = disk / "dummy"
    with api(server, key) as client:
        acknowledged = [create_job(client, name=f"before-{i}").json()["id"] for i in range(5)]
        held = client.post("/infra/jobs/claim", json={"queue": "q"}).json()[0]
        blueprint = client.post(
            "/infra/workflows/blueprints",
            json={"name": "bp", "steps": [{"id": "a", "job_trigger": PULL}]},
        ).json()

        fill(dummy)
        refused = None
        for attempt in range(200):  # what still fits in the WAL's free pages is committed
            response = create_job(client, name=f"filling-{attempt}", payload=BIG)
            if response.status_code != 202:
                refused = response
                break
            acknowledged.append(response.json()["id"])
        assert refused is not None, "the disk never filled"
        assert_unavailable(refused)
        assert "full" in refused.json()["message"]

        # Every kind of write is refused the same way, and nothing of it is half-done.
        assert_unavailable(create_job(client, payload=BIG))
        assert_unavailable(
            client.post(
                f"/infra/workflows/blueprints/{blueprint['id']}/trigger",
                json={"input_data": {"pad": BIG}},
            )
        )
        ack = {"status": "completed", "result": {"pad": BIG}, "claim_token": held["claim_token"]}
        assert_unavailable(client.post(f"/infra/jobs/{held['id']}/ack", json=ack))
        assert readyz(server) == 503
        assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200
        # Reads go on.
        assert client.get(f"/infra/jobs/{acknowledged[0]}").status_code == 200
        assert client.get(f"/infra/jobs/{held['id']}").json()["status"] == "running"
        assert client.get("/infra/workflows/executions").json()["executions"] == []

        free(dummy)
        wait_for(lambda: readyz(server) == 200, "/readyz to turn 200 after space returned")
        after = create_job(client, name="after", payload=BIG)
        assert after.status_code == 202, after.text
        acknowledged.append(after.json()["id"])
        # The refused ack left the job as it was: the same claim acks now.
        acked = client.post(f"/infra/jobs/{held['id']}/ack", json=ack)
        assert acked.status_code == 200, acked.text
        assert acked.json()["status"] == "completed"
        triggered = client.post(
            f"/infra/workflows/blueprints/{blueprint['id']}/trigger", json={"input_data": {}}
        )
        assert triggered.status_code == 200, triggered.text
        for job_id in acknowledged:
            assert client.get(f"/infra/jobs/{job_id}").status_code == 200, job_id
    assert server.terminate() == 0
    check_file(db, acknowledged)


def test_read_only_files_answer_503_and_recover_without_restart(
    disk: Path, server_process: StartServer
) -> None:
    server, key, db = start(disk, server_process)
    with api(server, key) as client:
        acknowledged = [create_job(client, name=f"before-{i}").json()["id"] for i in range(5)]
        with read_only(db):
            assert_unavailable(create_job(client, name="refused"))
            assert_unavailable(client.post("/infra/jobs/batch", json={"jobs": [PULL, PULL]}))
            assert readyz(server) == 503
            assert client.get(f"/infra/jobs/{acknowledged[-1]}").status_code == 200
            listed = client.get("/infra/jobs", params={"limit": 100}).json()["jobs"]
            assert {job["id"] for job in listed} == set(acknowledged)  # nothing half-written
        wait_for(lambda: readyz(server) == 200, "/readyz to turn 200 once writable again")
        after = create_job(client, name="after")
        assert after.status_code == 202, after.text
        acknowledged.append(after.json()["id"])
        listed = client.get("/infra/jobs", params={"limit": 100}).json()["jobs"]
        assert {job["id"] for job in listed} == set(acknowledged)
    assert server.terminate() == 0
    check_file(db, acknowledged)


async def wait_for_log(server: ServerProcess, text: str) -> None:
    """Poll the server's log for ``text`` (what the server did while nobody was asking)."""
    with anyio.fail_after(RECOVERY_SECONDS):
        while text not in server.log_path.read_text():
            await anyio.sleep(0.1)


async def wait_for_job(
    client: httpx.AsyncClient, job_id: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    job: dict[str, Any] = {}
    with anyio.fail_after(RECOVERY_SECONDS):
        while not check(job := (await client.get(f"/infra/jobs/{job_id}")).json()):
            await anyio.sleep(0.1)
    return job


def async_api(server: ServerProcess, key: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)


async def test_a_delivery_refused_by_storage_is_made_again(
    disk: Path, server_process: StartServer, handler: Handler
) -> None:
    server, key, db = await anyio.to_thread.run_sync(start, disk, server_process)
    body = {"trigger": {"type": "delayed", "delay_seconds": 2}, "handler": handler.at("/late")}
    async with async_api(server, key) as client:
        job = (await client.post("/infra/jobs", json=body)).json()
        with read_only(db):
            # Due while nothing can be written: its start is refused, so it is not sent yet.
            await wait_for_log(server, f"delivery of {job['id']} failed")
            assert handler.to("/late") == []
        await handler.wait_for("/late", timeout=RECOVERY_SECONDS)
        done = await wait_for_job(client, job["id"], lambda j: j["status"] == "completed")
        assert done["attempt"] == 1


async def test_a_handler_answer_refused_by_storage_is_recorded_later(
    disk: Path, server_process: StartServer, handler: Handler
) -> None:
    server, key, db = await anyio.to_thread.run_sync(start, disk, server_process)
    url = handler.script("/slow", (200, {"answer": 42}, 2.0))
    async with async_api(server, key) as client:
        job = (
            await client.post(
                "/infra/jobs", json={"trigger": {"type": "immediate"}, "handler": url}
            )
        ).json()
        await handler.wait_for("/slow")  # the start is committed: the attempt is under way
        with read_only(db):
            await wait_for_log(server, f"could not record the outcome of {job['id']}")
        done = await wait_for_job(client, job["id"], lambda j: j["status"] == "completed")
        assert done["result"] == {"answer": 42}
        assert len(handler.to("/slow")) == 1  # recorded, not delivered again


async def test_a_lease_that_ran_out_while_storage_failed_expires_later(
    disk: Path, server_process: StartServer
) -> None:
    server, key, db = await anyio.to_thread.run_sync(start, disk, server_process)
    async with async_api(server, key) as client:
        job = (await client.post("/infra/jobs", json=PULL)).json()
        claim = {"queue": "q", "visibility_timeout": 2}
        assert len((await client.post("/infra/jobs/claim", json=claim)).json()) == 1
        with read_only(db):
            await wait_for_log(server, f"expire_lease('{job['id']}'")
        expired = await wait_for_job(client, job["id"], lambda j: j["status"] != "running")
        assert expired["status"] == "pending"
        assert expired["error"].startswith("lease_expired")


async def test_a_deadline_that_passed_while_storage_failed_is_applied_later(
    disk: Path, server_process: StartServer
) -> None:
    server, key, db = await anyio.to_thread.run_sync(start, disk, server_process)
    async with async_api(server, key) as client:
        blueprint = await create_blueprint(client, [pull_step("a", "dl")], max_duration_sec=2)
        execution_id = (await trigger(client, blueprint["id"]))["execution_id"]
        with read_only(db):
            await wait_for_log(server, f"deadline of {execution_id} not recorded")
        failed = await wait_status(client, execution_id, "failed", timeout=RECOVERY_SECONDS)
        assert failed["error"]["code"] == "timed_out"
