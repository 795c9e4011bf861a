"""Schema migrations, applied in order and tracked with ``PRAGMA user_version``.

Each entry is one schema version; append new ones, never edit old ones.
"""

import sqlite3

MIGRATIONS: list[str] = [
    """
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        signing_secret TEXT NOT NULL,
        rate_limit_rps REAL,
        token_balance INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        admin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        project_id TEXT NOT NULL,
        status TEXT NOT NULL,
        trigger_type TEXT NOT NULL,
        queue TEXT,
        idempotency_key TEXT,
        doc BLOB NOT NULL
    );
    CREATE INDEX jobs_by_project ON jobs(project_id, seq);
    CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs(project_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_live ON jobs(status) WHERE status IN ('pending', 'running', 'scheduled');
    CREATE TABLE runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX runs_by_job ON runs(job_id, seq);
    CREATE TABLE queues (
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        doc BLOB NOT NULL,
        PRIMARY KEY (project_id, name)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    CREATE TABLE blueprints (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        project_id TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX blueprints_by_project ON blueprints(project_id, seq);
    CREATE TABLE executions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        project_id TEXT NOT NULL,
        blueprint_id TEXT NOT NULL,
        status TEXT NOT NULL,
        active INTEGER NOT NULL,
        idempotency_key TEXT,
        doc BLOB NOT NULL
    );
    CREATE INDEX executions_by_project ON executions(project_id, seq);
    CREATE INDEX executions_by_blueprint ON executions(blueprint_id, seq);
    CREATE UNIQUE INDEX executions_by_idempotency_key ON executions(blueprint_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX executions_live ON executions(active) WHERE active = 1;
    CREATE TABLE events (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        doc BLOB NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE usage (
        project_id TEXT NOT NULL,
        day INTEGER NOT NULL,
        family TEXT NOT NULL,
        calls INTEGER NOT NULL,
        nanos INTEGER NOT NULL,
        PRIMARY KEY (project_id, day, family)
    ) WITHOUT ROWID;
    """,
    """
    ALTER TABLE blueprints ADD COLUMN name TEXT;
    ALTER TABLE blueprints ADD COLUMN archived_at INTEGER;
    UPDATE blueprints SET name = json_extract(CAST(doc AS TEXT), '$.name');
    CREATE INDEX blueprints_by_name ON blueprints(project_id, name, seq);
    """,
    """
    CREATE TABLE webhooks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        project_id TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX webhooks_by_project ON webhooks(project_id, seq);
    CREATE TABLE webhook_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        project_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        webhook_id TEXT,
        project_id TEXT NOT NULL,
        status TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, seq);
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(status)
        WHERE status = 'pending';
    """,
    # An event lives in its deliveries (each holds the body it POSTs): one row per delivery
    # instead of two. Deliveries keep their seq without AUTOINCREMENT, which cost every insert
    # an update of sqlite_sequence.
    """
    DROP TABLE webhook_events;
    CREATE TABLE webhook_deliveries_6 (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        webhook_id TEXT,
        project_id TEXT NOT NULL,
        status TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    INSERT INTO webhook_deliveries_6 (seq, id, webhook_id, project_id, status, doc)
        SELECT seq, id, webhook_id, project_id, status, doc FROM webhook_deliveries;
    DROP TABLE webhook_deliveries;
    ALTER TABLE webhook_deliveries_6 RENAME TO webhook_deliveries;
    DELETE FROM sqlite_sequence WHERE name IN ('webhook_events', 'webhook_deliveries');
    CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, seq);
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(status)
        WHERE status = 'pending';
    """,
    # Version 7: the signals sent to executions (wait_for_signal steps).
    """
    CREATE TABLE signals (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        idempotency_key TEXT,
        data BLOB NOT NULL,
        consumed_by TEXT,
        buffered INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (execution_id, seq)
    );
    CREATE UNIQUE INDEX signals_by_idempotency_key ON signals(execution_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    """,
    # Version 8: the items of for_each steps, a row each (one item's transition writes one).
    """
    CREATE TABLE map_items (
        execution_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        doc BLOB NOT NULL,
        PRIMARY KEY (execution_id, step_id, idx)
    ) WITHOUT ROWID;
    """,
    # Version 9 (7 and 8 come from other changes; the merge puts this one after them):
    # workflow schedules, one row each, listed by project or by blueprint.
    """
    CREATE TABLE workflow_schedules (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        project_id TEXT NOT NULL,
        blueprint_id TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX workflow_schedules_by_project ON workflow_schedules(project_id, seq);
    CREATE INDEX workflow_schedules_by_blueprint ON workflow_schedules(blueprint_id, seq);
    """,
    # Version 10: an execution's parent (NULL for one a client triggered), to list a parent's
    # children by an index; the rows already there take it from their doc.
    """
    ALTER TABLE executions ADD COLUMN parent_id TEXT;
    UPDATE executions SET parent_id = json_extract(CAST(doc AS TEXT), '$.parent.execution_id');
    CREATE INDEX executions_by_parent ON executions(parent_id, seq) WHERE parent_id IS NOT NULL;
    """,
    # Version 11: the live jobs' index tells them apart with comparisons. SQLite evaluates an
    # index's WHERE for the old and the new row of every write; an IN list of three values or
    # more is built as a temporary b-tree each time, and inside the writer's triggers that
    # was three b-trees per job write.
    """
    DROP INDEX jobs_live;
    CREATE INDEX jobs_live ON jobs(status)
        WHERE status = 'pending' OR status = 'running' OR status = 'scheduled';
    """,
]


def pending_migrations(current_version: int) -> list[tuple[int, str]]:
    """The (version, script) pairs still to apply on a database at ``current_version``."""
    return [(index + 1, script) for index, script in enumerate(MIGRATIONS)][current_version:]


def migrate_sync(conn: sqlite3.Connection) -> None:
    """Bring a database opened with the standard library up to the latest schema."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in pending_migrations(version):
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
