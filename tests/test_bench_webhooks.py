"""``bench.webhooks``: its receiver, the figures it draws from the records, and a small real run.

The figures themselves are the benchmark's business (run ``python -m bench.webhooks``); here
only that the receiver records what reaches it and that the checks count what they say.
"""

import hashlib
import hmac
from typing import Any

import httpx
import orjson
import pytest
from bench import webhooks
from bench.webhook_figures import delivery_figures, signature_ok

SECRET = "s" * 32


def signed(event: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """A delivery as DESIGN §7 describes it: body and headers."""
    body = orjson.dumps(event)
    mac = hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-flowyard-event-id": event["id"],
        "x-flowyard-topic": event["topic"],
        "x-flowyard-delivery-id": "whd_" + event["id"][4:],
        "x-flowyard-signature": f"t=1700000000,v1={mac}",
    }
    return body, headers


def event(n: int, job_id: str, topic: str = "jobs.completed") -> dict[str, Any]:
    data = {"job_id": job_id, "name": None, "run_id": "run_1", "attempt": 1, "result": {}}
    return {
        "id": f"evt_{n}",
        "topic": topic,
        "created_at": "2023-11-14T22:13:20.000Z",  # 1700000000
        "project_id": "proj_1",
        "data": data,
    }


def row(arrival: float, evt: dict[str, Any], secret: str = SECRET) -> list[Any]:
    body, headers = signed(evt, secret)
    return [
        arrival,
        headers["x-flowyard-event-id"],
        headers["x-flowyard-delivery-id"],
        evt["topic"],
        headers["x-flowyard-signature"],
        body.decode(),
    ]


def test_signature_ok_checks_the_hmac_of_timestamp_and_body() -> None:
    body, headers = signed(event(1, "job_a"))
    assert signature_ok(headers["x-flowyard-signature"], body.decode(), SECRET)
    assert not signature_ok(headers["x-flowyard-signature"], body.decode(), "t" * 32)
    assert not signature_ok(headers["x-flowyard-signature"], body.decode() + " ", SECRET)
    assert not signature_ok("v1=00", body.decode(), SECRET)


def test_delivery_figures_count_missing_duplicate_extra_and_unexpected_events() -> None:
    rows = [
        row(1_700_000_000.010, event(1, "job_a")),
        row(1_700_000_000.500, event(1, "job_a")),  # the same event again: a duplicate
        row(1_700_000_000.020, event(2, "job_b")),
        row(1_700_000_000.030, event(3, "job_b")),  # a second event for job_b
        row(1_700_000_000.040, event(4, "job_x")),  # a job that did not complete
        row(1_700_000_000.050, event(5, "job_c", "jobs.failed")),
        row(1_700_000_000.060, event(6, "job_d"), secret="t" * 32),
    ]
    completed = {"job_a", "job_b", "job_d", "job_e"}
    figures = delivery_figures(rows, completed, SECRET, 1_699_999_999.0, 1_700_000_000.025)
    assert figures["deliveries"] == 7
    assert figures["events"] == 6
    assert figures["duplicates"] == 1
    assert figures["missing"] == 1  # job_e
    assert figures["extra_events"] == 1
    assert figures["unexpected_events"] == 2  # job_x, and the jobs.failed event
    assert figures["other_topics"] == {"jobs.failed": 1}
    assert figures["bad_signatures"] == 1
    assert figures["events_by_last_ack"] == 2
    assert figures["latency_p50_ms"] == 30.0  # first arrivals only: 10, 20, 30, 40, 50, 60
    assert figures["events_per_s"] == round(6 / 1.06, 1)
    assert figures["id_mismatch"] == figures["unreadable"] == 0


def test_the_receiver_records_each_delivery_and_answers_200() -> None:
    with webhooks.running_receiver() as receiver, httpx.Client(base_url=receiver.url) as client:
        for evt in (event(1, "job_a"), event(1, "job_a"), event(2, "job_b")):
            body, headers = signed(evt)
            assert client.post("/hook", content=body, headers=headers).status_code == 200
        assert receiver.count() == {
            "requests": 3,
            "events": 2,
            "topics": {"jobs.completed": 2},
        }
        rows = receiver.take()
        assert receiver.take() == []
        assert receiver.cpu_seconds() >= 0
    figures = delivery_figures(rows, {"job_a", "job_b"}, SECRET, 0.0, 0.0)
    assert (figures["events"], figures["duplicates"], figures["missing"]) == (2, 1, 0)
    assert figures["bad_signatures"] == 0


def test_a_small_run_on_a_real_server_prints_one_line_of_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = webhooks.main(["--jobs", "200", "--workers", "1", "--lanes", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    result: dict[str, Any] = orjson.loads(lines[0])
    assert code == 0
    assert result["without_webhook"][0]["jobs_acked"] == 200
    assert result["jobs_per_s_without"] > 0
    if result["webhooks"] == "unavailable":  # a server without /infra/webhooks
        assert result["with_webhook"] == []
        return
    assert result["webhooks"] == "available"
    phase_b = result["with_webhook"][0]
    assert phase_b["jobs_completed"] == phase_b["events"] == 200
    assert result["missing"] == result["bad_signatures"] == 0
    assert result["jobs_per_s_ratio"] > 0
