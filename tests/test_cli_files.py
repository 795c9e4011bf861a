"""One SQLite file, one server: the server's lock, private file modes, and ``keys create``
saying which file it wrote."""

import os
import stat
from collections.abc import Callable
from pathlib import Path

import httpx

from flowyard.storage.files import DatabaseInUse, create_private, lock_server
from tests.conftest import ServerProcess, free_port
from tests.test_cli import KEY_LINE, PULL_JOB, auth, create_key, flowyard


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_second_server_on_the_same_file_exits_1_at_once(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "one.db")
    first = server_process(db)
    second = flowyard("serve", "--db", db, "--port", str(free_port()))
    assert second.returncode == 1
    assert second.stderr == f"flowyard: database {db} is in use by another flowyard process\n"
    # The first one serves on, and once it has stopped the file is free again.
    assert httpx.get(f"{first.url}/readyz", timeout=10).status_code == 200
    assert first.terminate() == 0
    again = server_process(db)
    assert httpx.get(f"{again.url}/readyz", timeout=10).status_code == 200


def test_keys_commands_work_beside_a_running_server(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "shared.db")
    create_key(db, "acme")
    server = server_process(db)
    key = create_key(db, "acme")  # written while the server holds the file
    created = httpx.post(f"{server.url}/infra/jobs", json=PULL_JOB, headers=auth(key), timeout=10)
    assert created.status_code == 202, created.text
    listing = flowyard("keys", "list", "--db", db)
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 3  # the header and both keys


def test_database_files_are_created_private(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    served = str(tmp_path / "served.db")
    server = server_process(served)
    key = create_key(served, "acme")
    created = httpx.post(f"{server.url}/infra/jobs", json=PULL_JOB, headers=auth(key), timeout=10)
    assert created.status_code == 202, created.text
    for path in (served, served + "-wal", served + "-shm"):
        assert mode(path) == 0o600, path
    by_cli = str(tmp_path / "by-cli.db")
    create_key(by_cli, "acme")
    assert mode(by_cli) == 0o600


def test_keys_create_names_the_file_and_warns_when_it_is_new(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    done = flowyard("keys", "create", "--db", str(db), "--project", "acme")
    assert done.returncode == 0, done.stderr
    assert KEY_LINE.fullmatch(done.stdout.splitlines()[-1])
    warning, written = done.stderr.splitlines()
    assert warning.startswith(f"flowyard: warning: created a new database {db}")
    assert written.startswith("flowyard: key key_") and written.endswith(f" written to {db}")
    again = flowyard("keys", "create", "--db", str(db), "--project", "acme")
    assert again.returncode == 0, again.stderr
    [line] = again.stderr.splitlines()
    assert line.endswith(f" written to {db}")


def test_keys_create_in_a_missing_folder_fails_without_a_traceback(tmp_path: Path) -> None:
    done = flowyard("keys", "create", "--db", str(tmp_path / "no" / "x.db"), "--project", "a")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("flowyard: cannot use the database ")


def test_lock_server_refuses_a_second_holder(tmp_path: Path) -> None:
    db = str(tmp_path / "locked.db")
    fd = lock_server(db)
    assert fd is not None and mode(db) == 0o600
    try:
        try:
            lock_server(db)
        except DatabaseInUse as exc:
            assert exc.args == (db,)
        else:
            raise AssertionError("a second lock was granted")
    finally:
        os.close(fd)
    os.close(lock_server(db) or -1)
    assert lock_server(":memory:") is None and not create_private("file:x.db?mode=memory")
