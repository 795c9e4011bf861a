"""Push handlers that misbehave: hang, reset, answer garbage, answer without end, or trickle.

Each delivery ends in the documented state (docs/behaviour.md, "Push results"): the job's
status, attempt and error, and one run per attempt with its own error and handler status.
"""

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.conftest import Handler, Service, serve_app
from tests.fault_support import STREAM_CAP, endless, hang, raw_handler, reset
from tests.job_helpers import create_job, list_runs, ms, wait_job
from tests.workflow_support import claim_one, execution, start, step_of, wait_step

Json = dict[str, Any]


def push(url: str, **fields: Any) -> Json:
    return {"trigger": {"type": "immediate"}, "handler": url, **fields}


async def ended(service: Service, job_id: str, status: str) -> tuple[Json, list[Json]]:
    """Wait for the job to reach ``status``; the job and its runs, oldest run first."""
    job = await wait_job(service, job_id, status, timeout=30)
    return job, list(reversed(await list_runs(service, job_id)))


# ------------------------------------------------------------------ no answer, broken answer


async def test_a_handler_that_never_answers_times_out_and_is_retried_after_backoff(
    service_with: Any,
) -> None:
    async with (
        service_with(retry_base_seconds=0.5) as service,
        raw_handler(hang) as silent,
    ):
        job = await create_job(service, **push(f"{silent.url}/h", timeout=1, max_attempts=2))
        failed, runs = await ended(service, job["id"], "failed")
    assert silent.requests == 2
    assert failed["attempt"] == 2
    assert failed["error"].startswith("timeout")
    assert failed["result"] is None
    assert [r["status"] for r in runs] == ["failed", "failed"]
    assert all(r["error"].startswith("timeout") and r["handler_status"] is None for r in runs)
    assert all(r["duration_ms"] >= 900 for r in runs)  # the whole timeout was given
    # Exponential backoff after attempt 1: base * 2^0 = 0.5 s, drawn from its upper half.
    assert ms(runs[1]["started_at"]) - ms(runs[0]["completed_at"]) >= 240


async def test_a_connection_reset_is_a_failed_attempt_and_is_retried(service: Service) -> None:
    async with raw_handler(reset) as rude:
        job = await create_job(service, **push(f"{rude.url}/r", max_attempts=3))
        failed, runs = await ended(service, job["id"], "failed")
    assert rude.requests == 3
    assert failed["attempt"] == 3
    assert failed["error"].startswith("connection_error")
    assert [r["status"] for r in runs] == ["failed"] * 3
    assert all(r["error"].startswith("connection_error") for r in runs)
    assert all(r["handler_status"] is None for r in runs)


async def test_a_handler_host_the_client_cannot_encode_fails_the_attempt(
    service: Service,
) -> None:
    """Refused before any connection is tried (an A-label with no content)."""
    job = await create_job(service, **push("http://xn--/hook", max_attempts=2))
    failed, runs = await ended(service, job["id"], "failed")
    assert failed["attempt"] == 2 and failed["error"].startswith("invalid_url")
    assert all(r["error"].startswith("invalid_url") for r in runs)


# ------------------------------------------------------------------------ odd 2xx bodies

GARBAGE = [
    (b"<html>not json</html>", "<html>not json</html>"),
    (b"ok", "ok"),
    (b"\xff\xfe bad utf-8", "\ufffd\ufffd bad utf-8"),
    (b'{"unterminated": ', '{"unterminated": '),
    (b"[1e999]", "[1e999]"),  # a number no float holds is not JSON Flowyard keeps
    (b'{"a": NaN}', '{"a": NaN}'),
    (b'"\\ud800"', '"\\ud800"'),  # a lone surrogate escape
    (b"\x00\x01", "\x00\x01"),
    (b"", None),
    (b"   \n", None),
    (b'{"a": 1, "a": 2}', {"a": 2}),  # valid JSON is kept as sent (clients read the last)
]


