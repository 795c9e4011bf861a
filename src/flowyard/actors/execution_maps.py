"""The for_each part of ``decide``: starting a map, running its items, ending its step.

Pure like the rest of ``decide``: the items come in as a read-only mapping and every item
that changes goes out as a :class:`PutItems` effect, which the shell commits in the same
transaction as the execution and applies to its copy afterwards. The execution itself holds
only each map's counts (:class:`MapProgress`).
"""

from typing import TYPE_CHECKING, Any

import msgspec

from flowyard.jobs.spec import MAX_PAYLOAD_BYTES
from flowyard.workflows.blueprint import MAX_ITEMS, StepKind
from flowyard.workflows.children import MAX_DEPTH, child_failure, depth_error
from flowyard.workflows.maps import (
    Items,
    cancelled,
    completed,
    counted,
    item_failure,
    pending,
    queued,
    rerun,
    withdrawn,
)
from flowyard.workflows.rendering import render
from flowyard.workflows.state import (
    ITEM_ACTIVE,
    CancelChild,
    ChildFinished,
    ChildStarted,
    Effect,
    ExecutionStatus,
    ItemState,
    ItemStatus,
    JobFinished,
    JobStarted,
    MapProgress,
    PutItems,
    QueueJob,
    StartChild,
    StepError,
    StepStatus,
    WithdrawJob,
)
from flowyard.workflows.templates import TemplateError

if TYPE_CHECKING:
    from flowyard.actors.execution import _Draft

replace = msgspec.structs.replace


