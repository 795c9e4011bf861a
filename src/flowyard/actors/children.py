"""Child executions of sub_workflow steps: starting them, cancelling them, telling a parent
that its child ended, and putting both sides right after a restart.

A child is triggered with the idempotency key of its step attempt, or of its item attempt in a
for_each step (``child_key``), so a start
repeated after a crash finds the child the first start made. Whatever a child's end or start
means for its parent goes to the parent as a message (``ChildStarted``, ``ChildFinished``)
through ``decide``, like a job result.
"""

import logging
from typing import TYPE_CHECKING

import msgspec

from flowyard.actors.execution import render_child_input
from flowyard.actors.execution_records import ExecutionActor
from flowyard.errors import FlowyardError, NotFound
from flowyard.storage import workflows as store
from flowyard.workflows.blueprint import StepKind
from flowyard.workflows.children import NOT_STARTED, child_key, not_started, result_of
from flowyard.workflows.maps import NO_ITEMS, Items
from flowyard.workflows.state import (
    ITEM_ACTIVE,
    LIVE,
    CancelChild,
    CancelExecution,
    ChildFinished,
    ChildStarted,
    ExecutionState,
    ExecutionStatus,
    ParentRef,
    StartChild,
    StepError,
    StepStatus,
)

if TYPE_CHECKING:
    from flowyard.actors.workflows import WorkflowEngine

log = logging.getLogger("flowyard.workflows")

RETRY_NOTICE_MS = 1000


class ChildNotice(msgspec.Struct, frozen=True, gc=False):
    """A timer key: tell the parent of ``child_id`` again that it ended (its mailbox was full)."""

    child_id: str


def finished(child: ExecutionState) -> ChildFinished:
    """What an ended child's parent is told."""
    assert child.parent is not None
    ref, index = child.parent, child.parent.item_index
    if child.status is ExecutionStatus.COMPLETED:
        output = result_of(child)
        return ChildFinished(ref.step_id, ref.attempt, child.id, child.status, output, None, index)
    return ChildFinished(ref.step_id, ref.attempt, child.id, child.status, None, child.error, index)


def waits_for(parent: ExecutionState | None, items: Items, ref: ParentRef) -> bool:
    """Whether ``parent`` still waits for the child ``ref`` names: its step attempt (or, for
    an item's child, its item attempt) is still running it."""
    step = parent.steps.get(ref.step_id) if parent is not None else None
    if step is None or step.status is not StepStatus.RUNNING:
        return False
    if ref.item_index is None:
        return step.attempt == ref.attempt
    found = items.get(ref.step_id, ())
    if not 0 <= ref.item_index < len(found):
        return False
    item = found[ref.item_index]
    return item.attempt == ref.attempt and item.status in ITEM_ACTIVE


