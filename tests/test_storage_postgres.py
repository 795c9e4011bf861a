"""The PostgreSQL store against the same reads as the SQLite one, on a real throwaway cluster.

Most tests run on both stores (``store`` is parametrized), so that both are held to one
behaviour; the PostgreSQL ones are skipped, saying why, where PostgreSQL is not installed.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_args

import anyio
import msgspec
import pytest
from bench import postgres

from flowyard.errors import MailboxFull, Unavailable
from flowyard.jobs.model import Job, JobStatus, PullQueue, Run, WorkflowRef
from flowyard.storage import (
    accounts,
    commits,
    jobs,
    projects,
    schedules,
    stats,
    store_keys,
    webhooks,
    workflows,
)
from flowyard.storage import postgres as pg_store
from flowyard.storage.intents import Intent, PutBlueprint, PutJob
from flowyard.storage.port import Store
from flowyard.storage.postgres import PostgresDatabase, to_dollar
from flowyard.storage.postgres_schema import MIGRATIONS, migrate
from flowyard.storage.postgres_statements import _STATEMENTS, all_statements, plan
from flowyard.storage.sqlite import Database
from flowyard.webhooks.model import Delivery, DeliveryStatus, Webhook
from flowyard.workflows.schedules import Schedule
from flowyard.workflows.state import Event, ExecutionState, ExecutionStatus

asyncpg = pytest.importorskip("asyncpg")

NewStore = Callable[[], Store]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One throwaway cluster for the module; each test makes a database of its own."""
    try:
        postgres.find_binaries()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with postgres.postgres_cluster() as url:
        yield url


@pytest.fixture
def pg_url(cluster: str) -> str:
    return postgres.create_database(cluster)


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> NewStore:
    """Makes a store on one database (a SQLite file, or a fresh PostgreSQL database)."""
    if request.param == "sqlite":
        path = str(tmp_path / "s.db")
        return lambda: Database(path)
    url = request.getfixturevalue("pg_url")
    return lambda: PostgresDatabase(url)


@asynccontextmanager
async def running(store: Store) -> AsyncIterator[Any]:
    """``store`` open with its writer running; closed after."""
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run_writer)
            try:
                yield store
            finally:
                store.close_writer()
    finally:
        await store.close()


def job(project_id: str, n: int, **changes: Any) -> Job:
    return Job(
        id=f"job_{n}",
        project_id=project_id,
        trigger=PullQueue(queue="q"),
        payload=msgspec.Raw(b'{"n":%d}' % n),
        created_at=n,
        **changes,
    )


def test_every_intent_has_postgres_statements() -> None:
    assert set(get_args(Intent)) == set(_STATEMENTS)


def test_the_upserts_of_a_transition_are_one_statement_ahead_of_the_rest() -> None:
    first = job("p", 1)
    later = msgspec.structs.replace(first, attempt=2)
    events = [Event(type="a", at=1), Event(type="b", at=2)]
    intents: list[Intent] = [
        PutJob(first),
        accounts.spend("p", 1),
        workflows.put_events("exe_1", 1, events),
        PutJob(job("p", 2)),
        accounts.spend("p", 2),
        PutJob(later),
        workflows.put_events("exe_1", 2, events[1:]),  # the same row again
    ]
    (combined, [arrays]), *rest = plan(all_statements(intents))
    assert combined.startswith("WITH w0 AS (INSERT INTO jobs") and combined.count("unnest") == 2
    ids, *_, docs = arrays[:7]
    assert ids == ["job_1", "job_2"] and msgspec.json.decode(docs[0], type=Job) == later
    assert arrays[7:9] == [["exe_1", "exe_1"], [1, 2]]
    assert [(sql.split()[0], len(rows)) for sql, rows in rest] == [("UPDATE", 2)]


def test_parameters_outside_string_literals_are_numbered() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c = '?' AND d IN (?, ?)"
    assert to_dollar(sql) == "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $3)"


