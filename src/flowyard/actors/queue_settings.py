"""A queue's settings (limits, pause, default handler): changed, and taking effect.

A change is committed, then applied to the queue in memory: a new default handler starts
delivering the push jobs that waited for one, an unpaused queue wakes its claims and
deliveries. On a cluster node the others are told (``changed``) and read every queue's
settings again (:meth:`QueueSettingsOf.reload`).
"""

from typing import TYPE_CHECKING

import msgspec

from flowyard.actors.queues import Queue
from flowyard.billing import JOB_WRITE
from flowyard.jobs.model import Job, PushQueue
from flowyard.storage import jobs as store
from flowyard.storage.jobs import QueueSettings

if TYPE_CHECKING:
    from flowyard.actors.jobs import JobEngine


class QueueSettingsOf:
    """The settings of the engine's queues."""

    def __init__(self, engine: "JobEngine") -> None:
        self.engine = engine

    async def set(
        self,
        project_id: str,
        name: str,
        *,
        concurrency: int | None | msgspec.UnsetType,
        rate_limit_per_second: float | None | msgspec.UnsetType,
        paused: bool | msgspec.UnsetType,
        handler: str | None | msgspec.UnsetType = msgspec.UNSET,
    ) -> Queue:
        """Change a queue's limits, pause it or set its default handler; unset fields keep
        their value. A new handler starts delivering the jobs that waited for one."""
        engine = self.engine
        queue = engine.queue(project_id, name)
        updated = msgspec.structs.replace(
            queue.settings,
            **{
                field: value
                for field, value in (
                    ("concurrency", concurrency),
                    ("rate_limit_per_second", rate_limit_per_second),
                    ("paused", paused),
                    ("handler", handler),
                )
                if value is not msgspec.UNSET
            },
        )
        # Billed to the family of the route it answers (``PUT /infra/queues/{name}``).
        with engine.accounts.paying(project_id, JOB_WRITE, "infra/queues"):
            await engine.db.commit([store.put_queue(project_id, name, updated)])
        self.apply(queue, updated)
        if engine.changed is not None:
            engine.changed(f"queue {project_id} {name}")
        return queue

    async def reload(self) -> None:
        """Another node of the cluster changed a queue's settings: take them all again."""
        engine = self.engine
        for project_id, name, settings in await store.all_queue_settings(engine.db):
            queue = engine.queue(project_id, name)
            if queue.settings != settings:
                self.apply(queue, settings)

    def apply(self, queue: Queue, updated: QueueSettings) -> None:
        """Committed settings of a queue take effect."""
        engine = self.engine
        current = queue.settings
        queue.settings = updated
        if updated.handler is not None and current.handler is None:
            # Jobs without a handler of their own were passed over while there was none.
            for job_id in list(queue.pending):
                job = engine.jobs.get(job_id)
                if job is not None and _waits_for_handler(job) and engine.is_ready(job_id):
                    engine.scheduler.make_ready(job)
        if not updated.paused:
            if current.paused:
                queue.announce_again()
            queue.wake_all()
            if queue.has_deliverable:
                engine.push.queue_ready(queue.project_id, queue.name)


def _waits_for_handler(job: Job) -> bool:
    """A push-queue job that names no handler: its queue's default handler receives it."""
    return isinstance(job.trigger, PushQueue) and job.handler is None
