"""Workflow schedules at work: created, changed and deleted for the HTTP layer, and fired.

Every schedule is kept in memory (loaded on start) with its next fire armed in the jobs
engine's timer service as a :class:`ScheduleDue` key, like any cron job. A fire triggers the
blueprint through :meth:`WorkflowEngine.trigger` with the slot's idempotency key, then records
``next_fire_at``, ``last_fire_at`` and ``last_execution_id``. The trigger commits before the
schedule does, so a crash between the two fires that slot again on start, and the key answers
the execution the first fire started: a slot never starts two executions. Fires and changes
of one schedule take its lock, so a fire never writes back a schedule deleted meanwhile.
"""

import contextlib
import logging
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from flowyard.actors.workflows import WorkflowEngine
from flowyard.billing import WORKFLOW_WRITE
from flowyard.errors import Conflict, FlowyardError, Invalid, NotFound, Unavailable
from flowyard.jobs.spec import check_schedule, check_timezone
from flowyard.storage import schedules as store
from flowyard.storage import workflows as executions
from flowyard.storage.sqlite import RETRY_MS
from flowyard.workflows.schedules import (
    Overlap,
    Schedule,
    due_slot,
    fire_time,
    manual_key,
    next_fire_at,
    slot_key,
)
from flowyard.workflows.state import LIVE, ExecutionState
from flowyard.workflows.templates import missing_input_paths

log = logging.getLogger("flowyard.schedules")

FAMILY = "infra/workflows"
MAX_SCHEDULES = 1000
"""Schedules one project may hold."""

replace = msgspec.structs.replace


class ScheduleDue(msgspec.Struct, frozen=True, gc=False):
    """A timer key: the schedule's ``next_fire_at`` (``at``) has come."""

    schedule_id: str
    at: int