async def test_every_intent_is_read_back_through_the_service_reads(new_store: NewStore) -> None:
    async with running(new_store()) as db:
        with anyio.fail_after(30):
            await _accounts_and_keys(db)
            await _jobs_runs_and_queues(db)
            await _blueprints_executions_and_events(db)
            await _webhooks_and_deliveries(db)
            await _workflow_schedules(db)


async def _accounts_and_keys(db: Store) -> None:
    project, insert = projects.new_project("acme")
    _, again = projects.new_project("acme")  # the name is taken: nothing
    other, other_insert = projects.new_project("other")
    created, put_key = projects.new_key(project.id, ["jobs:read"], name="k1")
    admin, put_admin = projects.new_key(project.id, list(projects.ALL_SCOPES), admin=True)
    await db.commit([insert, again, other_insert, put_key, put_admin])
    await db.commit(
        [
            projects.touch_key(created.record.id, 50),
            projects.touch_key(created.record.id, 40),  # never backwards
            projects.revoke_key(admin.record.id, 60),
            projects.revoke_key(admin.record.id, 70),  # keeps its first revoked_at
            projects.set_signing_secret(project.id, "whsec_new"),
            accounts.set_balance(project.id, 1_000),
            accounts.spend(project.id, 300),
            accounts.spend(project.id, 5_000),  # never below zero
            accounts.set_rate(other.id, 2.5),
            accounts.add_usage(project.id, 3, "jobs", 1, 10),
            accounts.add_usage(project.id, 3, "jobs", 2, 20),
            accounts.add_usage(project.id, 3, "admin", 1, 0),
            accounts.add_usage(project.id, 2, "jobs", 1, 5),
        ]
    )
    assert await projects.get_project(db, project.id) == msgspec.structs.replace(
        project, token_balance=0
    )
    page, cursor = await projects.list_projects(db, cursor=None, limit=1)
    assert [p.name for p in page] == ["other"] and cursor is not None
    page, cursor = await projects.list_projects(db, cursor=cursor, limit=1)
    assert [p.name for p in page] == ["acme"] and cursor is None
    found = await projects.key_by_hash(db, projects.hash_key(created.key))
    assert found is not None
    key_hash, record = found
    assert key_hash == projects.hash_key(created.key)
    assert record == msgspec.structs.replace(created.record, last_used_at=50)
    revoked = await projects.get_key(db, admin.record.id)
    assert revoked is not None and revoked.revoked_at == 60 and revoked.admin is True
    keys, _ = await projects.list_keys(db, project_id=project.id, cursor=None, limit=10)
    assert [k.id for k in keys] == [admin.record.id, created.record.id]
    assert await projects.signing_secret(db, project.id) == "whsec_new"
    secret = await projects.server_secret(db)
    assert await projects.server_secret(db) == secret
    assert await accounts.project_settings(db, project.id) == (0, None)
    assert sorted(await accounts.all_settings(db)) == sorted(
        [(project.id, 0, None), (other.id, None, 2.5)]
    )
    assert await accounts.usage(db, project.id) == [
        (2, "jobs", 1, 5),
        (3, "admin", 1, 0),
        (3, "jobs", 3, 30),
    ]
    assert await stats.project_ids(db) == [other.id, project.id]
    assert await stats.project_ids(db, project.id) == [project.id]


