"""What the webhook receiver's records say: missing, duplicate and badly signed deliveries, latency.

Pure functions over the receiver's rows (see ``bench.webhook_receiver``) and the ids of the
jobs the server completed, so that they can be checked without a server.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from bench.common import summary_ms

Row = Sequence[Any]
"""One delivery as the receiver kept it: arrival, event id, delivery id, topic, signature, body."""

COMPLETED = "jobs.completed"


def signature_ok(header: str, body: str, secret: str) -> bool:
    """``X-Flowyard-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` (DESIGN §7)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in parts or "v1" not in parts:
        return False
    expected = hmac.new(
        secret.encode(), f"{parts['t']}.{body}".encode(), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def unix_seconds(timestamp: str) -> float:
    """An RFC 3339 UTC timestamp (``2026-11-23T10:00:00.000Z``) as unix seconds."""
    return datetime.fromisoformat(timestamp).timestamp()


def delivery_figures(
    rows: Iterable[Row],
    completed_job_ids: set[str],
    secret: str,
    first_send: float,
    last_ack: float,
) -> dict[str, Any]:
    """Compare what reached the receiver with the jobs the server completed.

    Each completed job must have exactly one ``jobs.completed`` event (delivered at least
    once: a second delivery of the same event id is a duplicate, a second event for the same
    job is an extra event). Latency runs from the event's ``created_at`` (milliseconds) to
    the first arrival of that event; ``events_per_s`` counts events over the same start as
    jobs/s (the first create sent) up to the last first arrival.
    """
    deliveries = 0
    first_arrival: dict[str, float] = {}
    latencies: list[float] = []
    job_events: Counter[str] = Counter()
    other_topics: Counter[str] = Counter()
    bad_signatures = unreadable = id_mismatch = 0
    for arrival, event_id, _delivery_id, topic, signature, body in rows:
        deliveries += 1
        if not signature_ok(signature, body, secret):
            bad_signatures += 1
        try:
            event = orjson.loads(body)
            created_at = unix_seconds(event["created_at"])
            body_topic, data = event["topic"], event["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            unreadable += 1
            continue
        if event.get("id") != event_id or body_topic != topic:
            id_mismatch += 1
        if event_id in first_arrival:
            first_arrival[event_id] = min(first_arrival[event_id], arrival)
            continue
        first_arrival[event_id] = arrival
        latencies.append(arrival - created_at)
        if topic == COMPLETED and isinstance(data, dict):
            job_events[str(data.get("job_id"))] += 1
        else:
            other_topics[topic] += 1
    events = len(first_arrival)
    last = max(first_arrival.values(), default=0.0)
    delivered_jobs = set(job_events)
    lat = summary_ms(latencies)
    window = last - first_send
    return {
        "deliveries": deliveries,
        "events": events,
        "events_per_s": round(events / window, 1) if events and window > 0 else None,
        "events_by_last_ack": sum(1 for at in first_arrival.values() if at <= last_ack),
        "last_delivery_after_last_ack_s": round(last - last_ack, 3) if events else None,
        "latency_p50_ms": lat["p50"],
        "latency_p99_ms": lat["p99"],
        "latency_max_ms": lat["max"],
        "latency_negative": sum(1 for x in latencies if x < 0),
        "missing": len(completed_job_ids - delivered_jobs),
        "duplicates": deliveries - unreadable - events,
        "extra_events": sum(count - 1 for count in job_events.values()),
        "unexpected_events": len(delivered_jobs - completed_job_ids) + sum(other_topics.values()),
        "other_topics": dict(other_topics),
        "bad_signatures": bad_signatures,
        "unreadable": unreadable,
        "id_mismatch": id_mismatch,
    }
