"""Unit tests for the pure building blocks: ids, clock, signing, cursors, cron,
queues and mailboxes. No server, no SQLite."""

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from flowyard import ids
from flowyard.actors.mailbox import Envelope, Mailbox, reply
from flowyard.actors.queues import Queue
from flowyard.clock import now_ms, rfc3339
from flowyard.errors import Invalid, MailboxFull, Unavailable
from flowyard.jobs.cron import is_valid_schedule, next_fire_ms
from flowyard.signing import signature, signature_header, verify
from flowyard.storage.jobs import QueueSettings
from flowyard.storage.pages import decode_cursor, encode_cursor, seal, unseal

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BASE62 = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def ms(iso: str) -> int:
    """Epoch milliseconds of an ISO 8601 timestamp with an offset."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def ulid_ms(identifier: str) -> int:
    """The millisecond timestamp inside a prefixed ULID (its first 10 characters)."""
    body = identifier.split("_", 1)[1]
    value = 0
    for char in body[:10]:
        value = value * 32 + CROCKFORD.index(char)
    return value


# ----------------------------------------------------------------------------- ids


@pytest.mark.parametrize("prefix", ["proj", "key", "job", "run", "wf", "wfexec", "whk"])
def test_new_id_has_prefix_and_26_crockford_chars(prefix: str) -> None:
    identifier = ids.new_id(prefix)
    head, _, body = identifier.partition("_")
    assert head == prefix
    assert len(body) == 26
    assert set(body) <= set(CROCKFORD)
    assert body[0] in "01234567"  # 128 bits in 130: the top character is at most 7


def test_new_id_encodes_the_current_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    at = ms("2026-11-23T10:00:00.123+00:00")
    monkeypatch.setattr(time, "time_ns", lambda: at * 1_000_000 + 456_789)
    assert ulid_ms(ids.new_id("job")) == at


def test_ids_sort_by_time_whatever_their_random_part(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"ms": ms("2026-01-01T00:00:00+00:00")}
    monkeypatch.setattr(time, "time_ns", lambda: clock["ms"] * 1_000_000)
    made = []
    # Steps of 1 ms, 31 ms (a base-32 digit boundary) and a whole day.
    for step in [1, 1, 31, 1, 86_400_000, 1, 1]:
        clock["ms"] += step
        made.append(ids.new_id("job"))
    assert sorted(made) == made
    assert [ulid_ms(i) for i in made] == sorted(ulid_ms(i) for i in made)


def test_ids_within_one_millisecond_are_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_000 * 1_000_000)
    made = {ids.new_id("run") for _ in range(2000)}
    assert len(made) == 2000


def test_base62_token_length_and_alphabet() -> None:
    token = ids.base62_token(40)
    assert len(token) == 40
    assert set(token) <= BASE62
    assert len(ids.base62_token(7)) == 7
    assert ids.base62_token(40) != token


def test_url_tokens_are_url_safe_and_never_look_like_an_option() -> None:
    tokens = [ids.url_token(18) for _ in range(5_000)]  # a leading "-" was 1 in 64
    assert len(set(tokens)) == 5_000
    assert all(len(token) == 24 for token in tokens)
    assert set("".join(tokens)) <= BASE62 | {".", "_"}
    assert not any(token.startswith("-") for token in tokens)


# ----------------------------------------------------------------------------- clock


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1000, "1970-01-01T00:00:01.000Z"),
        (ms("2026-11-23T10:00:00+00:00"), "2026-11-23T10:00:00.000Z"),
        (ms("2026-11-23T10:00:00+00:00") + 7, "2026-11-23T10:00:00.007Z"),
        (ms("2026-12-31T23:59:59+00:00") + 999, "2026-12-31T23:59:59.999Z"),
        (ms("2024-02-29T12:34:56+00:00") + 50, "2024-02-29T12:34:56.050Z"),
        # A local offset in the input never leaks into the output: always UTC, "Z".
        (ms("2026-06-01T02:00:00+02:00"), "2026-06-01T00:00:00.000Z"),
    ],
)
def test_rfc3339(value: int, text: str) -> None:
    assert rfc3339(value) == text


def test_rfc3339_none_and_millisecond_sweep() -> None:
    assert rfc3339(None) is None
    base = ms("2026-03-01T00:00:00+00:00")
    for extra in range(0, 3000, 7):  # never rounds into the next second
        expected = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(milliseconds=extra)
        assert rfc3339(base + extra) == expected.strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{extra % 1000:03d}Z"
        )


def test_now_ms_is_wall_clock_milliseconds() -> None:
    before = int(time.time() * 1000)
    value = now_ms()
    after = int(time.time() * 1000)
    assert before - 1 <= value <= after + 1


# ----------------------------------------------------------------------------- signing

SECRET = "whsec_test_secret"
BODY = b'{"order":42,"items":[1,2,3]}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_700_000_000, BODY) == expected
    assert signature_header(SECRET, BODY, 1_700_000_000) == f"t=1700000000,v1={expected}"


def test_sign_then_verify() -> None:
    header = signature_header(SECRET, BODY)
    assert verify(SECRET, BODY, header)
    t = 1_700_000_000
    assert verify(SECRET, BODY, signature_header(SECRET, BODY, t), now=t + 299)


def test_tampered_body_or_wrong_secret_fails() -> None:
    header = signature_header(SECRET, BODY)
    assert not verify(SECRET, BODY.replace(b"42", b"43"), header)
    assert not verify(SECRET, BODY + b" ", header)
    assert not verify("whsec_other", BODY, header)
    t, v1 = header.split(",")
    forged = f"{t},v1={'0' * len(v1.split('=')[1])}"
    assert not verify(SECRET, BODY, forged)


def test_old_or_future_timestamp_fails() -> None:
    t = 1_700_000_000
    header = signature_header(SECRET, BODY, t)
    assert verify(SECRET, BODY, header, now=t + 300)
    assert not verify(SECRET, BODY, header, now=t + 301)
    assert not verify(SECRET, BODY, header, now=t - 301)
    assert not verify(SECRET, BODY, header, now=t + 10, tolerance=5)
    # The default: a header signed ten minutes ago is refused now.
    assert not verify(SECRET, BODY, signature_header(SECRET, BODY, int(time.time()) - 600))


def test_changing_the_timestamp_breaks_the_signature() -> None:
    t = int(time.time())
    header = signature_header(SECRET, BODY, t)
    v1 = header.split("v1=")[1]
    assert not verify(SECRET, BODY, f"t={t + 1},v1={v1}")


@pytest.mark.parametrize("header", ["", "garbage", "v1=abc", "t=notanumber,v1=abc", "t=,v1="])
def test_malformed_signature_header_fails(header: str) -> None:
    assert not verify(SECRET, BODY, header)


# ----------------------------------------------------------------------------- cursors

KEY = b"k" * 32


@pytest.mark.parametrize("seq", [0, 1, 25, 999_999, 2**53, 2**62])
def test_cursor_round_trip(seq: int) -> None:
    cursor = encode_cursor(KEY, "jobs", seq)
    assert decode_cursor(KEY, "jobs", cursor) == seq
    assert "=" not in cursor  # opaque and URL-safe without padding
    assert str(seq) not in cursor


def test_no_cursor_is_none() -> None:
    assert decode_cursor(KEY, "jobs", None) is None
    assert unseal(KEY, "queues", None) is None


@pytest.mark.parametrize("name", ["q", "a:b", "\u00e9\u4e2d\U0001f600", "x" * 128])
def test_a_name_cursor_round_trips(name: str) -> None:
    assert unseal(KEY, "queues", seal(KEY, "queues", name)) == name


def _tampered(cursor: str) -> list[str]:
    middle = len(cursor) // 2
    flip = "A" if cursor[middle] != "A" else "B"
    last = "A" if cursor[-1] != "A" else "B"
    return [
        cursor[:middle] + flip + cursor[middle + 1 :],
        cursor[:-1] + last,
        cursor[:-1],
        cursor + "A",
        cursor[1:],
        _b64("s:5"),  # the unsigned form of an earlier version
    ]


@pytest.mark.parametrize("seq", [0, 7, 2**40])
def test_a_tampered_or_foreign_cursor_is_invalid(seq: int) -> None:
    cursor = encode_cursor(KEY, "jobs", seq)
    candidates = [
        *_tampered(cursor),
        encode_cursor(KEY, "blueprints", seq),  # another list's
        encode_cursor(KEY, "runs:job_a", seq),
        encode_cursor(b"another key", "jobs", seq),  # another database's
        seal(KEY, "jobs", "5x"),  # signed, but not a seq
        seal(KEY, "jobs", "9" * 30),
    ]
    for candidate in candidates:
        with pytest.raises(Invalid):
            decode_cursor(KEY, "jobs", candidate)
    assert decode_cursor(KEY, "jobs", cursor) == seq


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "not a cursor",
        "é",
        "a",
        _b64("x:5"),
        _b64("s:"),
        _b64("s:-1"),
        _b64("s:1.5"),
        _b64("s:12abc"),
        _b64("s:\uff11\uff12"),  # fullwidth digits are digits to str.isdigit()
        _b64("5"),
        base64.urlsafe_b64encode(b"\xff\xfe:1").decode(),
        # Digits SQLite cannot hold must not reach the database as a parameter.
        _b64("s:" + "9" * 30),
    ],
)
def test_garbage_cursor_is_invalid(cursor: str) -> None:
    with pytest.raises(Invalid) as caught:
        decode_cursor(KEY, "jobs", cursor)
    assert caught.value.details == [
        {"path": "$.cursor", "message": "is not a cursor this service issued"}
    ]


# ----------------------------------------------------------------------------- cron


def _fires(schedule: str, timezone: str, start: str, count: int) -> list[str]:
    at, out = ms(start), []
    for _ in range(count):
        at = next_fire_ms(schedule, timezone, at)
        out.append(rfc3339(at))
    return out


def test_cron_utc_is_strictly_after() -> None:
    start = ms("2026-01-01T00:00:00+00:00")
    assert next_fire_ms("*/15 * * * *", "UTC", start) == start + 15 * 60_000
    assert next_fire_ms("*/15 * * * *", "UTC", start - 1) == start
    assert _fires("0 0 1 * *", "UTC", "2026-01-15T00:00:00+00:00", 2) == [
        "2026-02-01T00:00:00.000Z",
        "2026-03-01T00:00:00.000Z",
    ]


def test_cron_reads_the_schedule_in_its_timezone() -> None:
    start = "2026-01-10T12:00:00+00:00"
    assert _fires("0 9 * * *", "UTC", start, 1) == ["2026-01-11T09:00:00.000Z"]
    assert _fires("0 9 * * *", "Asia/Tokyo", start, 1) == ["2026-01-11T00:00:00.000Z"]
    assert _fires("0 9 * * *", "America/New_York", start, 1) == ["2026-01-10T14:00:00.000Z"]
    assert _fires("0 6 * * *", "America/New_York", start, 1) == ["2026-01-11T11:00:00.000Z"]


def test_cron_keeps_local_time_across_spring_forward() -> None:
    # Paris moves from UTC+1 to UTC+2 on 2026-03-29: 09:00 local is 08:00Z, then 07:00Z.
    assert _fires("0 9 * * *", "Europe/Paris", "2026-03-27T12:00:00+00:00", 3) == [
        "2026-03-28T08:00:00.000Z",
        "2026-03-29T07:00:00.000Z",
        "2026-03-30T07:00:00.000Z",
    ]
    # Midnight in New York across 2026-03-08: 05:00Z, then 04:00Z.
    assert _fires("0 0 * * *", "America/New_York", "2026-03-07T12:00:00+00:00", 2) == [
        "2026-03-08T05:00:00.000Z",
        "2026-03-09T04:00:00.000Z",
    ]


def test_cron_keeps_local_time_across_fall_back() -> None:
    # Paris moves from UTC+2 back to UTC+1 on 2026-10-25.
    assert _fires("0 9 * * *", "Europe/Paris", "2026-10-23T12:00:00+00:00", 3) == [
        "2026-10-24T07:00:00.000Z",
        "2026-10-25T08:00:00.000Z",
        "2026-10-26T08:00:00.000Z",
    ]


def test_hourly_cron_stays_one_real_hour_apart_across_a_dst_change() -> None:
    fires = _fires("0 * * * *", "Europe/Paris", "2026-03-28T23:30:00+00:00", 4)
    assert fires == [
        "2026-03-29T00:00:00.000Z",
        "2026-03-29T01:00:00.000Z",  # 03:00 CEST: the 02:00 hour does not exist
        "2026-03-29T02:00:00.000Z",
        "2026-03-29T03:00:00.000Z",
    ]


@pytest.mark.parametrize(
    ("schedule", "valid"),
    [
        ("* * * * *", True),
        ("0 9 * * 1-5", True),
        ("*/5 0-6 1,15 * *", True),
        ("* * * *", False),
        ("* * * * * *", False),
        ("61 * * * *", False),
        ("not a cron", False),
        ("", False),
    ],
)
def test_is_valid_schedule(schedule: str, valid: bool) -> None:
    assert is_valid_schedule(schedule) is valid


# ----------------------------------------------------------------------------- queues


def test_queue_pops_by_priority_then_age() -> None:
    queue = Queue("proj_1", "q")
    queue.push("old-low", 9, 100, pull=False)
    queue.push("new-high", 1, 500, pull=False)
    queue.push("mid-new", 5, 400, pull=False)
    queue.push("mid-old", 5, 200, pull=False)
    queue.push("mid-old-second", 5, 200, pull=False)  # same age: insertion order
    order = []
    while (job_id := queue.pop(lambda _: True, pull=False)) is not None:
        order.append(job_id)
    assert order == ["new-high", "mid-old", "mid-old-second", "mid-new", "old-low"]
    assert not queue.has_deliverable


def test_queue_skips_stale_entries_and_drops_them() -> None:
    queue = Queue("proj_1", "q")
    for index, job_id in enumerate(["a", "b", "c", "d"]):
        queue.push(job_id, 5, index, pull=False)
    live = {"b", "d"}
    checked: list[str] = []

    def is_ready(job_id: str) -> bool:
        checked.append(job_id)
        return job_id in live

    assert queue.pop(is_ready, pull=False) == "b"
    assert queue.pop(is_ready, pull=False) == "d"
    assert queue.pop(is_ready, pull=False) is None
    assert checked == ["a", "b", "c", "d"]  # a stale entry is looked at once, then gone
    assert not queue.has_deliverable


def test_queue_push_is_idempotent_until_popped() -> None:
    queue = Queue("proj_1", "q")
    queue.push("a", 5, 1, pull=False)
    queue.push("a", 5, 1, pull=False)
    assert queue.pop(lambda _: True, pull=False) == "a"
    assert queue.pop(lambda _: True, pull=False) is None
    queue.push("a", 5, 1, pull=False)  # ready again later (a retry): claimable again
    assert queue.pop(lambda _: True, pull=False) == "a"


def test_pull_and_push_jobs_sharing_a_name_wait_apart() -> None:
    queue = Queue("proj_1", "q")
    waiter = queue.waiter()
    queue.push("push-first", 1, 1, pull=False)
    assert not waiter.is_set()  # a push job is nothing a worker could claim
    queue.push("pull-later", 9, 2, pull=True)
    assert waiter.is_set()
    assert queue.pop(lambda _: True, pull=True) == "pull-later"
    assert queue.pop(lambda _: True, pull=True) is None
    assert queue.has_deliverable
    assert queue.pop(lambda _: True, pull=False) == "push-first"
    assert not queue.has_deliverable


async def test_queue_push_wakes_one_waiter_each() -> None:
    queue = Queue("proj_1", "q")
    first, second = queue.waiter(), queue.waiter()
    queue.push("a", 5, 1, pull=True)
    assert first.is_set()
    assert not second.is_set()
    queue.push("b", 5, 2, pull=True)
    assert second.is_set()
    third = queue.waiter()
    queue.push("a", 5, 1, pull=True)  # already on the heap: nothing new, nobody woken
    assert not third.is_set()


async def test_forgotten_waiter_does_not_swallow_a_wakeup() -> None:
    queue = Queue("proj_1", "q")
    gone = queue.waiter()
    queue.forget_waiter(gone)
    queue.forget_waiter(gone)  # twice is harmless
    waiting = queue.waiter()
    queue.push("a", 5, 1, pull=True)
    assert waiting.is_set()
    assert not gone.is_set()


async def test_a_waiter_leaves_the_line_when_set_or_forgotten() -> None:
    queue = Queue("proj_1", "q")
    expired, woken, cancelled, waiting = (queue.waiter() for _ in range(4))
    queue.expire(expired)
    assert expired.is_set()
    queue.push("a", 5, 1, pull=True)
    assert woken.is_set()  # the job went to the next one in line, not to the expired one
    queue.forget_waiter(cancelled)
    assert list(queue._waiters) == [waiting]  # nobody set or gone is kept (or scanned) later
    for event in (expired, woken, cancelled):
        queue.forget_waiter(event)  # harmless whatever ended the wait
    assert list(queue._waiters) == [waiting]


async def test_waiter_is_woken_while_waiting_and_wake_all() -> None:
    queue = Queue("proj_1", "q")
    got: list[str | None] = []

    async def claimer() -> None:
        event = queue.waiter()
        await event.wait()
        got.append(queue.pop(lambda _: True, pull=True))

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(claimer)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            queue.push("job_x", 5, 1, pull=True)
    assert got == ["job_x"]
    events = [queue.waiter() for _ in range(3)]
    queue.wake_all()
    assert all(event.is_set() for event in events)


def test_queue_limits_pause_concurrency_and_rate() -> None:
    queue = Queue("proj_1", "q", QueueSettings(concurrency=2))
    assert queue.may_dispatch(1_000)
    queue.running.update({"a", "b"})
    assert not queue.may_dispatch(1_000)
    queue.running.discard("a")
    assert queue.may_dispatch(1_000)
    queue.settings = QueueSettings(paused=True)
    assert not queue.may_dispatch(1_000)
    queue = Queue("proj_1", "r", QueueSettings(rate_limit_per_second=2))
    now = 10_000
    for _ in range(2):
        assert queue.may_dispatch(now)
        queue.took_token()
    assert not queue.may_dispatch(now)
    assert queue.next_token_ms(now) == now + 500
    assert not queue.may_dispatch(now + 499)
    assert queue.may_dispatch(now + 500)


def test_queue_view_counts_pending_and_running() -> None:
    queue = Queue("proj_1", "q")
    assert queue.view(5_000)["oldest_pending_age_seconds"] is None
    queue.pending.update({"a": 1_000, "b": 3_000})
    queue.running.add("c")
    view = queue.view(5_000)
    assert view["name"] == "q"
    assert view["depth"] == 2
    assert view["running"] == 1
    assert view["oldest_pending_age_seconds"] == 4.0
    assert view["paused"] is False


# ----------------------------------------------------------------------------- mailbox


async def test_tell_delivers_without_reply() -> None:
    mailbox: Mailbox[str] = Mailbox(4)
    mailbox.tell("hello")
    mailbox.tell("world")
    first = mailbox.receive.receive_nowait()
    second = mailbox.receive.receive_nowait()
    assert (first.message, first.reply_to) == ("hello", None)
    assert second.message == "world"
    reply(first, "ignored")  # replying to a tell is a no-op
    mailbox.close()
    mailbox.receive.close()


async def _echo_actor(mailbox: Mailbox[object]) -> None:
    async with mailbox.receive:
        async for envelope in mailbox.receive:
            message = envelope.message
            if message == "boom":
                reply(envelope, ValueError("no such thing"))
            elif message == "drop":
                assert envelope.reply_to is not None
                envelope.reply_to.close()  # stops without replying
            else:
                reply(envelope, ("echo", message))


async def test_ask_gets_the_reply_or_the_exception() -> None:
    mailbox: Mailbox[object] = Mailbox(8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_echo_actor, mailbox)
        assert await mailbox.ask("ping", timeout=2) == ("echo", "ping")
        assert await mailbox.ask({"n": 1}, timeout=2) == ("echo", {"n": 1})
        with pytest.raises(ValueError, match="no such thing"):
            await mailbox.ask("boom", timeout=2)
        with pytest.raises(Unavailable):
            await mailbox.ask("drop", timeout=2)
        mailbox.close()
    with pytest.raises(Unavailable):
        mailbox.tell("after close")


async def test_ask_times_out_when_nobody_answers() -> None:
    mailbox: Mailbox[str] = Mailbox(2)
    with pytest.raises(TimeoutError):
        await mailbox.ask("anyone?", timeout=0.05)
    envelope = mailbox.receive.receive_nowait()
    reply(envelope, "too late")  # the asker is gone: no error
    mailbox.close()
    mailbox.receive.close()


async def test_full_mailbox_raises_mailbox_full() -> None:
    mailbox: Mailbox[int] = Mailbox(2)
    mailbox.tell(1)
    mailbox.tell(2)
    with pytest.raises(MailboxFull):
        mailbox.tell(3)
    with pytest.raises(MailboxFull):
        await mailbox.ask(4, timeout=1)
    assert issubclass(MailboxFull, Unavailable)  # answered as 503
    got = [mailbox.receive.receive_nowait().message for _ in range(2)]
    assert got == [1, 2]  # the refused messages were not queued
    mailbox.tell(5)  # room again
    assert mailbox.receive.receive_nowait() == Envelope(5)
    mailbox.close()
    mailbox.receive.close()


def test_the_in_flight_cap_spares_health_checks_and_the_worker_protocol() -> None:
    from flowyard.http.inflight import EXEMPT

    spared = [
        "/readyz",
        "/infra/jobs/claim",
        "/infra/jobs/exchange",
        "/infra/jobs/job_1/ack",
        "/infra/jobs/job_1/heartbeat",
        "/infra/jobs/job_1/runs/run_1/callback",
    ]
    counted = ["/infra/jobs", "/infra/jobs/batch", "/infra/jobs/job_1", "/infra/jobs/job_1/retry"]
    assert all(EXEMPT.match(path) for path in spared)
    assert not any(EXEMPT.match(path) for path in counted)
