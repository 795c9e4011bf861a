"""``POST /infra/jobs/exchange``: a worker's acks and its next claim in one round trip.

The body's shape (an object, ``acks`` a list of at most 100, a well-formed ``claim``, no
unknown field at any depth) is checked as a whole: a bad one is a plain 400 and nothing is
acked. Each ack is then checked and applied on its own, as ``POST /infra/jobs/{id}/ack``
would be, and answered in the list ``acks``: ``{"job_id", "ok": true}`` or ``{"job_id",
"ok": false, "error": {code, message, details}}``. The claim runs once every ack has been
committed, so jobs the acks made ready (a workflow's next steps) are claimable at once.
"""

from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from flowyard.actors.claims import AckRequest
from flowyard.actors.supervisor import Supervisor
from flowyard.cluster.peers import Peers
from flowyard.cluster.shards import shard_of
from flowyard.errors import FlowyardError, Invalid
from flowyard.http.body import MAX_DETAILS, decode, read_body
from flowyard.http.context import caller, peers
from flowyard.http.errors import error_fields
from flowyard.http.respond import json_response
from flowyard.http.schemas import (
    ExchangeAck,
    ExchangeBody,
    ExchangeClaim,
    ExchangeShape,
    error_text,
)
from flowyard.http.unknown_fields import unknown_fields
from flowyard.jobs.model import Job, claimed_views

_BODY = msgspec.json.Decoder(ExchangeBody, strict=True)
_ANY = msgspec.json.Decoder()

Refusal = dict[str, Any]
"""The answer for an ack refused before it reached its job (a malformed ack)."""


async def exchange_jobs(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    body = await read_body(request)
    if not body.strip():
        raise Invalid("a JSON body is required")
    slots, claim = parse(body)
    others = peers(request)
    if others is None:
        acks = [slot for slot in slots if isinstance(slot, AckRequest)]
        outcomes = iter(await runtime.jobs.ack_each(key.project_id, acks))
        answers = [_answer(slot, next(outcomes)) if isinstance(slot, AckRequest) else slot
                   for slot in slots]  # fmt: skip
    else:
        answers = await _acks_anywhere(runtime, others, key.project_id, slots)
    jobs: Sequence[Job | msgspec.Raw] = ()
    if claim is not None and claim.count:
        jobs = await runtime.jobs.claim(
            key.project_id,
            claim.queue,
            claim.count,
            claim.visibility_timeout,
            claim.wait_seconds,
            others.claims(key.project_id, claim.queue, claim.visibility_timeout)
            if others
            else None,
        )
    return json_response({"acks": answers, "jobs": claimed_views(jobs)})


async def _acks_anywhere(
    runtime: Supervisor, others: Peers, project_id: str, slots: list[AckRequest | Refusal]
) -> list[Any]:
    """A cluster node's acks: those of jobs held here applied here, the others sent to the
    nodes that own them; the answers in the acks' order."""
    cluster = runtime.cluster
    here: list[AckRequest] = []
    there: list[AckRequest] = []
    owners: list[str] = []
    refused: dict[int, FlowyardError] = {}
    for index, slot in enumerate(slots):
        if not isinstance(slot, AckRequest):
            continue
        try:
            url = cluster.owner_url(shard_of(slot.job_id, cluster.total))
        except FlowyardError as exc:  # its shard is moving
            refused[index] = exc
            continue
        if url is None:
            here.append(slot)
        else:
            there.append(slot)
            owners.append(url)
    done = dict(zip(map(id, here), await runtime.jobs.ack_each(project_id, here), strict=True))
    sent = await others.acks(there, owners) if there else []
    remote = dict(zip(map(id, there), sent, strict=True))
    answers: list[Any] = []
    for index, slot in enumerate(slots):
        if not isinstance(slot, AckRequest):
            answers.append(slot)
        elif index in refused:
            answers.append(_answer(slot, refused[index]))
        elif id(slot) in done:
            answers.append(_answer(slot, done[id(slot)]))
        else:
            outcome = remote[id(slot)]
            answers.append(
                _answer(slot, outcome) if isinstance(outcome, FlowyardError) else outcome
            )
    return answers


def parse(body: bytes) -> tuple[list[AckRequest | Refusal], ExchangeClaim | None]:
    """The acks to apply (or each one's refusal, in their place) and the claim.

    Raises:
        Invalid: the body as a whole is malformed (not an object, ``acks`` not a list or
            over 100, a bad ``claim``, an unknown field anywhere).
    """
    try:
        whole = _BODY.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass  # some ack may be refused on its own: the slow path sorts it out
    else:
        return [_request(ack, f"$.acks[{i}]") for i, ack in enumerate(whole.acks)], whole.claim
    shape = decode(body, ExchangeShape)
    problems = unknown_fields(body, ExchangeBody)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise Invalid(f"{first['path']}: {first['message']}{more}", problems[:MAX_DETAILS])
    slots: list[AckRequest | Refusal] = []
    for index, raw in enumerate(shape.acks):
        path = f"$.acks[{index}]"
        try:
            slots.append(_request(decode(bytes(raw), ExchangeAck), path))
        except Invalid as exc:
            slots.append(_refused(raw, _under(path, exc)))
    return slots, shape.claim


def _request(ack: ExchangeAck, path: str) -> AckRequest:
    return AckRequest(
        ack.job_id,
        ack.claim_token,
        ack.status == "completed",
        ack.result,
        error_text(ack.error),
        ack.retryable,
        path,
    )


def _answer(ack: AckRequest, outcome: Job | FlowyardError) -> dict[str, Any]:
    if isinstance(outcome, FlowyardError):
        return {"job_id": ack.job_id, "ok": False, "error": error_fields(outcome, ack=True)}
    return {"job_id": ack.job_id, "ok": True}


def _refused(raw: msgspec.Raw, exc: Invalid) -> Refusal:
    value = _ANY.decode(raw)
    job_id = value.get("job_id") if isinstance(value, dict) else None
    return {
        "job_id": job_id if isinstance(job_id, str) else None,
        "ok": False,
        "error": error_fields(exc, ack=True),
    }


def _under(path: str, exc: Invalid) -> Invalid:
    """The problem of one ack, its paths rooted at the ack's place in the body."""

    def moved(text: str) -> str:
        return path + text[1:] if text.startswith("$") else text

    details = [{**d, "path": moved(str(d.get("path", "$")))} for d in exc.details or []]
    return Invalid(moved(exc.message), details or None)