class Schedules:
    """The schedules in memory, their commands, and their fires."""

    def __init__(self, workflows: WorkflowEngine) -> None:
        self.workflows = workflows
        self.db = workflows.db
        self.jobs = workflows.jobs
        self.clock = workflows.jobs.clock
        self.accounts = workflows.jobs.accounts
        self.schedules: dict[str, Schedule] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._tg: TaskGroup | None = None
        self.jobs.timer_hooks[ScheduleDue] = self._due

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load every schedule and arm its next fire (one whose time passed while the server
        was down fires at once, once), then fire them until cancelled."""
        holds = self.jobs.placement.holds
        loaded = [s for s in await store.all_schedules(self.db) if holds(s.id)]
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for schedule in loaded:
                    self.schedules[schedule.id] = schedule
                    self._arm(schedule)
                log.info("armed %d workflow schedules", len(loaded))
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None

    # ----------------------------------------------------------------- commands

    def require(self, project_id: str, schedule_id: str) -> Schedule:
        """The project's schedule, or 404."""
        schedule = self.schedules.get(schedule_id)
        if schedule is None or schedule.project_id != project_id:
            raise NotFound(f"schedule {schedule_id} not found")
        return schedule

    async def create(self, project_id: str, fields: dict[str, Any]) -> Schedule:
        """Validate (400 per problem; 409 for an archived blueprint) and store a schedule."""
        blueprint_id = fields["blueprint_id"]
        problems = await self._problems(project_id, blueprint_id, fields)
        if problems:
            raise _invalid(problems)
        blueprint = await self.workflows.blueprints.get(project_id, blueprint_id)
        if blueprint.archived_at is not None:
            raise Conflict(f"blueprint {blueprint_id} is archived: it cannot be scheduled")
        held = sum(s.project_id == project_id for s in self.schedules.values())
        if held >= MAX_SCHEDULES:
            raise Conflict(f"a project has at most {MAX_SCHEDULES} schedules; delete one first")
        now = self.clock.now_ms()
        schedule = Schedule(
            id=self.jobs.placement.new_id("wfsch"),
            project_id=project_id,
            created_at=now,
            updated_at=now,
            **{**fields, "overlap": Overlap(fields["overlap"])},
        )
        schedule = replace(schedule, next_fire_at=next_fire_at(schedule, now))
        with self.accounts.paying(project_id, WORKFLOW_WRITE, FAMILY):
            await self.db.commit([store.put_schedule(schedule)])
        self.schedules[schedule.id] = schedule
        self._arm(schedule)
        return schedule

    async def update(self, project_id: str, schedule_id: str, changes: dict[str, Any]) -> Schedule:
        """Change any of schedule, timezone, input_data, enabled, overlap; ``next_fire_at``
        is computed again from now."""
        self.require(project_id, schedule_id)  # 404 before a lock exists for the id
        async with self._lock(schedule_id):
            old = self.require(project_id, schedule_id)
            problems = await self._problems(project_id, old.blueprint_id, changes)
            if problems:
                raise _invalid(problems)
            if changes.get("enabled") is True:
                blueprint = await self.workflows.blueprints.get(project_id, old.blueprint_id)
                if blueprint.archived_at is not None:
                    raise Conflict(f"blueprint {blueprint.id} is archived: it cannot be scheduled")
            if "overlap" in changes:
                changes["overlap"] = Overlap(changes["overlap"])
            now = self.clock.now_ms()
            new = replace(old, **changes, updated_at=now)
            new = replace(new, next_fire_at=next_fire_at(new, now))
            with self.accounts.paying(project_id, WORKFLOW_WRITE, FAMILY):
                await self.db.commit([store.put_schedule(new)])
            self._disarm(old)
            self.schedules[new.id] = new
            self._arm(new)
            return new

    async def delete(self, project_id: str, schedule_id: str) -> Schedule:
        """Delete a schedule; its executions run on."""
        self.require(project_id, schedule_id)
        async with self._lock(schedule_id):
            schedule = self.require(project_id, schedule_id)
            with self.accounts.paying(project_id, WORKFLOW_WRITE, FAMILY):
                await self.db.commit([store.delete_schedule(schedule.id)])
            self._disarm(schedule)
            del self.schedules[schedule.id]
        self._locks.pop(schedule_id, None)
        return schedule

    async def trigger(self, project_id: str, schedule_id: str) -> tuple[ExecutionState, bool]:
        """Fire now, enabled or not and whatever ``overlap`` says: the trigger's answer.

        The key is the time of the call with its milliseconds (:func:`manual_key`);
        ``next_fire_at`` stays as it was.
        """
        self.require(project_id, schedule_id)
        async with self._lock(schedule_id):
            schedule = self.require(project_id, schedule_id)
            now = self.clock.now_ms()
            key = manual_key(schedule.id, now)
            state, replayed = await self.workflows.trigger(
                project_id, schedule.blueprint_id, schedule.input_data, key
            )
            new = replace(schedule, last_fire_at=now, last_execution_id=state.id)
            try:
                await self.db.commit([store.put_schedule(new)])
            except FlowyardError as exc:
                # The execution started: the caller hears of it; the schedule's record of
                # its last fire is what is lost.
                log.warning("schedule %s: its fire now was not recorded (%s)", schedule.id, exc)
            else:
                self.schedules[new.id] = new
            return state, replayed

    async def _problems(
        self, project_id: str, blueprint_id: str, fields: dict[str, Any]
    ) -> list[dict[str, str]]:
        problems: list[dict[str, str]] = []
        if "schedule" in fields:
            problems += check_schedule(fields["schedule"], "$.schedule")
        if "timezone" in fields:
            problems += check_timezone(fields["timezone"], "$.timezone")
        try:
            blueprint = await self.workflows.blueprints.get(project_id, blueprint_id)
        except NotFound:
            problems.append({"path": "$.blueprint_id", "message": "no such blueprint"})
            return problems
        if "input_data" in fields:
            graph = await self.workflows.blueprints.graph(blueprint.id)
            missing = missing_input_paths(graph.input_placeholders, fields["input_data"])
            problems += [
                {"path": f"$.input_data{path[len('input') :]}", "message": "missing"}
                for path in missing
            ]
        return problems

    # ----------------------------------------------------------------- fires

    def _lock(self, schedule_id: str) -> anyio.Lock:
        """The schedule's lock; only ever asked for a schedule that exists, so that unknown
        ids sent by clients leave nothing behind."""
        return self._locks.setdefault(schedule_id, anyio.Lock())

    def _arm(self, schedule: Schedule) -> None:
        if schedule.enabled and schedule.next_fire_at is not None:
            self.jobs.timers.arm(
                schedule.next_fire_at, ScheduleDue(schedule.id, schedule.next_fire_at)
            )

    def _disarm(self, schedule: Schedule) -> None:
        if schedule.next_fire_at is not None:
            self.jobs.timers.cancel(ScheduleDue(schedule.id, schedule.next_fire_at))

    def _due(self, key: ScheduleDue) -> None:
        schedule = self.schedules.get(key.schedule_id)
        if schedule is None or schedule.next_fire_at != key.at or self._tg is None:
            return
        with contextlib.suppress(RuntimeError):  # shutting down: the next start fires it
            self._tg.start_soon(self._fire, key)

    async def _fire(self, key: ScheduleDue) -> None:
        async with self._lock(key.schedule_id):
            schedule = self.schedules.get(key.schedule_id)
            if schedule is None or schedule.next_fire_at != key.at:
                return  # changed or deleted since the timer was armed
            now = self.clock.now_ms()
            slot = due_slot(schedule, now)
            if slot is None:
                self._arm(schedule)
                return
            try:
                new = await self._fire_slot(schedule, slot, now)
                await self.db.commit([store.put_schedule(new)])
            except Unavailable as exc:
                # Storage refused it: the same slot again soon (its key keeps it to one).
                log.warning(
                    "schedule %s: fire of %s again soon (%s)", schedule.id, fire_time(slot), exc
                )
                self.jobs.timers.arm(now + RETRY_MS, key)
                return
            except Exception:
                # A bug must not stop the other schedules: on to the next slot, in memory only
                # (the store keeps the old next_fire_at, so a restart fires this one late).
                log.exception("schedule %s: fire of %s failed", schedule.id, fire_time(slot))
                new = replace(schedule, next_fire_at=next_fire_at(schedule, now))
            self.schedules[new.id] = new
            self._arm(new)

    async def _fire_slot(self, schedule: Schedule, slot: int, now: int) -> Schedule:
        """Trigger the slot unless it is to be skipped; the schedule to record after it."""
        moved = replace(schedule, next_fire_at=next_fire_at(schedule, now))
        when = fire_time(slot)
        previous = await self._live_execution(schedule)
        if previous is not None and schedule.overlap is Overlap.SKIP:
            log.info(
                "schedule %s skipped %s: execution %s is still %s",
                schedule.id,
                when,
                previous.id,
                previous.status,
            )
            return moved
        try:
            blueprint = await self.workflows.blueprints.get(
                schedule.project_id, schedule.blueprint_id
            )
            if blueprint.archived_at is not None:
                log.warning(
                    "schedule %s disabled: its blueprint %s is archived", schedule.id, blueprint.id
                )
                return replace(schedule, enabled=False, next_fire_at=None)
            state, replayed = await self.workflows.trigger(
                schedule.project_id,
                schedule.blueprint_id,
                schedule.input_data,
                slot_key(schedule.id, slot),
            )
        except Unavailable:
            raise
        except FlowyardError as exc:
            log.warning("schedule %s did not fire %s: %s", schedule.id, when, exc)
            return moved
        except Exception:
            log.exception("schedule %s failed to fire %s", schedule.id, when)
            return moved
        again = " (fired before: the same execution)" if replayed else ""
        log.info(
            "schedule %s fired %s: execution %s%s",
            schedule.id,
            when,
            state.id,
            again,
            extra={"project_id": schedule.project_id, "execution_id": state.id},
        )
        return replace(moved, last_fire_at=slot, last_execution_id=state.id)

    async def _live_execution(self, schedule: Schedule) -> ExecutionState | None:
        """The schedule's last execution if it is still running or paused."""
        execution_id = schedule.last_execution_id
        if execution_id is None:
            return None
        actor = self.workflows.actors.get(execution_id)
        state = actor.state if actor is not None else None
        if state is None:
            state = await executions.get_execution(self.db, execution_id, schedule.project_id)
        return state if state is not None and state.status in LIVE else None


def _invalid(problems: list[dict[str, str]]) -> Invalid:
    return Invalid("; ".join(f"{p['path']}: {p['message']}" for p in problems), problems)
