"""Every live job and open run in memory, the queues' counts, and the commit that keeps
them and SQLite in step.

A transition is applied to memory at once (so that no other task can claim or deliver the
same job), written with the group-commit writer, and undone in memory if the write fails.
Terminal jobs leave memory; reads of ended jobs go to SQLite.

Every job change goes through :meth:`LiveJobs.commit`, so the job metrics move there once the
change is committed: a job that reached a final status, a run that started (its wait since
it was due, ``scheduled_at``) and a run that ended (its ``duration_ms``), all read from the
records, in the engine clock's milliseconds.

A push job also keeps, in memory only, the id of the request it comes from (the API request
that created it, or the one that triggered its execution: see :meth:`keep_request_id`); its
deliveries send it as ``X-Request-Id``. After a restart, or for a job a timer made, there is
none: each delivery sends a fresh one. It is forgotten when the job ends.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from flowyard.actors.queues import Queue
from flowyard.jobs.model import QUEUE_TRIGGERS, TERMINAL, Job, JobStatus, Run, RunStatus
from flowyard.metrics import Metrics
from flowyard.storage import jobs as store
from flowyard.storage.intents import Intent
from flowyard.storage.port import Store

replace = msgspec.structs.replace

Change = tuple[Job | None, Job]
"""A job before (None when new) and after a transition."""

Emit = Callable[[Sequence[Change], Sequence[Run]], tuple[list[Intent], list[Any]]]
"""The outbox rows (events, deliveries) of job changes, committed with them."""


class LiveJobs:
    """The live jobs by id, their open runs, and the queues by (project, name)."""

    def __init__(self, db: Store, metrics: Metrics) -> None:
        self.db = db
        self.metrics = metrics
        self.jobs: dict[str, Job] = {}
        self.runs: dict[str, Run] = {}
        self.queues: dict[tuple[str, str], Queue] = {}
        self.emit: Emit | None = None
        self.emitted: Callable[[list[Any]], None] | None = None
        self.on_ready: Callable[[Queue], None] | None = None  # each queue's (a cluster's)
        self.request_ids: dict[str, str] = {}
        """Live push jobs -> the id of the request they were created in, when known."""

    def keep_request_id(self, job: Job, request_id: str | None) -> None:
        """Remember the request a new push job comes from (before it is committed: a failed
        commit ends the job in memory, which forgets it)."""
        if request_id is not None and not job.is_pull:
            self.request_ids[job.id] = request_id

    def queue(self, project_id: str, name: str) -> Queue:
        """The queue named ``name`` in the project (created on first use)."""
        key = (project_id, name)
        found = self.queues.get(key)
        if found is None:
            found = self.queues[key] = Queue(project_id, name)
            found.on_ready = self.on_ready
        return found

    def project_queues(self, project_id: str) -> list[Queue]:
        """Every queue of the project that has settings or jobs, by name."""
        return sorted(
            (q for (pid, _), q in self.queues.items() if pid == project_id),
            key=lambda q: q.name,
        )

    def open_run(self, job: Job) -> Run | None:
        """The run of the job's attempt in flight, if any."""
        return self.runs.get(job.run_id) if job.run_id else None

    def index(self, old: Job | None, new: Job) -> None:
        """Apply a job change to memory: the live map and its queue's counts.

        A job that ends and is no longer in memory was applied already (an exchange marks
        its acked jobs ended before it commits them): nothing is left to do.
        """
        status = new.status
        ended = status in TERMINAL
        if ended:
            if self.jobs.pop(new.id, None) is None:
                return
            if self.request_ids:
                self.request_ids.pop(new.id, None)
        else:
            self.jobs[new.id] = new
        trigger = new.trigger
        queue = None
        if isinstance(trigger, QUEUE_TRIGGERS):
            queue = self.queues.get((new.project_id, trigger.queue))
            if queue is None:
                queue = self.queue(new.project_id, trigger.queue)
        if old is not None:
            # A job's trigger (so its queue) changes only with a PATCH.
            old_queue = queue if old.trigger is trigger else self._queue_of(old)
            if old_queue is not None:
                old_id = old.id
                old_queue.pending.pop(old_id, None)
                old_queue.running.discard(old_id)
                if status is not JobStatus.PENDING or not new.enabled:
                    old_queue.discard(old_id)
        if ended or queue is None:
            return
        if status is JobStatus.PENDING:
            queue.pending[new.id] = new.created_at
        elif status is JobStatus.RUNNING:
            queue.running.add(new.id)

    def _queue_of(self, job: Job) -> Queue | None:
        name = job.queue
        return self.queue(job.project_id, name) if name is not None else None

    async def commit(
        self, changes: Sequence[Change], runs: Iterable[Run] = (), extra: Sequence[Intent] = ()
    ) -> None:
        """Apply ``changes`` to memory, write them (with ``runs``), undo on failure."""
        index = self.index
        for old, new in changes:
            index(old, new)
        if not isinstance(runs, list):
            runs = list(runs)
        outbox, deliveries = self.emit(changes, runs) if self.emit is not None else ([], [])
        ops: list[Intent] = [store.put_job(new) for _, new in changes]
        open_runs = self.runs
        for run in runs:
            if run.status is RunStatus.RUNNING:
                open_runs[run.id] = run
            else:
                open_runs.pop(run.id, None)
            ops.append(store.put_run(run))
        if extra:
            ops += extra
        if outbox:
            ops += outbox
        try:
            await self.db.commit(ops)
        except BaseException:
            for old, new in reversed(changes):
                if old is None:
                    index(new, replace(new, status=JobStatus.CANCELLED))
                else:
                    index(new, old)
            raise
        # The job metrics, now that the change is committed (see the module's docstring).
        metrics = self.metrics
        for old, new in changes:
            status = new.status
            if status in TERMINAL and (old is None or old.status is not status):
                metrics.jobs_finished_by[status].inc()
        for run in runs:
            if run.status is RunStatus.RUNNING:
                # A start; the same run again (a handler's 202) has its answer's status.
                if run.handler_status is None and run.scheduled_at is not None:
                    metrics.job_wait.observe(max(0, run.started_at - run.scheduled_at) / 1000)
            elif run.duration_ms is not None:
                metrics.job_run.observe(run.duration_ms / 1000)
        if deliveries and self.emitted is not None:
            self.emitted(deliveries)
