"""``client.workflows``: blueprints, executions, their events and controls."""

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from flowyard.client.core import Call, Runner, Wait, query, returns, returns_page, segment
from flowyard.client.models import (
    UNSET,
    Blueprint,
    BlueprintSummary,
    Body,
    Cancelled,
    Event,
    Execution,
    ExecutionStatusName,
    Page,
    Paused,
    Resumed,
    Signalled,
    StepItem,
    Triggered,
)
from flowyard.client.namespace import Mode, Namespace, endpoint, paginate, poll
from flowyard.client.schedules import Schedules
from flowyard.http.api_types import SignalSent
from flowyard.workflows.blueprint import BlueprintSpec
from flowyard.workflows.state import LIVE

POLL_INTERVAL = 0.5
"""Seconds between two reads of an execution while waiting for its end."""


class Workflows(Namespace[Mode]):
    """``/infra/workflows``: blueprints, executions, their events and controls; ``schedules``
    (``/infra/workflows/schedules``)."""

    def __init__(self, runner: Runner) -> None:
        super().__init__(runner)
        self.schedules: Schedules[Mode] = Schedules(runner)

    @endpoint
    def create_blueprint(self, blueprint: BlueprintSpec | Body) -> Call[Blueprint]:
        """Create a blueprint (validated: 400 lists every problem)."""
        path = "/infra/workflows/blueprints"
        return Call("POST", path, returns(Blueprint), body=blueprint)

    @endpoint
    def get_blueprint(self, blueprint_id: str) -> Call[Blueprint]:
        """One blueprint."""
        path = f"/infra/workflows/blueprints/{segment(blueprint_id)}"
        return Call("GET", path, returns(Blueprint))

    @endpoint
    def archive_blueprint(self, blueprint_id: str) -> Call[Blueprint]:
        """Archive a blueprint: it leaves lists and cannot be triggered (409); its executions
        run on. Archiving it again answers the same."""
        path = f"/infra/workflows/blueprints/{segment(blueprint_id)}"
        return Call("DELETE", path, returns(Blueprint))

    @endpoint
    def list_blueprints(
        self,
        *,
        name: str | None = None,
        archived: bool = False,
        limit: int = 25,
        cursor: str | None = None,
    ) -> Call[Page[BlueprintSummary]]:
        """One page of blueprints, newest first: those named exactly ``name`` when given, and
        archived ones too with ``archived=True``."""
        params = query(name=name, archived="true" if archived else None, limit=limit, cursor=cursor)
        parse = returns_page("blueprints", BlueprintSummary)
        return Call("GET", "/infra/workflows/blueprints", parse, params)

    iter_blueprints = paginate(list_blueprints)
    """Every blueprint that matches, newest first."""

    @endpoint
    def trigger(
        self,
        blueprint_id: str,
        input_data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Call[Triggered]:
        """Start an execution; with an ``idempotency_key`` already used, the first one
        (``replayed=True``; 409 if ``input_data`` differs)."""
        body = {"input_data": input_data or {}, "idempotency_key": idempotency_key}
        path = f"/infra/workflows/blueprints/{segment(blueprint_id)}/trigger"
        return Call("POST", path, _triggered, body=body)

    @endpoint
    def get_execution(self, execution_id: str) -> Call[Execution]:
        """One execution with its steps."""
        path = f"/infra/workflows/executions/{segment(execution_id)}"
        return Call("GET", path, returns(Execution))

    @poll
    def wait_for_execution(
        self, execution_id: str, *, timeout: float | None = 60.0, interval: float = POLL_INTERVAL
    ) -> Wait[Execution]:
        """The execution once it has ended: ``completed``, ``failed``, ``compensated`` or
        ``cancelled`` (a ``paused`` one is waited for, since it may resume).

        It is read every ``interval`` seconds (default 0.5); after ``timeout`` seconds (None:
        no limit) :class:`~flowyard.client.WaitTimeout` is raised, its ``last`` the execution
        as last read.
        """
        path = f"/infra/workflows/executions/{segment(execution_id)}"
        call = Call("GET", path, returns(Execution))
        what = f"execution {execution_id} had not ended"
        return Wait(call, _ended, timeout, interval, what)

    @endpoint
    def list_executions(
        self,
        *,
        blueprint_id: str | None = None,
        status: ExecutionStatusName | None = None,
        parent_execution_id: str | None = None,
        limit: int = 25,
        cursor: str | None = None,
    ) -> Call[Page[Execution]]:
        """One page of executions, newest first (``parent_execution_id``: only the children
        that execution's sub_workflow steps started)."""
        params = query(
            blueprint_id=blueprint_id,
            status=status,
            parent_execution_id=parent_execution_id,
            limit=limit,
            cursor=cursor,
        )
        parse = returns_page("executions", Execution)
        return Call("GET", "/infra/workflows/executions", parse, params)

    iter_executions = paginate(list_executions)
    """Every execution that matches, newest first."""

    @endpoint
    def events(
        self, execution_id: str, *, limit: int = 25, cursor: str | None = None
    ) -> Call[Page[Event]]:
        """One page of an execution's event log, oldest first."""
        path = f"/infra/workflows/executions/{segment(execution_id)}/events"
        return Call("GET", path, returns_page("events", Event), query(limit=limit, cursor=cursor))

    iter_events = paginate(events)
    """Every event of an execution, oldest first."""

    @endpoint
    def items(
        self, execution_id: str, step_id: str, *, limit: int = 25, cursor: str | None = None
    ) -> Call[Page[StepItem]]:
        """One page of a for_each step's items, in item order (a step without for_each has
        none)."""
        path = f"/infra/workflows/executions/{segment(execution_id)}/steps/{segment(step_id)}/items"
        return Call("GET", path, returns_page("items", StepItem), query(limit=limit, cursor=cursor))

    iter_items = paginate(items)
    """Every item of a for_each step, in item order."""

    @endpoint
    def cancel(self, execution_id: str) -> Call[Cancelled]:
        """Cancel a running, paused or failed execution."""
        path = f"/infra/workflows/executions/{segment(execution_id)}/cancel"
        return Call("POST", path, returns(Cancelled))

    @endpoint
    def pause(self, execution_id: str) -> Call[Paused]:
        """Pause a running execution: nothing new is queued until it is resumed."""
        path = f"/infra/workflows/executions/{segment(execution_id)}/pause"
        return Call("POST", path, returns(Paused))

    @endpoint
    def resume(
        self,
        execution_id: str,
        step_id: str | None = None,
        override_output: Any = UNSET,
        reason: str | None = None,
    ) -> Call[Resumed]:
        """Resume: the whole execution, one step again (``step_id``), or complete a step by
        hand (``step_id`` with ``override_output``, which may be None)."""
        body: dict[str, Any] = {"step_id": step_id, "reason": reason}
        if override_output is not UNSET:
            body["override_output"] = override_output
        path = f"/infra/workflows/executions/{segment(execution_id)}/resume"
        return Call("POST", path, returns(Resumed), body=body)

    @endpoint
    def signal(
        self,
        execution_id: str,
        name: str,
        data: Any = None,
        idempotency_key: str | None = None,
    ) -> Call[Signalled]:
        """Send a signal: it completes the oldest step waiting for ``name`` with ``data`` as
        its output, or is kept for the next one (``consumed_by`` None). The same
        ``idempotency_key`` again answers the first answer (``replayed``)."""
        body: dict[str, Any] = {"name": name, "data": data}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        path = f"/infra/workflows/executions/{segment(execution_id)}/signals"
        return Call("POST", path, _signalled, body=body)


def _ended(execution: Execution) -> bool:
    return execution.status not in LIVE


def _triggered(response: httpx.Response) -> Triggered:
    started = returns(Triggered)(response)
    replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
    return msgspec.structs.replace(started, replayed=replayed)


def _signalled(response: httpx.Response) -> Signalled:
    sent = returns(SignalSent)(response)
    replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
    return Signalled(**msgspec.structs.asdict(sent), replayed=replayed)
