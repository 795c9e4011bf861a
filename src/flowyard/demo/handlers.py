"""The demo's pull workers: a payment service, a warehouse and a carrier, played by handlers
that answer what such services would, after a short pause (so that runs can be watched)."""

import hashlib
from typing import Any

import anyio

from flowyard.client.models import ClaimedJob
from flowyard.worker import PermanentError, Worker


class CarrierRefused(PermanentError):
    """The carrier will not deliver there: retrying cannot help, so the step fails at once."""


def _fields(job: ClaimedJob) -> dict[str, Any]:
    """The payload as a dict (orders triggered by hand from the dashboard may lack fields)."""
    return job.payload if isinstance(job.payload, dict) else {}


def _reference(prefix: str, *parts: object) -> str:
    """A stable id for this order's charge, reservation, parcel or refund."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    return f"{prefix}{digest[:14]}"


async def _work(job: ClaimedJob) -> None:
    """Between 50 and 340 ms, the same for the same job."""
    await anyio.sleep(0.05 + int(job.id[-4:], 36) % 30 / 100)


async def charge(job: ClaimedJob) -> dict[str, Any]:
    """``payments``: capture the order's amount."""
    order = _fields(job)
    await _work(job)
    return {
        "charge_id": _reference("ch_", "charge", order.get("order_id"), job.id),
        "amount_cents": order.get("amount_cents"),
        "status": "captured",
    }


async def reserve(job: ClaimedJob) -> dict[str, Any]:
    """``inventory``: hold the stock until the parcel leaves."""
    order = _fields(job)
    await _work(job)
    return {
        "reservation_id": _reference("res_", "reserve", order.get("order_id"), job.id),
        "sku": order.get("sku"),
        "quantity": order.get("quantity"),
        "warehouse": "north",
    }


async def ship(job: ClaimedJob) -> dict[str, Any]:
    """``shipping``: hand the parcel to the carrier, which refuses P.O. boxes."""
    order = _fields(job)
    address = str(order.get("address", ""))
    await _work(job)
    if "p.o. box" in address.lower():
        raise CarrierRefused(f"carrier refused the address {address!r}: no delivery to P.O. boxes")
    return {
        "tracking_number": _reference("PW", "ship", order.get("order_id"), job.id).upper(),
        "carrier": "Parcelwise",
        "charge_id": order.get("charge_id"),
    }


async def refund(job: ClaimedJob) -> dict[str, Any]:
    """``refunds``: give the charge back, quoting why the order could not ship."""
    order = _fields(job)
    await _work(job)
    return {
        "refund_id": _reference("re_", "refund", order.get("charge_id"), job.id),
        "charge_id": order.get("charge_id"),
        "amount_cents": order.get("amount_cents"),
        "reason": order.get("reason"),
    }


def demo_worker(url: str, api_key: str) -> Worker:
    """A worker for the four queues of the demo blueprint."""
    worker = Worker(url, api_key=api_key, concurrency=16, wait_seconds=1)
    for queue, handler in (
        ("payments", charge),
        ("inventory", reserve),
        ("shipping", ship),
        ("refunds", refund),
    ):
        worker.add_handler(queue, handler)
    return worker