async def _jobs_runs_and_queues(db: Store) -> None:
    first, second = job("proj_j", 1, idempotency_key="k"), job("proj_j", 2)
    ref = WorkflowRef(execution_id="exe_1", step_id="s")
    third = job("proj_j", 3, workflow=ref, status=JobStatus.RUNNING)
    run = Run(id="run_1", job_id=first.id, attempt=1, scheduled_at=None, started_at=5)
    settings = jobs.QueueSettings(concurrency=2, paused=True)
    await db.commit([jobs.put_job(first), jobs.put_job(second), jobs.put_job(third)])
    done = msgspec.structs.replace(second, status=JobStatus.COMPLETED)
    await db.commit(
        [jobs.put_job(done), jobs.put_run(run), jobs.put_queue("proj_j", "q", settings)]
    )
    ended = msgspec.structs.replace(run, completed_at=9)
    await db.commit([jobs.put_run(ended)])
    assert await jobs.get_job(db, "proj_j", first.id) == first
    assert await jobs.get_job(db, "proj_other", first.id) is None
    assert await jobs.find_by_idempotency_key(db, "proj_j", "k") == first
    page, cursor = await jobs.list_jobs(db, project_id="proj_j", limit=2)
    assert page == [third, done] and cursor is not None
    page, cursor = await jobs.list_jobs(db, project_id="proj_j", cursor=cursor, limit=2)
    assert page == [first] and cursor is None
    page, _ = await jobs.list_jobs(db, project_id="proj_j", status="completed")
    assert page == [done]
    assert sorted(j.id for j in await jobs.live_jobs(db)) == [first.id, third.id]
    assert await jobs.list_runs(db, first.id) == ([ended], None)
    assert await jobs.get_runs(db, ["run_1", "run_none"]) == [ended]
    assert await jobs.all_queue_settings(db) == [("proj_j", "q", settings)]
    counts = await stats.status_counts(db, "jobs", "proj_j")
    assert counts == {"proj_j": {"pending": 1, "completed": 1, "running": 1}}


async def _blueprints_executions_and_events(db: Store) -> None:
    blueprint = workflows.Blueprint(id="wf_1", project_id="proj_w", name="flow", steps=[])
    older = workflows.Blueprint(id="wf_0", project_id="proj_w", name="flow", steps=[])
    await db.commit([workflows.put_blueprint(older), workflows.put_blueprint(blueprint)])
    archived = msgspec.structs.replace(older, archived_at=7)
    await db.commit([workflows.archive_blueprint(archived)])
    running_state = ExecutionState(
        id="exe_1", project_id="proj_w", blueprint_id="wf_1", idempotency_key="e"
    )
    done_state = ExecutionState(
        id="exe_2", project_id="proj_w", blueprint_id="wf_1", status=ExecutionStatus.COMPLETED
    )
    events = [Event(type="execution.started", at=1), Event(type="step.queued", at=2, step_id="s")]
    await db.commit(
        [
            workflows.put_execution(running_state),
            workflows.put_execution(done_state),
            workflows.put_events("exe_1", 1, events),
        ]
    )
    later = Event(type="step.completed", at=3, step_id="s", data={"ok": True})
    await db.commit([workflows.put_events("exe_1", 3, [later])])
    assert await workflows.get_blueprint_by_id(db, "wf_0") == archived
    live, _ = await workflows.list_blueprints(db, "proj_w", cursor=None, limit=10)
    assert live == [blueprint]
    both, _ = await workflows.list_blueprints(
        db, "proj_w", name="flow", archived=True, cursor=None, limit=10
    )
    assert both == [blueprint, archived]
    assert await workflows.get_execution(db, "exe_1") == running_state
    assert await workflows.get_execution(db, "exe_1", "proj_other") is None
    assert await workflows.find_execution_by_key(db, "wf_1", "e") == running_state
    page, cursor = await workflows.list_executions(db, project_id="proj_w", limit=1)
    assert page == [done_state] and cursor is not None
    page, _ = await workflows.list_executions(db, project_id=None, status="running")
    assert page == [running_state]
    assert await workflows.active_executions(db) == [running_state]
    items, cursor = await workflows.list_events(db, "exe_1", cursor=None, limit=2)
    assert items == [(1, events[0]), (2, events[1])] and cursor is not None
    assert await workflows.list_events(db, "exe_1", cursor=cursor, limit=2) == ([(3, later)], None)
    counts = await stats.status_counts(db, "executions")
    assert counts["proj_w"] == {"running": 1, "completed": 1}