class MapRunner:
    """The items of one transition: the ones given, overlaid with the ones it changes."""

    def __init__(self, draft: "_Draft", items: Items) -> None:
        self.draft = draft
        self.items = items
        self.changed: dict[str, dict[int, ItemState]] = {}

    # ------------------------------------------------------------------ reading and writing

    def item(self, step_id: str, index: int) -> ItemState:
        changed = self.changed.get(step_id)
        if changed is not None and index in changed:
            return changed[index]
        return self.items[step_id][index]

    def progress(self, step_id: str) -> MapProgress:
        progress = self.draft.steps[step_id].items
        assert progress is not None
        return progress

    def put(self, step_id: str, item: ItemState, new: bool = False) -> None:
        old = None if new else self.item(step_id, item.index).status
        self.changed.setdefault(step_id, {})[item.index] = item
        self.draft.set_step(step_id, items=counted(self.progress(step_id), old, item.status))

    def set_progress(self, step_id: str, **changes: Any) -> None:
        self.draft.set_step(step_id, items=replace(self.progress(step_id), **changes))

    def effects(self) -> list[PutItems]:
        """One effect per map with changed items, the items in index order."""
        return [
            PutItems(step_id, tuple(changed[i] for i in sorted(changed)))
            for step_id, changed in self.changed.items()
        ]

    # ------------------------------------------------------------------ a map's run

    def start(self, step_id: str) -> None:
        """An eligible for_each step: resolve its array (first run) or re-run what did not
        complete (a resume), then start items up to its concurrency."""
        draft = self.draft
        step = draft.steps[step_id]
        attempt = step.attempt + 1
        if step.items is None:
            values = self.resolve(step_id)
            if values is None:
                return
            draft.set_step(
                step_id,
                status=StepStatus.RUNNING,
                attempt=attempt,
                job_id=None,
                error=None,
                output=None,
                started_at=draft.now,
                completed_at=None,
                items=MapProgress(total=len(values)),
            )
            for index, value in enumerate(values):
                self.put(step_id, ItemState(index=index, value=value), new=True)
            data = {"attempt": attempt, "total": len(values), "values": values}
            draft.event("map_started", step_id, data)
        else:
            draft.set_step(
                step_id,
                status=StepStatus.RUNNING,
                attempt=attempt,
                job_id=None,
                error=None,
                output=None,
                started_at=draft.now,
                completed_at=None,
            )
            for index in range(step.items.total):
                item = self.item(step_id, index)
                if item.status in (ItemStatus.FAILED, ItemStatus.CANCELLED):
                    self.put(step_id, rerun(item))
            self.set_progress(step_id, next=0, failure=None)
            data = {"attempt": attempt, "total": step.items.total, "rerun": True}
            draft.event("map_started", step_id, data)
        self.fill(step_id)
        self.conclude(step_id)

    def resolve(self, step_id: str) -> list[Any] | None:
        """The for_each array, or None after failing the step with ``template_error``."""
        draft = self.draft
        path = draft.graph.steps[step_id].for_each
        assert path is not None
        message = None
        try:
            values = render(path, draft.context(step_id))
        except TemplateError as exc:
            message = f"cannot resolve {{{{{exc.path}}}}}"
        else:
            if not isinstance(values, list):
                message = f"for_each {path} is a {type(values).__name__}, not an array"
            elif len(values) > MAX_ITEMS:
                message = f"for_each {path} has {len(values)} items (at most {MAX_ITEMS})"
        if message is not None:
            step = draft.steps[step_id]
            draft.fail(step_id, StepError("template_error", message), None, step.attempt)
            return None
        return list(values)

    def fill(self, step_id: str) -> None:
        """Start pending items, lowest index first, until ``max_concurrency`` are out."""
        draft = self.draft
        limit = draft.graph.steps[step_id].concurrency
        while draft.status is ExecutionStatus.RUNNING:
            step = draft.steps[step_id]
            progress = step.items
            if step.status is not StepStatus.RUNNING or progress is None:
                return
            if progress.failure is not None or progress.active >= limit:
                return
            index = progress.next
            while index < progress.total and self.item(step_id, index).status is not (
                ItemStatus.PENDING
            ):
                index += 1
            if index >= progress.total:
                return
            self.queue_item(step_id, index)

    def queue_item(self, step_id: str, index: int) -> None:
        """Start one item the way its step's kind says: a job, or a child execution."""
        match self.draft.graph.steps[step_id].kind:
            case StepKind.JOB:
                self.queue_item_job(step_id, index)
            case StepKind.SUB_WORKFLOW:
                self.queue_item_child(step_id, index)
            case _:
                raise NotImplementedError

    def queue_item_child(self, step_id: str, index: int) -> None:
        """Start the child execution of one item (queued until the child exists)."""
        draft = self.draft
        item = self.item(step_id, index)
        sub = draft.graph.steps[step_id].sub_workflow
        assert sub is not None
        if draft.state.depth >= MAX_DEPTH:
            self.item_failed(step_id, item, depth_error(draft.state.depth), None, 1)
            return
        rendered = draft.child_input(step_id, item)
        if isinstance(rendered, StepError):
            self.item_failed(step_id, item, rendered, None, 1)
            return
        attempt = item.attempt + 1
        self.put(step_id, queued(item, attempt, None))
        self.set_progress(step_id, next=index + 1)
        draft.effects.append(StartChild(step_id, attempt, sub.blueprint_id, rendered, index))
        data = {"index": index, "attempt": attempt, "blueprint_id": sub.blueprint_id}
        draft.event("item_queued", step_id, data)

    def queue_item_job(self, step_id: str, index: int) -> None:
        draft = self.draft
        item = self.item(step_id, index)
        context = {**draft.context(step_id), "item": item.value, "item_index": index}
        message = None
        try:
            payload = draft.graph.payloads[step_id](context)
            encoded = msgspec.json.encode(payload)
        except TemplateError as exc:
            message = f"cannot resolve {{{{{exc.path}}}}}"
        except RecursionError:
            message = "the rendered payload is nested too deeply"
        else:
            if len(encoded) > MAX_PAYLOAD_BYTES:
                message = f"the rendered payload is over {MAX_PAYLOAD_BYTES} bytes"
        if message is not None:
            self.item_failed(step_id, item, StepError("template_error", message), None, 1)
            return
        attempt = item.attempt + 1
        self.put(step_id, queued(item, attempt, None))
        self.set_progress(step_id, next=index + 1)
        draft.effects.append(QueueJob(step_id, attempt, msgspec.Raw(encoded), index))
        draft.event("item_queued", step_id, {"index": index, "attempt": attempt})

    # ------------------------------------------------------------------ item results

    def current(self, step_id: str, index: int | None, attempt: int) -> ItemState | None:
        """The item a job message is about, if that job is still its current one."""
        step = self.draft.steps.get(step_id)
        if step is None or step.items is None or step.status is not StepStatus.RUNNING:
            return None
        if index is None or not 0 <= index < step.items.total:
            return None
        item = self.item(step_id, index)
        return item if item.attempt == attempt and item.status in ITEM_ACTIVE else None

    def job_started(self, message: JobStarted) -> None:
        item = self.current(message.step_id, message.item_index, message.attempt)
        if item is None or item.status is not ItemStatus.QUEUED:
            return
        started = replace(item, status=ItemStatus.RUNNING, started_at=self.draft.now)
        self.put(message.step_id, replace(started, job_id=message.job_id))
        data = {"index": item.index, "job_id": message.job_id}
        self.draft.event("item_started", message.step_id, data)

    def child_item(self, step_id: str, index: int | None, attempt: int) -> ItemState | None:
        """The item a child message is about, if that child is still its current one."""
        spec = self.draft.graph.steps.get(step_id)
        if spec is None or spec.kind is not StepKind.SUB_WORKFLOW:
            return None
        return self.current(step_id, index, attempt)

    def child_started(self, message: ChildStarted) -> None:
        step_id, child_id = message.step_id, message.child_execution_id
        item = self.child_item(step_id, message.item_index, message.attempt)
        if item is None or item.child_execution_id == child_id:
            return  # a superseded item attempt, or a start told again
        started = replace(
            item,
            status=ItemStatus.RUNNING,
            started_at=item.started_at or self.draft.now,
            child_execution_id=child_id,
        )
        self.put(step_id, started)
        data = {"index": item.index, "child_execution_id": child_id}
        self.draft.event("item_started", step_id, data)

    def child_finished(self, message: ChildFinished) -> None:
        step_id, child_id = message.step_id, message.child_execution_id
        item = self.child_item(step_id, message.item_index, message.attempt)
        if item is None:
            return  # a superseded item attempt (withdrawn, overridden, cancelled)
        if child_id is not None:
            self.child_started(ChildStarted(step_id, message.attempt, child_id, item.index))
            item = self.item(step_id, item.index)
        if message.status == ExecutionStatus.COMPLETED:
            self.put(step_id, completed(item, message.output, self.draft.now))
            data = {"index": item.index, "child_execution_id": child_id, "output": message.output}
            self.draft.event("item_completed", step_id, data)
        else:
            error = child_failure(child_id, message.status, message.error)
            self.item_failed(step_id, item, error, None, message.attempt, child_id)
        self.fill(step_id)
        self.conclude(step_id)
        self.draft.schedule()

    def job_finished(self, message: JobFinished) -> None:
        step_id = message.step_id
        item = self.current(step_id, message.item_index, message.attempt)
        if item is None:
            return  # a superseded attempt (withdrawn or overridden): changes nothing
        if message.outcome == "completed":
            self.put(step_id, completed(item, message.output, self.draft.now))
            data = {"index": item.index, "job_id": message.job_id, "output": message.output}
            self.draft.event("item_completed", step_id, data)
        else:
            code = "job_cancelled" if message.outcome == "cancelled" else "job_failed"
            error = StepError(code, message.error or code)
            self.item_failed(step_id, item, error, message.job_id, message.attempts)
        self.fill(step_id)
        self.conclude(step_id)
        self.draft.schedule()

    def item_failed(
        self,
        step_id: str,
        item: ItemState,
        error: StepError,
        job_id: str | None,
        attempts: int,
        child_id: str | None = None,
    ) -> None:
        """An item failed for good: the items not yet started are withdrawn, and the step
        fails once its running items have finished."""
        draft = self.draft
        failed = replace(item, status=ItemStatus.FAILED, error=error, completed_at=draft.now)
        self.put(step_id, failed)
        data = {
            "index": item.index,
            "job_id": job_id,
            "attempts": attempts,
            "error": msgspec.to_builtins(error),
        }
        if child_id is not None:
            data["child_execution_id"] = child_id
        draft.event("item_failed", step_id, data)
        if self.progress(step_id).failure is None:
            failure = item_failure(step_id, failed, job_id, attempts)
            self.set_progress(step_id, failure=failure)
        self.withdraw(step_id, running=False)

    # ------------------------------------------------------------------ withdrawals, endings

    def withdraw(self, step_id: str, *, running: bool) -> None:
        """Withdraw the items not yet started (and the running ones too when ``running``)."""
        draft = self.draft
        progress = self.progress(step_id)
        if not pending(progress) and not progress.queued and not (running and progress.running):
            return
        count = 0
        for index in range(progress.total):
            item = self.item(step_id, index)
            if not withdrawn(item, running):
                continue
            if item.status in ITEM_ACTIVE and self.runs_children(step_id):
                self.withdraw_child(step_id, item)
            elif item.status in ITEM_ACTIVE:
                if item.job_id is not None:
                    draft.effects.append(WithdrawJob(step_id, item.job_id, index))
                else:  # queued in this very transition: its job is not created at all
                    draft.effects = [
                        e
                        for e in draft.effects
                        if not (
                            isinstance(e, QueueJob)
                            and e.step_id == step_id
                            and e.item_index == index
                        )
                    ]
            self.put(step_id, cancelled(item, draft.now))
            count += 1
        draft.event("items_withdrawn", step_id, {"count": count, "running": running})

    def runs_children(self, step_id: str) -> bool:
        return self.draft.graph.steps[step_id].kind is StepKind.SUB_WORKFLOW

    def withdraw_child(self, step_id: str, item: ItemState) -> None:
        """Cancel an item's child; one whose start is still among this transition's effects
        is never started at all."""
        draft = self.draft
        start = StartChild(step_id, item.attempt, "", {}, item.index)
        kept = [e for e in draft.effects if not _same_start(e, start)]
        if len(kept) < len(draft.effects):
            draft.effects = kept
            return
        cancel = CancelChild(step_id, item.attempt, item.child_execution_id, item.index)
        draft.effects.append(cancel)

    def cancel_children(self) -> None:
        """A cancelled execution cancels the running children of its for_each steps too."""
        for step_id in self.draft.graph.order:
            step = self.draft.steps[step_id]
            running = step.items is not None and step.status is StepStatus.RUNNING
            if running and self.runs_children(step_id):
                self.withdraw(step_id, running=True)
                self.conclude(step_id)

    def withdraw_live(self) -> None:
        """Cancel and deadline: every running map withdraws what has not started."""
        for step_id in self.draft.graph.order:
            step = self.draft.steps[step_id]
            if step.items is not None and step.status is StepStatus.RUNNING:
                self.withdraw(step_id, running=False)
                self.conclude(step_id)

    def fill_all(self) -> None:
        """A running execution starts items wherever a map has room (after a pause)."""
        for step_id in self.draft.graph.order:
            step = self.draft.steps[step_id]
            if step.items is not None and step.status is StepStatus.RUNNING:
                self.fill(step_id)
                self.conclude(step_id)

    def conclude(self, step_id: str) -> None:
        """A map with nothing out ends: failed by its first item failure, completed with
        every output in item order, or cancelled when items were withdrawn."""
        draft = self.draft
        step = draft.steps[step_id]
        progress = step.items
        if step.status is not StepStatus.RUNNING or progress is None or progress.active:
            return
        failure = progress.failure
        if failure is not None:
            error = StepError(failure.code, failure.error)
            draft.fail(step_id, error, failure.job_id, failure.attempt, failure.item_index)
        elif progress.completed == progress.total:
            output = [self.item(step_id, i).output for i in range(progress.total)]
            draft.set_step(
                step_id,
                status=StepStatus.COMPLETED,
                output=output,
                error=None,
                completed_at=draft.now,
            )
            draft.event("step_completed", step_id, {"job_id": None, "output": output})
        elif not pending(progress):
            draft.set_step(step_id, status=StepStatus.CANCELLED, completed_at=draft.now)
            draft.event("step_cancelled", step_id, {"job_id": None})


def _same_start(effect: Effect, start: StartChild) -> bool:
    """Whether ``effect`` starts the child of the item attempt ``start`` names."""
    return (
        isinstance(effect, StartChild)
        and effect.step_id == start.step_id
        and effect.item_index == start.item_index
        and effect.attempt == start.attempt
    )