class Children:
    """The workflow engine's side of parent and child executions."""

    def __init__(self, engine: "WorkflowEngine") -> None:
        self.engine = engine
        engine.jobs.timer_hooks[ChildNotice] = self._notice_fired

    async def state(self, execution_id: str) -> ExecutionState | None:
        """An execution as its actor holds it, else as stored."""
        actor = self.engine.actors.get(execution_id)
        if actor is not None:
            return actor.state
        return await store.get_execution(self.engine.db, execution_id)

    # ----------------------------------------------------------------- starting

    async def start(
        self, parent: ExecutionState, effect: StartChild
    ) -> ChildStarted | ChildFinished:
        """Find the child of the step attempt, or trigger it; what the parent is told.

        A child that cannot start (its blueprint archived, its input short of what its
        templates read, no tokens) fails the step with ``sub_workflow_not_started``.
        """
        index = effect.item_index
        key = child_key(parent.id, effect.step_id, effect.attempt, index)
        child = await store.find_execution_by_key(self.engine.db, effect.blueprint_id, key)
        if child is None:
            ref = ParentRef(parent.id, effect.step_id, effect.attempt, index)
            try:
                child, _ = await self.engine.trigger(
                    parent.project_id,
                    effect.blueprint_id,
                    effect.input_data,
                    key,
                    parent=ref,
                    depth=parent.depth + 1,
                )
            except FlowyardError as exc:
                error = not_started(
                    f"cannot start a child of blueprint {effect.blueprint_id}: {exc}"
                )
                return ChildFinished(
                    effect.step_id, effect.attempt, None, NOT_STARTED, None, error, index
                )
        else:
            child = await self.state(child.id) or child
        if child.status in LIVE:
            return ChildStarted(effect.step_id, effect.attempt, child.id, index)
        return finished(child)

    async def started(self, actor: ExecutionActor, effect: StartChild) -> None:
        """Start a child and give the parent the outcome at once (the parent's actor is the
        caller: nothing else of the parent runs meanwhile).

        A start whose step attempt (or item attempt) no longer waits for it is skipped: an
        earlier start of the same commit may have ended at once and withdrawn it."""
        ref = ParentRef(actor.state.id, effect.step_id, effect.attempt, effect.item_index)
        if not waits_for(actor.state, actor.items, ref):
            return
        try:
            message = await self.start(actor.state, effect)
        except Exception:
            # The step stays running without a child; the next start of the server starts it.
            log.exception("execution %s: the child of %s not started", actor.state.id, effect)
            return
        try:
            await self.engine._transition(actor, message, None)
        except Exception:
            log.exception("execution %s: %r not recorded; sent again", actor.state.id, message)
            try:
                self.engine._tell(actor, message)
            except FlowyardError:
                return  # the next start of the server reconciles it
            return
        await self._drop_if_stale(actor, message)

    async def _drop_if_stale(
        self, actor: ExecutionActor, message: ChildStarted | ChildFinished
    ) -> None:
        """A child the parent's step (or item) no longer runs (cancelled, withdrawn or
        overridden meanwhile) is cancelled."""
        if not isinstance(message, ChildStarted):
            return
        ref = ParentRef(actor.state.id, message.step_id, message.attempt, message.item_index)
        if not waits_for(actor.state, actor.items, ref):
            await self.cancel_one(message.child_execution_id)

    # ----------------------------------------------------------------- cancelling

    async def cancel(self, parent: ExecutionState, effect: CancelChild) -> None:
        """Cancel the child of a step attempt (found by its key when its id is not known)."""
        child_id = effect.child_execution_id
        if child_id is None:
            graph = self.engine.blueprints.graphs.get(parent.blueprint_id)
            sub = graph.steps[effect.step_id].sub_workflow if graph else None
            if sub is None:
                return
            key = child_key(parent.id, effect.step_id, effect.attempt, effect.item_index)
            found = await store.find_execution_by_key(self.engine.db, sub.blueprint_id, key)
            if found is None:
                return
            child_id = found.id
        await self.cancel_one(child_id)

    async def cancel_one(self, child_id: str) -> None:
        try:
            actor = await self.engine._actor(child_id)
            await self.engine._ask(actor, CancelExecution())
        except NotFound:
            return
        except FlowyardError as exc:  # it ended meanwhile (409), or storage refused (logged)
            log.info("child execution %s not cancelled: %s", child_id, exc)

    # ----------------------------------------------------------------- ends

    async def ended(self, old: ExecutionState, new: ExecutionState) -> None:
        """After a child's commit: tell its parent when it has just ended."""
        if new.parent is None or old.status not in LIVE or new.status in LIVE:
            return
        await self.notify(new)

    async def notify(self, child: ExecutionState) -> None:
        assert child.parent is not None
        try:
            actor = await self.engine._actor(child.parent.execution_id)
            self.engine._tell(actor, finished(child))
        except NotFound:
            return
        except Exception as exc:
            # The parent's mailbox is full, or storage failed: try again soon (a restart
            # reconciles it too).
            if not isinstance(exc, FlowyardError):
                log.exception("execution %s: its parent not told of its end", child.id)
            at = self.engine.jobs.clock.now_ms() + RETRY_NOTICE_MS
            self.engine.jobs.timers.arm(at, ChildNotice(child.id))

    def _notice_fired(self, key: ChildNotice) -> None:
        assert self.engine._tg is not None
        self.engine._tg.start_soon(self._notice_again, key.child_id)

    async def _notice_again(self, child_id: str) -> None:
        child = await self.state(child_id)
        if child is not None and child.parent is not None and child.status not in LIVE:
            await self.notify(child)

    # ----------------------------------------------------------------- after a restart

    async def reconcile(self, actors: list[ExecutionActor]) -> None:
        """Put parents and children right after a restart: a step whose child start may not
        have happened starts it (or finds it), a step whose child ended meanwhile gets its
        outcome, and a live child whose parent no longer waits for it is cancelled."""
        for actor in actors:
            try:
                await self._reconcile(actor)
            except Exception:
                log.exception("execution %s: children not reconciled", actor.state.id)

    async def _reconcile(self, actor: ExecutionActor) -> None:
        state = actor.state
        for step_id, step in state.steps.items():
            if step.status is not StepStatus.RUNNING:
                continue
            sub = actor.graph.steps[step_id]
            if sub.kind is not StepKind.SUB_WORKFLOW or sub.sub_workflow is None:
                continue
            blueprint_id = sub.sub_workflow.blueprint_id
            if sub.for_each is not None:
                await self._reconcile_items(actor, step_id, blueprint_id)
                continue
            if step.child_execution_id is None:
                effect = StartChild(step_id, step.attempt, blueprint_id, {})
                await self._restart(actor, effect)
                continue
            await self._catch_up(actor, step.child_execution_id)
        if state.parent is not None and state.status in LIVE:
            ref = state.parent
            parent = await self.state(ref.execution_id)
            items: Items = NO_ITEMS
            if parent is not None and ref.item_index is not None:
                items = await self._items(parent)
            if not waits_for(parent, items, ref):
                await self.cancel_one(state.id)

    async def _reconcile_items(
        self, actor: ExecutionActor, step_id: str, blueprint_id: str
    ) -> None:
        """The items of a for_each sub_workflow step, as :meth:`_reconcile` does a step."""
        for item in list(actor.items.get(step_id, ())):
            if item.status not in ITEM_ACTIVE:
                continue
            current = actor.items[step_id][item.index]
            if current.attempt != item.attempt or current.status not in ITEM_ACTIVE:
                continue  # an earlier item's outcome changed it meanwhile
            if item.child_execution_id is None:
                effect = StartChild(step_id, item.attempt, blueprint_id, {}, item.index)
                await self._restart(actor, effect)
            else:
                await self._catch_up(actor, item.child_execution_id)

    async def _catch_up(self, actor: ExecutionActor, child_id: str) -> None:
        """A child that ended while nobody was told: its parent is told now."""
        child = await self.state(child_id)
        if child is not None and child.status not in LIVE:
            await self.engine._ask(actor, finished(child))

    async def _items(self, parent: ExecutionState) -> Items:
        """An execution's for_each items as its actor holds them, else as stored."""
        actor = self.engine.actors.get(parent.id)
        if actor is not None:
            return actor.items
        return await store.execution_items(self.engine.db, parent)

    async def _restart(self, actor: ExecutionActor, effect: StartChild) -> None:
        """A step attempt's child start, again: found by its key, or made now with the input
        the step renders."""
        index = effect.item_index
        key = child_key(actor.state.id, effect.step_id, effect.attempt, index)
        found = await store.find_execution_by_key(self.engine.db, effect.blueprint_id, key)
        message: ChildStarted | ChildFinished
        item = None if index is None else actor.items[effect.step_id][index]
        rendered = render_child_input(actor.state, actor.graph, effect.step_id, item)
        if found is None and isinstance(rendered, StepError):
            message = ChildFinished(
                effect.step_id, effect.attempt, None, NOT_STARTED, None, rendered, index
            )
        else:
            if isinstance(rendered, dict):
                effect = msgspec.structs.replace(effect, input_data=rendered)
            message = await self.start(actor.state, effect)
        await self.engine._ask(actor, message)
        await self._drop_if_stale(actor, message)
