"""Job, run and queue rows: the write intents and the reads."""

import msgspec

from flowyard.jobs.model import LIVE, Job, Run
from flowyard.storage.codec import decode_job, decode_run
from flowyard.storage.intents import PutJob, PutQueue, PutRun
from flowyard.storage.pages import Sharer, chunked, decode_cursor, newest_first, page
from flowyard.storage.port import Store


class QueueSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's stored settings."""

    concurrency: int | None = None
    rate_limit_per_second: float | None = None
    paused: bool = False
    handler: str | None = None  # where the queue's jobs without a handler of their own go


def put_job(job: Job) -> PutJob:
    """Insert or update a job row."""
    return PutJob(job)


def put_run(run: Run) -> PutRun:
    """Insert or update a run row."""
    return PutRun(run)


def put_queue(project_id: str, name: str, settings: QueueSettings) -> PutQueue:
    """Insert or update a queue's settings."""
    return PutQueue(project_id, name, settings)


async def get_job(db: Store, project_id: str, job_id: str) -> Job | None:
    """A job of the project, or None."""
    row = await db.fetchone(
        "SELECT doc FROM jobs WHERE id = ? AND project_id = ?", (job_id, project_id)
    )
    return decode_job(row[0]) if row else None


async def find_by_idempotency_key(db: Store, project_id: str, key: str) -> Job | None:
    """The job created earlier with this idempotency key, or None."""
    row = await db.fetchone(
        "SELECT doc FROM jobs WHERE project_id = ? AND idempotency_key = ?", (project_id, key)
    )
    return decode_job(row[0]) if row else None


async def list_jobs(
    db: Store,
    *,
    project_id: str | None,
    status: str | None = None,
    trigger_type: str | None = None,
    queue: str | None = None,
    cursor: str | None = None,
    limit: int = 25,
) -> tuple[list[Job], str | None]:
    """A page of jobs, newest first, and the cursor of the next page."""
    filters = {
        "project_id": project_id,
        "status": status,
        "trigger_type": trigger_type,
        "queue": queue,
    }
    sql, params = newest_first(db.cursor_key, "jobs", filters, cursor, limit)
    rows = await db.fetchall(sql, params)
    return page(db.cursor_key, "jobs", rows, limit, decode_job)


async def list_runs(
    db: Store, job_id: str, *, cursor: str | None = None, limit: int = 25
) -> tuple[list[Run], str | None]:
    """A page of a job's runs, newest first."""
    scope = f"runs:{job_id}"
    before = decode_cursor(db.cursor_key, scope, cursor)
    rows = await db.fetchall(
        "SELECT seq, doc FROM runs WHERE job_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        (job_id, before if before is not None else 2**62, limit + 1),
    )
    return page(db.cursor_key, scope, rows, limit, decode_run)


async def live_jobs(db: Store) -> list[Job]:
    """Every pending, running or scheduled job (for rehydration).

    Read in chunks, with the values many jobs repeat shared, to keep memory low.
    """
    marks = ", ".join("?" for _ in LIVE)
    sql = f"SELECT seq, doc FROM jobs WHERE status IN ({marks}) AND seq > ? ORDER BY seq LIMIT ?"
    jobs: list[Job] = []
    share = Sharer()
    async for doc in chunked(db, sql, [s.value for s in LIVE]):
        job = decode_job(doc)
        ref = job.workflow
        jobs.append(
            msgspec.structs.replace(
                job,
                project_id=share(job.project_id),
                trigger=share(job.trigger),
                workflow=(
                    msgspec.structs.replace(ref, step_id=share(ref.step_id)) if ref else None
                ),
            )
        )
    return jobs


async def get_runs(db: Store, run_ids: list[str]) -> list[Run]:
    """The runs with these ids."""
    runs: list[Run] = []
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = await db.fetchall(f"SELECT doc FROM runs WHERE id IN ({marks})", chunk)
        runs += [decode_run(doc) for (doc,) in rows]
    return runs


async def all_queue_settings(db: Store) -> list[tuple[str, str, QueueSettings]]:
    """Every stored queue: (project_id, name, settings)."""
    rows = await db.fetchall("SELECT project_id, name, doc FROM queues")
    return [(pid, name, msgspec.json.decode(doc, type=QueueSettings)) for pid, name, doc in rows]
