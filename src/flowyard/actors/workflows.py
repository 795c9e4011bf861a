"""Execution actors and their registry: trigger, route job results and commands, rehydrate.

Each live execution is an :class:`ExecutionActor`: its state, its blueprint's graph and, while
it has messages, a bounded mailbox drained by one task. A message goes through the pure
``decide``; the new state, its events, the jobs it creates or withdraws, and (for a job
result) the job's own final transition are committed in one transaction; only then are the
jobs scheduled, the deadline armed and the asker answered. Job starts and results that wait
in a busy actor's mailbox are committed together (``workflow_commits.py``).
"""

import logging
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from flowyard import logs
from flowyard.actors.actor_host import ActorHost
from flowyard.actors.blueprints import BlueprintCatalog
from flowyard.actors.children import Children
from flowyard.actors.execution import decide
from flowyard.actors.execution_records import (
    Carry,
    DeadlineTimer,
    ExecutionActor,
    failed_execution,
    missing_inputs,
    new_execution,
)
from flowyard.actors.jobs import Change, JobEngine
from flowyard.actors.mailbox import Envelope, reply
from flowyard.actors.signals import Sent, Signals, SignalTimer
from flowyard.actors.step_results import StepResults
from flowyard.actors.workflow_commits import BATCH, COMMANDS, JOB_MESSAGES, Commits, price_of
from flowyard.billing import WORKFLOW_WRITE
from flowyard.errors import Conflict, FlowyardError, NotFound, Unavailable
from flowyard.jobs.model import Job, Run, WorkflowRef
from flowyard.metrics import Metrics
from flowyard.settings import Settings
from flowyard.storage import workflows as store
from flowyard.storage.intents import Intent
from flowyard.storage.port import Store
from flowyard.storage.signals import with_kept_signals
from flowyard.storage.sqlite import RETRY_MS
from flowyard.workflows.state import (
    LIVE,
    DeadlinePassed,
    Event,
    ExecutionState,
    ExecutionStatus,
    Message,
    ParentRef,
    PauseExecution,
    QueueJob,
    SignalTimedOut,
    Start,
)
from flowyard.workflows.templates import missing_input_paths

log = logging.getLogger("flowyard.workflows")

replace = msgspec.structs.replace


