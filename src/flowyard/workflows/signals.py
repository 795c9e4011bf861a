"""Signals and the steps that wait for them (DESIGN §8): limits and the pure choices.

A signal completes the oldest step waiting for its name; one that finds no such step is
kept, in arrival order, for the next step that waits for that name.
"""

from collections.abc import Iterable, Mapping

from flowyard.workflows.state import BufferedSignal, StepState, StepStatus

MAX_DATA_BYTES = 256 * 1024
"""The largest signal ``data``, as JSON."""
MAX_BUFFERED = 1000
"""Unconsumed signals one execution keeps; a signal past it is refused (409)."""
SIGNAL_TIMEOUT = "signal_timeout"
"""The error code of a step whose ``timeout_sec`` passed."""


def oldest_waiting(steps: Mapping[str, StepState], order: Iterable[str], name: str) -> str | None:
    """The step that a signal called ``name`` completes: of the steps waiting for it, the one
    waiting since the earliest time, ties in blueprint order; None when none waits."""
    waiting = [
        (steps[sid].started_at or 0, index, sid)
        for index, sid in enumerate(order)
        if steps[sid].status is StepStatus.WAITING and steps[sid].signal == name
    ]
    return min(waiting)[2] if waiting else None


def first_kept(signals: Iterable[BufferedSignal], name: str) -> BufferedSignal | None:
    """The oldest kept signal called ``name``, or None."""
    return next((s for s in signals if s.name == name), None)


def without(signals: list[BufferedSignal], signal_id: str) -> list[BufferedSignal]:
    """The kept signals less the one taken."""
    return [s for s in signals if s.id != signal_id]