async def _webhooks_and_deliveries(db: Store) -> None:
    hook = Webhook(
        id="wh_1",
        project_id="proj_h",
        name="h",
        url="http://127.0.0.1:9/x",
        topics=("job.completed",),
        secret="s",
        created_at=1,
        updated_at=1,
    )
    deliveries = [
        Delivery(
            id=f"dlv_{n}",
            webhook_id="wh_1",
            project_id="proj_h",
            event_id=f"evt_{n}",
            topic="job.completed",
            payload=msgspec.Raw(b'{"n":%d}' % n),
            created_at=n,
            updated_at=n,
        )
        for n in range(3)
    ]
    await db.commit(
        [webhooks.put_webhook(hook), *(webhooks.insert_delivery(d) for d in deliveries)]
    )
    renamed = msgspec.structs.replace(hook, name="renamed", updated_at=2)
    delivered = msgspec.structs.replace(deliveries[0], status=DeliveryStatus.SUCCEEDED)
    await db.commit([webhooks.put_webhook(renamed), webhooks.update_delivery(delivered)])
    assert await webhooks.get_webhook(db, "proj_h", "wh_1") == renamed
    assert await webhooks.list_webhooks(db, "proj_h", cursor=None, limit=5) == ([renamed], None)
    assert await webhooks.all_webhooks(db) == [renamed]
    assert await webhooks.get_delivery(db, "wh_1", "dlv_0") == delivered
    page, cursor = await webhooks.list_deliveries(
        db, "wh_1", status="pending", cursor=None, limit=1
    )
    assert page == [deliveries[2]] and cursor is not None
    assert await webhooks.pending_deliveries(db) == deliveries[1:]
    await db.commit([webhooks.delete_webhook("wh_1"), webhooks.update_delivery(deliveries[1])])
    assert await webhooks.get_webhook(db, "proj_h", "wh_1") is None
    assert await webhooks.pending_deliveries(db) == []  # dropped, and the update inserts nothing
    assert await webhooks.get_delivery(db, "wh_1", "dlv_0") == delivered


async def _workflow_schedules(db: Store) -> None:
    made = [
        Schedule(
            id=f"wfsch_{n}",
            project_id="proj_s",
            blueprint_id=f"wf_{n % 2}",
            schedule="* * * * *",
            input_data={"n": n},
            next_fire_at=60_000,
            created_at=n,
            updated_at=n,
        )
        for n in range(3)
    ]
    await db.commit([schedules.put_schedule(s) for s in made])
    fired = msgspec.structs.replace(made[0], last_fire_at=60_000, last_execution_id="exe_1")
    await db.commit([schedules.put_schedule(fired), schedules.delete_schedule("wfsch_2")])
    assert await schedules.get_schedule(db, "proj_s", "wfsch_0") == fired
    assert await schedules.get_schedule(db, "proj_other", "wfsch_0") is None
    assert await schedules.get_schedule(db, "proj_s", "wfsch_2") is None
    page, cursor = await schedules.list_schedules(
        db, "proj_s", blueprint_id=None, cursor=None, limit=1
    )
    assert page == [made[1]] and cursor is not None
    page, cursor = await schedules.list_schedules(
        db, "proj_s", blueprint_id=None, cursor=cursor, limit=1
    )
    assert page == [fired] and cursor is None
    only, _ = await schedules.list_schedules(
        db, "proj_s", blueprint_id="wf_0", cursor=None, limit=5
    )
    assert only == [fired]
    assert await schedules.all_schedules(db) == [fired, made[1]]


async def test_writes_of_one_row_in_one_group_commit_apply_in_order(new_store: NewStore) -> None:
    async with running(new_store()) as db:
        with anyio.fail_after(30):
            project, insert = projects.new_project("p")
            await db.commit([insert])
            first = job(project.id, 1)
            # Submitted together, so that they share one transaction.
            second = job(project.id, 2)
            requests = [
                db.submit([jobs.put_job(first)]),
                db.submit([jobs.put_job(second)]),
                db.submit([jobs.put_job(msgspec.structs.replace(first, attempt=1))]),
                db.submit([accounts.set_balance(project.id, 100), accounts.spend(project.id, 30)]),
                db.submit([accounts.spend(project.id, 20)]),
                db.submit([jobs.put_job(msgspec.structs.replace(first, attempt=2))]),
            ]
            for request in requests:
                await request.done
                assert request.error is None
            page, _ = await jobs.list_jobs(db, project_id=project.id)
            # The row keeps the place of its first write and the values of its last.
            assert page == [second, msgspec.structs.replace(first, attempt=2)]
            assert await accounts.project_settings(db, project.id) == (50, None)


