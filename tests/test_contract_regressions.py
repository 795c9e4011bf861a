"""Bugs ``scripts/schemathesis`` found, each pinned by a test.

Any positive rate limit, however tiny, keeps waits finite; a signature or claim token in any
text is refused (404, 409, False), never a crash.
"""

import time

from flowyard.actors.accounts import MAX_WAIT_SECONDS, Account, Accounts
from flowyard.actors.queues import MAX_TOKEN_WAIT_MS, Queue
from flowyard.signing import signature_header, verify
from flowyard.storage.jobs import QueueSettings
from tests.conftest import Service
from tests.jobs_support import PULL, claim, create


def test_a_tiny_rate_waits_at_most_a_day() -> None:
    queue = Queue("proj", "q", QueueSettings(rate_limit_per_second=5e-324))
    assert queue.may_dispatch(1_000)
    queue.took_token()
    assert not queue.may_dispatch(2_000)
    assert queue.next_token_ms(2_000) == 2_000 + MAX_TOKEN_WAIT_MS


def test_an_ordinary_rate_waits_for_its_next_token() -> None:
    queue = Queue("proj", "q", QueueSettings(rate_limit_per_second=2))
    assert queue.may_dispatch(1_000)
    queue.took_token()
    queue.took_token()
    assert not queue.may_dispatch(1_000)
    assert queue.next_token_ms(1_000) == 1_500


def test_a_tiny_project_rate_announces_at_most_a_day() -> None:
    accounts = Accounts(None)  # type: ignore[arg-type]  # admit() never touches storage
    account = Account(None, 5e-324)
    headers, retry_after = accounts.admit(account)
    assert retry_after is None
    headers, retry_after = accounts.admit(account)
    assert retry_after == MAX_WAIT_SECONDS
    reset = int(dict(headers)[b"x-ratelimit-reset"])
    assert reset <= time.time() + MAX_WAIT_SECONDS + 1


async def test_a_callback_signature_in_any_text_is_a_404(service: Service) -> None:
    job = await create(service.client, PULL)
    for sig in ("é", "", "0" * 64):
        answer = await service.client.post(
            f"/infra/jobs/{job['id']}/runs/run_x/callback",
            params={"sig": sig},
            json={"status": "completed"},
        )
        assert answer.status_code == 404, answer.text


async def test_a_claim_token_in_any_text_is_a_409(service: Service) -> None:
    await create(service.client, PULL)
    job = await claim(service.client)
    for path in ("ack", "heartbeat"):
        body = (
            {"status": "completed", "claim_token": "é"} if path == "ack" else {"claim_token": "é"}
        )
        answer = await service.client.post(f"/infra/jobs/{job['id']}/{path}", json=body)
        assert answer.status_code == 409, answer.text


def test_a_push_signature_in_any_text_does_not_verify() -> None:
    header = signature_header("secret", b"{}", 1_000)
    assert verify("secret", b"{}", header, now=1_000)
    assert not verify("secret", b"{}", "t=1000,v1=é", now=1_000)
