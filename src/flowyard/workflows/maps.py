"""``for_each`` steps, the pure parts: blueprint checks, item counts and the replay of items.

An execution keeps only a :class:`MapProgress` per for_each step; its items live in rows of
their own, one written per item transition, so a map of n items costs O(n) writes in all and
the execution's document does not grow with n while the map runs.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from flowyard.workflows.state import (
    Event,
    Failure,
    ItemState,
    ItemStatus,
    MapProgress,
    StepError,
    StepState,
    StepStatus,
)
from flowyard.workflows.templates import ITEM_ROOTS, Placeholder, whole_placeholder

if TYPE_CHECKING:
    from flowyard.workflows.blueprint import Step

replace = msgspec.structs.replace

Items = Mapping[str, Sequence[ItemState]]
"""The items of an execution's for_each steps: step id -> items in index order."""
NO_ITEMS: Items = {}

MAP_EVENTS = frozenset(
    {
        "map_started",
        "item_queued",
        "item_started",
        "item_completed",
        "item_failed",
        "items_withdrawn",
    }
)
"""The events of for_each steps (step-level ones are the usual step events)."""

_COUNTED = {
    ItemStatus.COMPLETED: "completed",
    ItemStatus.FAILED: "failed",
    ItemStatus.RUNNING: "running",
    ItemStatus.QUEUED: "queued",
    ItemStatus.CANCELLED: "cancelled",
}


# ----------------------------------------------------------------------- blueprint checks


def for_each_placeholder(text: str) -> tuple[Placeholder | None, str]:
    """The placeholder of a ``for_each`` value, or None and why it is not one."""
    placeholder = whole_placeholder(text)
    if placeholder is None:
        return (
            None,
            f"for_each must be exactly one placeholder, like '{{{{input.items}}}}': {text!r}",
        )
    if placeholder.root in ITEM_ROOTS:
        return None, f"for_each cannot read {{{{{placeholder.text}}}}}: it is bound per item"
    return placeholder, ""


def item_problems(step: "Step", i: int, found: list[Placeholder]) -> list[dict[str, str]]:
    """What a step's for_each fields and ``{{item*}}`` placeholders get wrong."""
    problems: list[dict[str, str]] = []
    if step.for_each is None:
        field = "sub_workflow.input" if step.sub_workflow is not None else "payload_template"
        for placeholder in found:
            if placeholder.root in ITEM_ROOTS:
                problems.append(
                    {
                        "path": f"$.steps[{i}].{field}{placeholder.location[1:]}",
                        "message": f"{{{{{placeholder.text}}}}}: item and item_index are only"
                        " bound in a for_each step",
                    }
                )
        if step.max_concurrency is not None:
            problems.append(
                {"path": f"$.steps[{i}].max_concurrency", "message": "only a for_each step has it"}
            )
    elif step.wait_for_signal is not None:
        problems.append(
            {
                "path": f"$.steps[{i}].for_each",
                "message": "a wait_for_signal step cannot have for_each",
            }
        )
    return problems


# ----------------------------------------------------------------------- counts


def counted(progress: MapProgress, old: ItemStatus | None, new: ItemStatus) -> MapProgress:
    """``progress`` after one item moved from ``old`` to ``new`` (None: a new item)."""
    if old is new:
        return progress
    changes: dict[str, int] = {}
    if old is not None and old in _COUNTED:
        changes[_COUNTED[old]] = getattr(progress, _COUNTED[old]) - 1
    if new in _COUNTED:
        name = _COUNTED[new]
        changes[name] = changes.get(name, getattr(progress, name)) + 1
    return replace(progress, **changes) if changes else progress


def pending(progress: MapProgress) -> int:
    """Items not yet started in this run."""
    p = progress
    return p.total - p.completed - p.failed - p.cancelled - p.queued - p.running


def item_failure(step_id: str, item: ItemState, job_id: str | None, attempts: int) -> Failure:
    """The failure an item hands to its step (and to ``{{failure.*}}``)."""
    error = item.error or StepError("job_failed", "job_failed")
    return Failure(step_id, error.code, error.message, job_id, max(attempts, 1), item.index)


# ----------------------------------------------------------------------- replay


