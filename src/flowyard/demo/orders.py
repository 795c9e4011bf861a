"""The demo's blueprint and its orders: which ones ship, and which ones the carrier refuses.

Every fourth order ships to a P.O. box, which the demo carrier refuses: its ``ship`` step
fails for good, ``refund`` gives the money back, and the execution ends ``compensated``. The
others end ``completed``. The rule depends on the order alone, so a run's outcome is known in
advance and ``flowyard demo --exit`` can check it.
"""

import secrets
from typing import Any

from flowyard.workflows.state import ExecutionStatus

BLUEPRINT_NAME = "order-fulfillment"
BLUEPRINT_DESCRIPTION = (
    "Charge the card and reserve the stock in parallel, then ship; "
    "when the carrier refuses the parcel, refund the charge. (flowyard demo, v1)"
)
"""Also how a later run recognises the blueprint an earlier one created (they are immutable:
a changed blueprint gets a new description, hence a new blueprint)."""

REFUSED_ADDRESS = "P.O. Box 42, Springfield"
FAILING_EVERY = 4
_ADDRESSES = (
    "12 Harbour Road, Portsmouth",
    "5 Rue des Lilas, Lyon",
    "221B Baker Street, London",
    "Kastanienallee 7, Berlin",
)
_SKUS = ("mug-blue", "tee-large", "notebook-a5", "poster-yard")


def _pull(queue: str) -> dict[str, Any]:
    return {"trigger": {"type": "pull", "queue": queue}, "max_attempts": 3}


BLUEPRINT: dict[str, Any] = {
    "name": BLUEPRINT_NAME,
    "description": BLUEPRINT_DESCRIPTION,
    "steps": [
        {
            "id": "charge",
            "job_trigger": _pull("payments"),
            "payload_template": {
                "order_id": "{{input.order_id}}",
                "amount_cents": "{{input.amount_cents}}",
            },
        },
        {
            "id": "reserve",
            "job_trigger": _pull("inventory"),
            "payload_template": {
                "order_id": "{{input.order_id}}",
                "sku": "{{input.sku}}",
                "quantity": "{{input.quantity}}",
            },
        },
        {
            "id": "ship",
            "depends_on": ["charge", "reserve"],
            "catch": "refund",
            "job_trigger": _pull("shipping"),
            "payload_template": {
                "order_id": "{{input.order_id}}",
                "address": "{{input.address}}",
                "charge_id": "{{steps.charge.output.charge_id}}",
                "reservation_id": "{{steps.reserve.output.reservation_id}}",
            },
        },
        {
            "id": "refund",
            "job_trigger": _pull("refunds"),
            "payload_template": {
                "order_id": "{{input.order_id}}",
                "charge_id": "{{steps.charge.output.charge_id}}",
                "amount_cents": "{{input.amount_cents}}",
                "reason": "{{failure.error}}",
            },
        },
    ],
}
"""``charge`` and ``reserve`` run in parallel, ``ship`` waits for both, ``refund`` catches
``ship``'s failure with the charge to give back and the carrier's reason."""


def new_run_id() -> str:
    """A short random id that keeps this run's order ids and idempotency keys its own."""
    return secrets.token_hex(3)


def order_id(run_id: str, number: int) -> str:
    return f"ord-{run_id}-{number:03d}"


def idempotency_key(run_id: str, number: int) -> str:
    return f"demo-{order_id(run_id, number)}"


def refused(number: int) -> bool:
    """Whether order ``number`` (from 1) ships to an address the carrier refuses."""
    return number % FAILING_EVERY == 0


def order(run_id: str, number: int) -> dict[str, Any]:
    """The ``input_data`` of order ``number`` (from 1) of run ``run_id``."""
    address = REFUSED_ADDRESS if refused(number) else _ADDRESSES[number % len(_ADDRESSES)]
    return {
        "order_id": order_id(run_id, number),
        "amount_cents": 1500 + 250 * (number % 7),
        "sku": _SKUS[number % len(_SKUS)],
        "quantity": 1 + number % 3,
        "address": address,
    }


def planned(number: int) -> ExecutionStatus:
    """How order ``number``'s execution should end."""
    return ExecutionStatus.COMPENSATED if refused(number) else ExecutionStatus.COMPLETED
