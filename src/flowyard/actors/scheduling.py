"""After a job's transition commits: its effects run here (timers armed or cancelled, the job
made ready for its queue or for push delivery, its ``callback_url`` told), and timers that
fire come back here to be turned into transitions.

A timer's key is a tagged Struct naming what it watches (a job's ``Due``, ``Fire``, ``Lease``
or ``Callback``, or a key type another part registered in :attr:`Scheduler.hooks`); when it
fires it is checked against the job's current state and ignored if it no longer applies. A key
of no known type is an error, never silently dropped.
"""

import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from flowyard.actors.timers import Timers
from flowyard.clock import Clock
from flowyard.errors import Unavailable
from flowyard.jobs.events import (
    ArmTimer,
    Callback,
    CancelTimer,
    CronFired,
    Due,
    Effect,
    Fire,
    JobTimer,
    Lease,
    MakeReady,
    NotifyEnded,
    Transition,
)
from flowyard.jobs.model import QUEUE_TRIGGERS, Job, PullQueue, Run
from flowyard.jobs.transitions import admission, is_ready, transition
from flowyard.storage.sqlite import RETRY_MS

if TYPE_CHECKING:
    from flowyard.actors.jobs import JobEngine

log = logging.getLogger("flowyard.jobs")

TimerHook = Callable[[Any], None]
"""Handles the timers of one key type that another part registered (deadlines, rate waits)."""


class Scheduler:
    """The timer service of the jobs engine, and what runs a transition's effects."""

    def __init__(self, engine: "JobEngine", clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.timers = Timers(self._on_timer, clock)
        self.hooks: dict[type, TimerHook] = {}
        self._jobs = engine.live.jobs
        self._now = clock.now_ms

    def is_ready(self, job_id: str) -> bool:
        """Whether the live job ``job_id`` may be claimed or delivered now."""
        job = self._jobs.get(job_id)
        return job is not None and is_ready(job, self._now())

    def admit(self, job: Job) -> None:
        """After a commit: make the job ready now or arm the timer for when it will be."""
        self._run(job, admission(job, self._now()), ())

    def run_effects(self, done: Transition) -> None:
        """Carry out a committed transition's effects."""
        self._run(done.job, done.effects, done.runs)

    def _run(self, job: Job, effects: Sequence[Effect], runs: Sequence[Run]) -> None:
        for effect in effects:
            if type(effect) is ArmTimer:
                self.timers.arm(effect.due, effect.key)
            elif type(effect) is MakeReady:
                self.make_ready(job)
            elif type(effect) is CancelTimer:
                self.timers.cancel(effect.key)
            elif type(effect) is NotifyEnded:
                pass  # the notice was committed with the transition, in the webhook outbox
            else:
                raise TypeError(f"unexpected effect {effect!r}")

    def make_ready(self, job: Job) -> None:
        """Put a due job on its queue's ready heap, or hand it to push delivery."""
        if isinstance(job.trigger, QUEUE_TRIGGERS):
            pull = isinstance(job.trigger, PullQueue)
            queue = self.engine.queue(job.project_id, job.trigger.queue)
            queue.push(job.id, job.priority, job.created_at, pull=pull)
            if not pull:
                self.engine.push.queue_ready(job.project_id, job.trigger.queue)
        else:
            self.engine.push.ready(job.id)

    def _on_timer(self, key: Hashable) -> None:
        """A timer fired: act on it if it still applies to the job (else it is stale)."""
        job = self._jobs.get(key.job_id) if isinstance(key, JobTimer) else None
        now = self._now()
        match key:
            case Due():
                if job is not None and is_ready(job, now):
                    self.make_ready(job)
            case Fire():
                if job is not None:
                    # Cron fires change memory only: the delivery that follows commits the job.
                    fired = transition(job, None, CronFired(key.at), now)
                    if fired.job is not job:
                        self.engine.live.index(job, fired.job)
                    self.run_effects(fired)
            case Lease():
                if (
                    job is not None
                    and job.claim_token == key.claim_token
                    and job.claimed_until
                    and job.claimed_until <= now
                ):
                    self.spawn(self.engine.claims.expire_lease, job.id, key.claim_token, again=key)
            case Callback():
                deadline = job.callback_deadline if job is not None else None
                if job is not None and job.run_id == key.run_id and deadline and deadline <= now:
                    self.spawn(self.engine.push.expire_callback, job.id, key.run_id, again=key)
            case _:
                hook = self.hooks.get(type(key))
                if hook is None:
                    raise TypeError(f"unexpected timer {key!r}")
                hook(key)

    def spawn(
        self, func: Callable[..., Awaitable[object]], *args: object, again: Hashable = None
    ) -> None:
        """Run a transition in the background; if storage refuses it, fire timer ``again``.

        Nothing once the engine stopped: a cluster node whose shards changed rebuilt its
        engines, which rehydrated from the database what this one would have done.
        """
        if self.engine.tg is not None:
            self.engine.tg.start_soon(self._guarded, func, args, again)

    async def _guarded(
        self, func: Callable[..., Awaitable[object]], args: tuple[object, ...], again: Hashable
    ) -> None:
        try:
            await func(*args)
        except Unavailable as exc:
            log.warning("%s%r refused (%s); trying again", func.__name__, args, exc)
            if again is not None:
                self.timers.arm(self.clock.now_ms() + RETRY_MS, again)
        except Exception:
            log.exception("background job transition failed: %s%r", func.__name__, args)

    def retry_soon(self, job_id: str) -> None:
        """Storage refused a job's start: make the job ready again a little later."""
        self.timers.arm(self.clock.now_ms() + RETRY_MS, Due(job_id))