async def test_one_bad_write_does_not_fail_its_neighbours(new_store: NewStore) -> None:
    blueprint = workflows.Blueprint(id="wf_1", project_id="p", name="b", steps=[])
    async with running(new_store()) as db:
        with anyio.fail_after(30):
            await db.commit([PutBlueprint(blueprint)])
            outcomes: dict[int, BaseException | None] = {}

            async def write(n: int, intents: list[Intent]) -> None:
                try:
                    await db.commit(intents)
                    outcomes[n] = None
                except Unavailable as exc:
                    outcomes[n] = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(write, 1, [PutJob(job("p", 1, idempotency_key="k"))])
                tg.start_soon(write, 2, [PutJob(job("p", 2)), PutBlueprint(blueprint)])  # again
                tg.start_soon(write, 3, [PutJob(job("p", 3))])
                tg.start_soon(write, 4, [PutJob(job("p", 4, idempotency_key="k"))])  # taken
            assert outcomes[1] is None and outcomes[3] is None
            assert isinstance(outcomes[2], Unavailable) and isinstance(outcomes[4], Unavailable)
            page, _ = await jobs.list_jobs(db, project_id="p")
            assert [j.id for j in page] == ["job_3", "job_1"]  # nothing of the bad ones
            assert db.failure is None  # one bad write, not a failing database
            db.check_writable()


async def test_too_many_waiting_writes_are_refused(
    new_store: NewStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commits, "MAX_WAITING", 2)
    async with running(new_store()) as db:
        with anyio.fail_after(30):
            # No await between them: the writer cannot take any meanwhile.
            taken = [db.submit([PutJob(job("p", n))]) for n in (1, 2)]
            with pytest.raises(MailboxFull):
                db.submit([PutJob(job("p", 3))])
            for request in taken:
                await request.done
                assert request.error is None
            await db.commit([PutJob(job("p", 4))])  # room again
            db.close_writer()
            with pytest.raises(Unavailable):
                await db.commit([PutJob(job("p", 5))])
            page, _ = await jobs.list_jobs(db, project_id="p")
            assert [j.id for j in page] == ["job_4", "job_2", "job_1"]


async def test_the_cursor_key_and_the_rows_survive_a_reopen(new_store: NewStore) -> None:
    with anyio.fail_after(30):
        async with running(new_store()) as db:
            key = db.cursor_key
            await db.commit([PutJob(job("p", 1))])
        async with running(new_store()) as db:  # migrations again: nothing to do
            assert db.cursor_key == key
            assert await jobs.get_job(db, "p", "job_1") == job("p", 1)


async def test_migrations_are_idempotent(pg_url: str) -> None:
    with anyio.fail_after(30):
        conn = await asyncpg.connect(pg_url)
        try:
            assert await migrate(conn) == len(MIGRATIONS)
            await conn.execute("INSERT INTO meta (key, value) VALUES ('kept', 'yes')")
            assert await migrate(conn) == len(MIGRATIONS)
            rows = await conn.fetch("SELECT key, value FROM meta ORDER BY key")
        finally:
            await conn.close()
    latest = str(len(MIGRATIONS))
    assert [tuple(row) for row in rows] == [("kept", "yes"), ("schema_version", latest)]


async def test_concurrent_commits_share_transactions_and_are_all_kept(pg_url: str) -> None:
    async with running(PostgresDatabase(pg_url)) as db:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(200):
                    tg.start_soon(db.commit, [PutJob(job("p", n))])
            # Rows written by one transaction share its id (xmin).
            row = await db.fetchone("SELECT COUNT(*), COUNT(DISTINCT xmin::text) FROM jobs")
    assert row is not None
    count, transactions = row
    assert count == 200 and transactions < 50
    async with running(PostgresDatabase(pg_url)) as db:
        page, _ = await jobs.list_jobs(db, project_id="p", limit=500)
    assert len(page) == 200


