"""What became of the demo's orders: a progress line as each execution ends, and a verdict."""

from collections import Counter
from dataclasses import dataclass

from flowyard.client.models import Execution
from flowyard.workflows.state import LIVE, ExecutionStatus

_SHOWN = sorted(ExecutionStatus, key=lambda status: status in LIVE)
"""Ended statuses first, in their declared order, then running and paused."""


@dataclass(frozen=True)
class Order:
    """One triggered order: its execution and how it should end."""

    order_id: str
    execution_id: str
    planned: ExecutionStatus


class Tally:
    """The orders of one run and the last status seen of each."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.status: dict[str, ExecutionStatus] = {}
        self.errors: dict[str, str] = {}

    def add(self, order: Order) -> None:
        self.orders[order.execution_id] = order
        self.status[order.execution_id] = ExecutionStatus.RUNNING

    @property
    def open(self) -> set[str]:
        """Executions still running or paused."""
        return {eid for eid, status in self.status.items() if status in LIVE}

    @property
    def done(self) -> bool:
        return not self.open

    def record(self, execution: Execution) -> str | None:
        """Note ``execution``'s status; a progress line if it has just ended."""
        was = self.status.get(execution.id)
        if was is None:  # not one of ours
            return None
        self.status[execution.id] = execution.status
        if execution.error is not None:
            self.errors[execution.id] = f"{execution.error.code}: {execution.error.message}"
        if was not in LIVE or execution.status in LIVE:
            return None
        ended = len(self.orders) - len(self.open)
        width = len(str(len(self.orders)))
        order = self.orders[execution.id]
        return (
            f"[{ended:>{width}}/{len(self.orders)}] {order.order_id} {execution.id} "
            f"{execution.status:<11} ({self.counts()})"
        )

    def counts(self) -> str:
        """E.g. ``completed 6, compensated 2, running 12``."""
        counted = Counter(self.status.values())
        return ", ".join(f"{status} {counted[status]}" for status in _SHOWN if counted[status])

    def unplanned(self) -> list[Order]:
        """The orders that ended otherwise than planned, or have not ended."""
        return [o for eid, o in self.orders.items() if self.status[eid] != o.planned]

    def verdict(self) -> list[str]:
        """The closing lines: the counts, then every order that did not go as planned."""
        wrong = self.unplanned()
        if not wrong:
            return [f"all {len(self.orders)} orders ended as planned: {self.counts()}"]
        lines = [
            f"{len(wrong)} of {len(self.orders)} orders did not end as planned: {self.counts()}"
        ]
        for order in wrong:
            status = self.status[order.execution_id]
            error = self.errors.get(order.execution_id, "")
            lines.append(
                f"  {order.order_id} {order.execution_id}: {status}, planned {order.planned}"
                + (f" ({error})" if error else "")
            )
        return lines