class ItemReplay:
    """Folds the map events of a log into the steps' counts and the items themselves."""

    def __init__(self, items: dict[str, list[ItemState]]) -> None:
        self.items = items

    def put(self, step: StepState, item: ItemState) -> StepState:
        items = self.items[step.step_id]
        old = items[item.index].status if item.index < len(items) else None
        if item.index < len(items):
            items[item.index] = item
        else:
            items.append(item)
        assert step.items is not None
        return replace(step, items=counted(step.items, old, item.status))

    def apply(self, step: StepState, event: Event) -> StepState:
        """``step`` after one map event (its items updated in place)."""
        data, at, sid = event.data, event.at, step.step_id
        match event.type:
            case "map_started":
                step = replace(
                    step,
                    status=StepStatus.RUNNING,
                    attempt=data["attempt"],
                    job_id=None,
                    error=None,
                    output=None,
                    started_at=at,
                    completed_at=None,
                )
                if not data.get("rerun"):
                    if data["values"]:
                        self.items[sid] = []
                    step = replace(step, items=MapProgress(total=data["total"]))
                    for index, value in enumerate(data["values"]):
                        step = self.put(step, ItemState(index=index, value=value))
                    return step
                for item in list(self.items.get(sid, [])):
                    if item.status in (ItemStatus.FAILED, ItemStatus.CANCELLED):
                        step = self.put(step, rerun(item))
                assert step.items is not None
                return replace(step, items=replace(step.items, next=0, failure=None))
            case "item_queued":
                item = self.items[sid][data["index"]]
                step = self.put(step, queued(item, data["attempt"], data.get("job_id")))
                assert step.items is not None
                return replace(step, items=replace(step.items, next=item.index + 1))
            case "item_started":
                item = self.items[sid][data["index"]]
                started = replace(
                    item,
                    status=ItemStatus.RUNNING,
                    started_at=at,
                    job_id=data.get("job_id") or item.job_id,
                    child_execution_id=data.get("child_execution_id") or item.child_execution_id,
                )
                return self.put(step, started)
            case "item_completed":
                item = self.items[sid][data["index"]]
                child_id = data.get("child_execution_id") or item.child_execution_id
                item = replace(item, child_execution_id=child_id)
                return self.put(step, completed(item, data.get("output"), at))
            case "item_failed":
                item = self.items[sid][data["index"]]
                child_id = data.get("child_execution_id") or item.child_execution_id
                item = replace(item, child_execution_id=child_id)
                error = msgspec.convert(data["error"], StepError)
                failed = replace(item, status=ItemStatus.FAILED, error=error, completed_at=at)
                step = self.put(step, failed)
                assert step.items is not None
                if step.items.failure is None:
                    failure = item_failure(sid, failed, data.get("job_id"), data["attempts"])
                    step = replace(step, items=replace(step.items, failure=failure))
                return step
            case "items_withdrawn":
                for item in list(self.items.get(sid, [])):
                    if withdrawn(item, bool(data.get("running"))):
                        step = self.put(step, cancelled(item, at))
                return step
        raise ValueError(f"unknown map event {event.type!r}")


# ----------------------------------------------------------------------- item changes


def rerun(item: ItemState) -> ItemState:
    """A failed or withdrawn item, pending again for a new run of its step."""
    return replace(item, status=ItemStatus.PENDING, error=None, output=None, completed_at=None)


def queued(item: ItemState, attempt: int, job_id: str | None) -> ItemState:
    """An item whose job was just created (or whose child execution is being started)."""
    return replace(
        item,
        status=ItemStatus.QUEUED,
        attempt=attempt,
        job_id=job_id,
        child_execution_id=None,
        error=None,
        output=None,
        started_at=None,
        completed_at=None,
    )


def completed(item: ItemState, output: Any, at: int) -> ItemState:
    """An item whose job completed with ``output``."""
    return replace(
        item,
        status=ItemStatus.COMPLETED,
        output=output,
        error=None,
        completed_at=at,
        started_at=item.started_at or at,
    )


def cancelled(item: ItemState, at: int) -> ItemState:
    """An item withdrawn before it ran (or, with an override, while it ran)."""
    return replace(item, status=ItemStatus.CANCELLED, completed_at=at)


def withdrawn(item: ItemState, running: bool) -> bool:
    """Whether a withdrawal takes ``item``: not started yet, or running too when ``running``."""
    if item.status in (ItemStatus.PENDING, ItemStatus.QUEUED):
        return True
    return running and item.status is ItemStatus.RUNNING