async def terminate_writer(db: PostgresDatabase) -> None:
    """End the writer's server session, if it has one, and wait until the server has let it
    go (``pg_terminate_backend`` only signals it)."""
    if db._conn is None or db._conn.is_closed():
        return
    pid = db._conn.get_server_pid()
    await db.fetchone("SELECT pg_terminate_backend(?)", (pid,))
    while await db.fetchone("SELECT 1 FROM pg_stat_activity WHERE pid = ?", (pid,)):
        await anyio.sleep(0.01)


async def test_a_lost_writer_connection_loses_no_write_and_the_writer_reconnects(
    pg_url: str,
) -> None:
    async with running(PostgresDatabase(pg_url)) as db:
        with anyio.fail_after(30):
            await db.commit([PutJob(job("p", 1))])
            await terminate_writer(db)
            try:  # the loss noticed before the write: a new connection; during it: 503
                await db.commit([PutJob(job("p", 2))])
                kept = ["job_3", "job_2", "job_1"]
            except Unavailable:
                kept = ["job_3", "job_1"]
            await db.commit([PutJob(job("p", 3))])
            assert db.failure is None
            db.check_writable()
            page, _ = await jobs.list_jobs(db, project_id="p")
            assert [j.id for j in page] == kept


async def test_while_failing_the_writer_probes_until_the_database_takes_writes(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that refuses writes (here: read-only for new sessions) fails every write
    with 503 until the probe finds it writable again; then writes go through."""
    monkeypatch.setattr(pg_store, "RETRY_SECONDS", 0.05)
    name = pg_url.rsplit("/", 1)[1]
    async with running(PostgresDatabase(pg_url)) as db:
        with anyio.fail_after(30):
            await db.commit([PutJob(job("p", 1))])
            await db.fetchone(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
            await terminate_writer(db)
            while db.failure is None:  # the next session is read-only: the write fails
                with pytest.raises(Unavailable):
                    await db.commit([PutJob(job("p", 2))])
            with pytest.raises(Unavailable):
                db.check_writable()
            await db.fetchone(f"ALTER DATABASE {name} SET default_transaction_read_only = off")
            await terminate_writer(db)
            while db.failure is not None:  # no write of ours: only the probe can clear it
                await anyio.sleep(0.01)
            probed = await db.fetchone("SELECT value FROM meta WHERE key = 'writable_at'")
            assert probed is not None and int(probed[0]) > 0
            await db.commit([PutJob(job("p", 3))])
            page, _ = await jobs.list_jobs(db, project_id="p")
            assert [j.id for j in page] == ["job_3", "job_1"]


async def test_a_cancelled_writer_still_writes_what_was_queued(new_store: NewStore) -> None:
    db = new_store()
    await db.open()
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(db.run_writer)
                requests = [db.submit([PutJob(job("p", n))]) for n in range(5)]
                tg.cancel_scope.cancel()
            for request in requests:
                await request.done
                assert request.error is None
            page, _ = await jobs.list_jobs(db, project_id="p")
            assert len(page) == 5
    finally:
        await db.close()


async def test_keys_commands_work_through_the_postgres_store(pg_url: str) -> None:
    async def work(store: Store) -> None:
        first = await store_keys.create_key(store, "shop", ["jobs:read"])
        second = await store_keys.create_key(store, "shop", list(projects.ALL_SCOPES), admin=True)
        keys = await store_keys.list_keys(store, None)
        assert [(key.id, name) for key, name in keys] == [
            (second.record.id, "shop"),
            (first.record.id, "shop"),
        ]
        key, project, already = await store_keys.revoke(store, first.record.id)
        assert (project, already) == ("shop", False) and key.revoked_at is not None
        assert (await store_keys.revoke(store, first.record.id))[2] is True
        with pytest.raises(LookupError):
            await store_keys.list_keys(store, "nobody")

    with anyio.fail_after(30):
        await store_keys.with_store(PostgresDatabase(pg_url), work)
