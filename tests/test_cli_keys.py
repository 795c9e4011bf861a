"""``flowyard keys list`` and ``flowyard keys revoke``: straight on the SQLite file."""

import json
import re
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import httpx

from tests.conftest import ServerProcess
from tests.test_cli import PULL_JOB, auth, create_key, flowyard

KEY_ID = re.compile(r"key_[0-9A-HJKMNP-TV-Z]{26}")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
COLUMNS = ["id", "project", "name", "scopes", "admin", "created_at", "last_used_at", "revoked_at"]


def listed(db: str, *extra: str) -> list[dict[str, object]]:
    done = flowyard("keys", "list", "--db", db, "--json", *extra)
    assert done.returncode == 0, done.stderr
    records: list[dict[str, object]] = json.loads(done.stdout)
    return records


def key_ids(db: str) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM api_keys ORDER BY rowid DESC")]


def test_keys_list_prints_a_table_newest_first(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    secret = create_key(db, "acme")
    create_key(db, "globex", "--scope", "jobs:read", "--scope", "*", "--admin", "--name", "ops")
    done = flowyard("keys", "list", "--db", db)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == COLUMNS
    assert len(rows) == 2
    newest, oldest = (row.split() for row in rows)
    ids = key_ids(db)
    assert newest == [ids[0], "globex", "ops", "jobs:read,*", "yes", newest[5], "-", "-"]
    assert oldest[:5] == [
        ids[1],
        "acme",
        "acme",
        "jobs:read,jobs:write,workflows:read,workflows:write,webhooks:read,webhooks:write",
        "no",
    ]
    assert TIMESTAMP.match(oldest[5]) and oldest[6:] == ["-", "-"]
    assert secret not in done.stdout  # never the secret


def test_keys_list_json_and_project_filter(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    create_key(db, "acme")
    create_key(db, "acme", "--scope", "workflows:read")
    create_key(db, "globex")
    everything = listed(db)
    assert [record["project"] for record in everything] == ["globex", "acme", "acme"]
    assert set(everything[0]) == {"project_id", *COLUMNS}
    acme = listed(db, "--project", "acme")
    assert acme == everything[1:]
    assert acme[0]["scopes"] == ["workflows:read"]
    assert acme[0]["admin"] is False and acme[0]["revoked_at"] is None
    unknown = flowyard("keys", "list", "--db", db, "--project", "nope")
    assert unknown.returncode == 1
    assert "nope" in unknown.stderr and unknown.stdout == ""


def test_keys_list_and_revoke_need_an_existing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.db")
    for args in (["list"], ["revoke", "key_x"]):
        done = flowyard("keys", *args, "--db", missing)
        assert done.returncode == 1
        assert "no database" in done.stderr
    assert not Path(missing).exists()


def test_keys_revoke_prints_the_record_and_is_idempotent(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    create_key(db, "acme")
    create_key(db, "acme")
    [keep, revoke] = key_ids(db)[::-1]
    before = time.time()
    done = flowyard("keys", "revoke", "--db", db, revoke)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == COLUMNS
    assert row.split()[0] == revoke and TIMESTAMP.match(row.split()[-1])
    [record] = [r for r in listed(db) if r["id"] == revoke]
    assert isinstance(record["revoked_at"], str) and TIMESTAMP.match(record["revoked_at"])
    with closing(sqlite3.connect(db)) as conn:
        stored = dict(conn.execute("SELECT id, revoked_at FROM api_keys").fetchall())
    assert stored[keep] is None
    assert before * 1000 - 5 <= stored[revoke] <= time.time() * 1000 + 5
    # Again: nothing changes, the same record, a note on stderr.
    again = flowyard("keys", "revoke", "--db", db, revoke, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == record
    assert "already revoked" in again.stderr
    with closing(sqlite3.connect(db)) as conn:
        assert dict(conn.execute("SELECT id, revoked_at FROM api_keys").fetchall()) == stored


def test_keys_revoke_unknown_id(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    create_key(db, "acme")
    done = flowyard("keys", "revoke", "--db", db, "key_01JZZZZZZZZZZZZZZZZZZZZZZZ")
    assert done.returncode == 1
    assert "key_01JZZZZZZZZZZZZZZZZZZZZZZZ" in done.stderr and done.stdout == ""
    assert [r["revoked_at"] for r in listed(db)] == [None]
    usage = flowyard("keys", "revoke", "--db", db)
    assert usage.returncode == 2 and "KEY_ID" in usage.stderr


def test_keys_create_refuses_an_unknown_scope(tmp_path: Path) -> None:
    done = flowyard(
        "keys", "create", "--db", str(tmp_path / "k.db"), "--project", "p", "--scope", "jobs:admin"
    )
    assert done.returncode == 2
    assert "jobs:admin" in done.stderr


def test_a_running_server_refuses_a_key_revoked_by_the_cli_within_a_second(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "live.db")
    key = create_key(db, "acme")
    other = create_key(db, "acme")
    [_, key_id] = key_ids(db)  # newest first: ``other``, then ``key``
    server = server_process(db)
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=10) as client:
        assert client.post("/infra/jobs", json=PULL_JOB).status_code == 202  # cached as valid
        # The server wrote the first use behind; the CLI sees it while the server runs.
        deadline = time.monotonic() + 5
        while next(r for r in listed(db) if r["id"] == key_id)["last_used_at"] is None:
            assert time.monotonic() < deadline, "last_used_at never written"
            time.sleep(0.05)
        done = flowyard("keys", "revoke", "--db", db, key_id)
        assert done.returncode == 0, done.stderr
        revoked_at = time.monotonic()
        while True:
            answer = client.get("/infra/jobs")
            if answer.status_code == 401:
                break
            assert answer.status_code == 200, answer.text
            assert time.monotonic() - revoked_at < 1.5, "still accepted after the cache TTL"
            time.sleep(0.02)
        assert answer.json()["code"] == "unauthorized"
    other_answer = httpx.get(f"{server.url}/infra/jobs", headers=auth(other), timeout=10)
    assert other_answer.status_code == 200