class WorkflowEngine(Commits, ActorHost, StepResults):
    """The registry of execution actors and the entry point of every workflow command."""

    def __init__(self, db: Store, jobs: JobEngine, settings: Settings, metrics: Metrics) -> None:
        self.db = db
        self.jobs = jobs
        self.settings = settings
        self.metrics = metrics
        self.actors: dict[str, ExecutionActor] = {}
        self.blueprints = BlueprintCatalog(db, jobs.accounts, jobs.clock)
        self._triggering: set[tuple[str, str]] = set()
        self._tg: TaskGroup | None = None
        jobs.workflow_settled = self._job_settled
        jobs.workflow_settled_together = self._jobs_settled
        # The outbox's: the events of an execution change, and what to do once committed.
        self.emit: Callable[[ExecutionState, ExecutionState], tuple[list[Intent], list[Any]]] | None
        self.emit = None
        self.emitted: Callable[[list[Any]], None] | None = None
        jobs.workflow_starting = self._jobs_starting
        jobs.timer_hooks[DeadlineTimer] = self._deadline_fired
        self.signals = Signals(db, jobs.timers, self._charge_call)
        jobs.timer_hooks[SignalTimer] = self._signal_timer_fired
        self.children = Children(self)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Rehydrate every active execution, then host the actors' tasks until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._rehydrate()
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None  # a request still on these engines is told 503, not 500
            self._turn_away()

    async def _rehydrate(self) -> None:
        count = 0
        restored: list[ExecutionActor] = []
        holds = self.jobs.placement.holds
        for state in await store.active_executions(self.db):
            if not holds(state.id):
                continue
            try:
                graph = await self.blueprints.graph(state.blueprint_id)
            except Exception as exc:
                # One execution that cannot be restored must not keep the others down.
                log.exception(
                    "execution %s cannot be restored", state.id, extra={"execution_id": state.id}
                )
                failed, events = failed_execution(state, exc, self.jobs.clock.now_ms())
                await self._record(state, failed, events, [], [])
                continue
            state = await with_kept_signals(self.db, state)
            items = await store.execution_items(self.db, state)
            actor = self.actors[state.id] = ExecutionActor(state, graph, items)
            restored.append(actor)
            if state.status in (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED):
                self.jobs.timers.arm(state.deadline_at, DeadlineTimer(state.id, state.deadline_at))
            self.signals.rearm(state, graph)
            count += 1
        log.info("rehydrated %d executions", count)
        await self.children.reconcile(restored)

    # ----------------------------------------------------------------- trigger

    async def trigger(
        self,
        project_id: str,
        blueprint_id: str,
        input_data: dict[str, Any],
        key: str | None,
        *,
        parent: ParentRef | None = None,
        depth: int = 0,
    ) -> tuple[ExecutionState, bool]:
        """Start an execution (a child, with ``parent`` and its ``depth``); with a key seen
        before, the first one (and True)."""
        blueprint = await self.blueprints.get(project_id, blueprint_id)
        graph = await self.blueprints.graph(blueprint.id)
        missing = missing_input_paths(graph.input_placeholders, input_data)
        if missing:
            raise missing_inputs(missing)
        if blueprint.archived_at is not None:
            raise Conflict(f"blueprint {blueprint.id} is archived: it starts no executions")
        guard = (blueprint.id, key) if key else None
        if guard is not None:
            while guard in self._triggering:
                await anyio.sleep(0.001)  # the same key is being triggered right now
            self._triggering.add(guard)
        try:
            if key is not None:
                existing = await store.find_execution_by_key(self.db, blueprint.id, key)
                if existing is not None:
                    if existing.input_data != input_data:
                        raise Conflict("idempotency_key was used with different input_data")
                    self.jobs.accounts.charge(project_id, WORKFLOW_WRITE, "infra/workflows")
                    return existing, True
            now = self.jobs.clock.now_ms()
            place = self.jobs.placement
            if parent is not None:  # beside its parent, held by the same node
                execution_id = place.beside("wfexec", parent.execution_id)
            elif key is not None:
                execution_id = place.keyed("wfexec", blueprint.id, key)
            else:
                execution_id = place.new_id("wfexec")
            state = new_execution(
                execution_id, blueprint, input_data, key, now, parent=parent, depth=depth
            )
            actor = self.actors[state.id] = ExecutionActor(state, graph)
            # The trigger's (a child's: its parent's), sent by its push steps' deliveries.
            parent_actor = self.actors.get(parent.execution_id) if parent else None
            if parent_actor is not None:
                actor.request_id = parent_actor.request_id
            elif parent is None:
                actor.request_id = logs.request_id.get()
            try:
                started: ExecutionState = await self._ask(actor, Start())
            except BaseException:
                self.actors.pop(state.id, None)
                raise
            self.metrics.executions_started.inc()
            return started, False
        finally:
            if guard is not None:
                self._triggering.discard(guard)

    # ----------------------------------------------------------------- commands

    async def command(self, project_id: str, execution_id: str, message: Message) -> ExecutionState:
        """Send cancel, pause or resume to an execution; its new state."""
        actor = await self._actor(execution_id, project_id)
        result: ExecutionState = await self._ask(actor, message)
        return result

    async def _actor(self, execution_id: str, project_id: str | None = None) -> ExecutionActor:
        actor = self.actors.get(execution_id)
        if actor is None:
            state = await store.get_execution(self.db, execution_id, project_id)
            if state is None:
                raise NotFound(f"execution {execution_id} not found")
            graph = await self.blueprints.graph(state.blueprint_id)
            state = await with_kept_signals(self.db, state)
            items = await store.execution_items(self.db, state)
            actor = self.actors.get(execution_id) or ExecutionActor(state, graph, items)
            self.actors[execution_id] = actor
        if project_id is not None and actor.state.project_id != project_id:
            raise NotFound(f"execution {execution_id} not found")
        return actor

    async def signal(
        self, project_id: str, execution_id: str, name: str, data: Any, key: str | None
    ) -> tuple[Sent, bool]:
        """Send a signal to an execution (see :meth:`Signals.send`)."""
        actor = await self._actor(execution_id, project_id)
        return await self.signals.send(actor, self._ask, name, data, key)

    def _charge_call(self, project_id: str) -> None:
        self.jobs.accounts.charge(project_id, WORKFLOW_WRITE, "infra/workflows")

    def _signal_timer_fired(self, key: SignalTimer) -> None:
        actor = self.actors.get(key.execution_id)
        self.signals.fired(actor, key, self._tell, self.jobs.clock.now_ms())

    # ----------------------------------------------------------------- job events

    def _deadline_fired(self, key: DeadlineTimer) -> None:
        actor = self.actors.get(key.execution_id)
        if actor is None or actor.state.deadline_at != key.at:
            return
        try:
            self._tell(actor, DeadlinePassed(key.at))
        except FlowyardError:
            self.jobs.timers.arm(self.jobs.clock.now_ms() + 1000, key)  # busy: try again shortly

    # ----------------------------------------------------------------- the actor loop

    async def _drain(self, actor: ExecutionActor) -> None:
        mailbox = actor.mailbox
        assert mailbox is not None
        waiting: list[Envelope[tuple[Message, Carry | None]]] = []
        envelope: Envelope[tuple[Message, Carry | None]] | None = None
        # Its lines name the execution and the request that triggered it (not that of a
        # request whose message it handles: the asker logs its own lines).
        state = actor.state
        tokens = (
            logs.request_id.set(actor.request_id),
            logs.project_id.set(state.project_id),
            logs.execution_id.set(state.id),
        )
        try:
            while True:
                while len(waiting) < BATCH:
                    try:
                        waiting.append(mailbox.receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                if not waiting:
                    break
                run = 0
                while run < len(waiting) and isinstance(waiting[run].message[0], JOB_MESSAGES):
                    run += 1
                if run > 1:
                    outcomes, done = await self._results(actor, [e.message for e in waiting[:run]])
                    for envelope, outcome in zip(waiting[:done], outcomes, strict=True):
                        reply(envelope, outcome)
                    if done:
                        del waiting[:done]
                        continue
                envelope = waiting.pop(0)
                message, carry = envelope.message
                outcome = await self._process(actor, message, carry)
                if isinstance(message, DeadlinePassed) and isinstance(outcome, Unavailable):
                    # Storage refused it (nobody waits on a deadline): it passes again a bit later.
                    log.warning(
                        "deadline of %s not recorded (%s); again soon", actor.state.id, outcome
                    )
                    key = DeadlineTimer(actor.state.id, message.deadline_at)
                    self.jobs.timers.arm(self.jobs.clock.now_ms() + RETRY_MS, key)
                elif isinstance(message, SignalTimedOut) and isinstance(outcome, Unavailable):
                    at = self.jobs.clock.now_ms() + RETRY_MS  # likewise for a signal's timeout
                    timer = SignalTimer(actor.state.id, message.step_id, message.attempt, at)
                    self.jobs.timers.arm(at, timer)
                reply(envelope, outcome)
        except BaseException:  # cancelled: the engine stopped; what was taken is answered
            stopped = Unavailable("the execution's engine stopped (its shard moved); retry")
            for taken in [envelope, *waiting] if envelope is not None else waiting:
                reply(taken, stopped)  # (one answered already keeps its answer)
            raise
        finally:
            logs.request_id.reset(tokens[0])
            logs.project_id.reset(tokens[1])
            logs.execution_id.reset(tokens[2])
        self._rest(actor)

    async def _process(self, actor: ExecutionActor, message: Message, carry: Carry | None) -> Any:
        """The new state, or the exception to give the asker; never raises."""
        try:
            return await self._transition(actor, message, carry)
        except FlowyardError as exc:
            return exc
        except Exception as exc:
            log.exception("execution %s failed while handling %r", actor.state.id, message)
            return await self._contain(actor, carry, exc)

    async def _transition(
        self, actor: ExecutionActor, message: Message, carry: Carry | None
    ) -> ExecutionState:
        now = self.jobs.clock.now_ms()
        try:
            new, effects, events = decide(actor.state, message, now, actor.graph, actor.items)
        except FlowyardError:
            if carry is not None:
                await self.jobs.commit([carry[0]], carry[1])
            raise
        price = price_of(message, effects)
        project_id = actor.state.project_id
        if not isinstance(message, COMMANDS) and not self.jobs.accounts.can_pay(project_id, price):
            # Steps that cannot be paid for are not lost: the execution pauses before them.
            paused, _, pausing = decide(
                actor.state, PauseExecution(reason=NO_TOKENS), now, actor.graph, actor.items
            )
            new, effects, events = decide(paused, message, now, actor.graph, actor.items)
            events = pausing + events
            price = 0
        with self.jobs.accounts.paying(project_id, price, "infra/workflows"):
            return await self._apply(actor, new, effects, events, carry, now)

    async def _record(
        self,
        old: ExecutionState,
        new: ExecutionState,
        events: list[Event],
        changes: list[Change],
        runs: list[Run],
        more: list[Intent] | None = None,
    ) -> ExecutionState:
        """Commit ``new`` with its events, the job changes it carries, ``more`` rows of its
        own and what it emits to webhooks; the state as stored."""
        seq = old.event_seq
        new = replace(new, event_seq=seq + len(events))
        ops: list[Intent] = [store.put_execution(new), store.put_events(new.id, seq + 1, events)]
        ops += more or []
        outbox, deliveries = self.emit(old, new) if self.emit else ([], [])
        await self.jobs.commit(changes, runs, [*ops, *outbox])
        status = new.status
        if status is not old.status and old.status in LIVE and status not in LIVE:
            self.metrics.executions_finished_by[status].inc()
        if deliveries and self.emitted is not None:
            self.emitted(deliveries)
        if new.parent is not None:
            await self.children.ended(old, new)
        return new

    def _step_job(self, state: ExecutionState, effect: QueueJob, now: int) -> Job:
        step = self.blueprints.graphs[state.blueprint_id].steps[effect.step_id]
        assert step.job_trigger is not None  # only job steps queue jobs
        spec = step.job_trigger.to_spec(effect.payload)
        ref = WorkflowRef(state.id, effect.step_id, effect.attempt, effect.item_index)
        job = self.jobs.new_job(state.project_id, spec, now, ref)
        actor = self.actors.get(state.id)
        if actor is not None and actor.request_id is not None:
            self.jobs.live.keep_request_id(job, actor.request_id)
        return job

    async def _contain(self, actor: ExecutionActor, carry: Carry | None, exc: Exception) -> Any:
        """An unexpected error: the execution fails with ``internal_error``; others go on.

        A job result that came with the message is still recorded (the job did end), and its
        sender is answered as if all went well; a command's sender gets 503. An execution that
        had already ended (not running or paused) keeps its status.
        """
        failed, events = failed_execution(actor.state, exc, self.jobs.clock.now_ms())
        try:
            actor.state = await self._record(
                actor.state, failed, events, [carry[0]] if carry else [], carry[1] if carry else []
            )
        except FlowyardError as stored:
            return stored  # storage is failing: nothing was recorded, the sender may retry
        except Exception:
            log.exception("could not record the failure of %s", actor.state.id)
            return Unavailable("internal error while handling the execution")
        if carry is not None:
            return actor.state
        return Unavailable("internal error while handling the execution")


NO_TOKENS = "insufficient_tokens"