@pytest.mark.parametrize(("body", "result"), GARBAGE, ids=[repr(g[0][:12]) for g in GARBAGE])
async def test_a_2xx_body_that_is_not_json_becomes_a_string_result(
    service: Service, handler: Handler, body: bytes, result: Any
) -> None:
    url = handler.script("/garbage", (200, body, 0))
    job = await create_job(service, **push(url, max_attempts=1))
    done, [run] = await ended(service, job["id"], "completed")
    assert done["result"] == result
    assert done["error"] is None and done["attempt"] == 1
    assert run["status"] == "completed" and run["handler_status"] == 200


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_without_end_fails_the_attempt_without_being_read_whole(
    service: Service, declared: bool
) -> None:
    async with raw_handler(endless(declared=declared)) as flood:
        job = await create_job(service, **push(f"{flood.url}/big", max_attempts=1))
        failed, [run] = await ended(service, job["id"], "failed")
        with anyio.fail_after(20):
            while not flood.sent:
                await anyio.sleep(0.01)
    assert failed["error"].startswith("result_too_large")
    assert failed["result"] is None
    assert run["status"] == "failed" and run["handler_status"] == 200
    assert run["error"].startswith("result_too_large")
    # Flowyard hung up after 256 KiB: the handler could not push more than socket buffers hold.
    assert flood.sent[0] < STREAM_CAP // 4, flood.sent


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"x" * (256 * 1024 + 1), "result_too_large"),
        (b"[" + b"1," * 140_000 + b"1]", "result_too_large"),
        # Under 256 KiB as sent, over it as a JSON string: each byte becomes "\u0001".
        (b"\x01" * 100_000, "result_too_large"),
        # Valid JSON nested deeper than it can be read back.
        (b"[" * 100_000 + b"]" * 100_000, "result_too_deep"),
    ],
    ids=["text", "json", "text-growing-when-quoted", "deep"],
)
async def test_a_result_that_cannot_be_kept_fails_the_attempt(
    service: Service, handler: Handler, body: bytes, error: str
) -> None:
    url = handler.script("/unkeepable", (200, body, 0))
    job = await create_job(service, **push(url, max_attempts=2))
    failed, runs = await ended(service, job["id"], "failed")
    assert failed["attempt"] == 2
    assert failed["error"].startswith(error) and failed["result"] is None
    assert [(r["status"], r["handler_status"]) for r in runs] == [("failed", 200)] * 2
    assert all(r["error"].startswith(error) for r in runs)


# ------------------------------------------------------------------------ slow but in time


async def test_a_slow_answer_within_the_timeout_completes(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/slow", (200, {"slow": True}, 1.0))
    job = await create_job(service, **push(url, timeout=10, max_attempts=1))
    done, [run] = await ended(service, job["id"], "completed")
    assert done["result"] == {"slow": True} and done["attempt"] == 1
    assert run["status"] == "completed" and run["duration_ms"] >= 900


@pytest.fixture
async def trickle() -> AsyncIterator[str]:
    """A handler answering ``[0,1,...]`` a piece every 0.1 s: ``/pieces/{n}`` sends n."""

    async def endpoint(request: Request) -> StreamingResponse:
        count = int(request.path_params["n"])

        async def pieces() -> AsyncIterator[bytes]:
            yield b"["
            for i in range(count):
                await anyio.sleep(0.1)
                yield (b"," if i else b"") + str(i).encode()
            yield b"]"

        return StreamingResponse(pieces(), media_type="application/json")

    app = Starlette(routes=[Route("/pieces/{n:int}", endpoint, methods=["POST"])])
    async with serve_app(app) as url:
        yield url


async def test_a_body_trickling_in_within_the_timeout_completes(
    service: Service, trickle: str
) -> None:
    job = await create_job(service, **push(f"{trickle}/pieces/8", timeout=10, max_attempts=1))
    done, [run] = await ended(service, job["id"], "completed")
    assert done["result"] == list(range(8))
    assert run["duration_ms"] >= 700


async def test_a_body_trickling_past_the_timeout_is_a_timeout(
    service: Service, trickle: str
) -> None:
    """The timeout covers reading the body too: a trickle cannot hold a delivery slot."""
    job = await create_job(service, **push(f"{trickle}/pieces/300", timeout=1, max_attempts=1))
    failed, [run] = await ended(service, job["id"], "failed")
    assert failed["error"].startswith("timeout")
    assert run["status"] == "failed" and 900 <= run["duration_ms"] < 25_000


# ------------------------------------------------------------------------ in a workflow


async def test_a_garbage_answer_to_a_step_is_its_output_as_a_string(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/step", (200, b"plain [1e999] text", 0))
    steps = [
        {"id": "a", "job_trigger": push(url, max_attempts=1)},
        {
            "id": "b",
            "depends_on": ["a"],
            "job_trigger": {"trigger": {"type": "pull", "queue": "after-garbage"}},
            "payload_template": {"got": "{{steps.a.output}}", "in": "<{{steps.a.output}}>"},
        },
    ]
    execution_id = await start(service.client, steps)
    await wait_step(service.client, execution_id, "a", "completed", timeout=20)
    job = await claim_one(service.client, "after-garbage", wait=10)
    assert job["payload"] == {"got": "plain [1e999] text", "in": "<plain [1e999] text>"}
    state = await execution(service.client, execution_id)
    assert step_of(state, "a")["output"] == "plain [1e999] text"


async def test_a_step_answer_too_deep_to_read_fails_the_step(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/deep", (200, b"[" * 100_000 + b"]" * 100_000, 0))
    steps = [{"id": "a", "job_trigger": push(url, max_attempts=1)}]
    execution_id = await start(service.client, steps)
    state = await wait_step(service.client, execution_id, "a", "failed", timeout=20)
    error = step_of(state, "a")["error"]
    assert error["code"] == "job_failed" and "result_too_deep" in error["message"]
