"""The request path's own plumbing (unit, no server): bodies read from ``receive`` and the enum
lookups ``flowyard serve`` makes plain."""

import subprocess
import sys
import textwrap

import pytest
from starlette.requests import Request
from starlette.types import Message

from flowyard.errors import Invalid, PayloadTooLarge, UnsupportedMediaType
from flowyard.http.body import MAX_BODY_BYTES, read_body

pytestmark = pytest.mark.anyio


def _request(messages: list[Message], headers: dict[str, str] | None = None) -> Request:
    async def receive() -> Message:  # takes the messages off the list as they are read
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    return Request(scope, receive)


async def test_a_body_in_several_messages_is_joined() -> None:
    request = _request(
        [
            {"type": "http.request", "body": b'{"a":', "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b"1}"},
        ]
    )
    assert await read_body(request) == b'{"a":1}'


async def test_a_request_without_a_body_reads_as_empty() -> None:
    assert await read_body(_request([{"type": "http.request"}])) == b""


async def test_a_client_that_leaves_mid_body_gets_a_400_not_a_500() -> None:
    request = _request([{"type": "http.request", "body": b'{"a":', "more_body": True}])
    with pytest.raises(Invalid, match="left before sending the whole body"):
        await read_body(request)


async def test_a_body_over_the_limit_in_chunks_is_413_without_reading_the_rest() -> None:
    chunk = b"x" * (MAX_BODY_BYTES // 2 + 1)
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": True},
        {"type": "http.request", "body": chunk, "more_body": True},
        {"type": "http.request", "body": b"never read", "more_body": False},
    ]
    request = _request(messages)
    with pytest.raises(PayloadTooLarge):
        await read_body(request)
    assert len(messages) == 1  # the last message was left unread


async def test_a_declared_length_over_the_limit_is_413_before_any_read() -> None:
    messages: list[Message] = [{"type": "http.request", "body": b"{}"}]
    request = _request(messages, {"content-length": str(MAX_BODY_BYTES + 1)})
    with pytest.raises(PayloadTooLarge):
        await read_body(request)
    assert len(messages) == 1


async def test_a_body_that_is_not_json_is_415() -> None:
    request = _request([{"type": "http.request", "body": b"a=1"}], {"content-type": "text/plain"})
    with pytest.raises(UnsupportedMediaType):
        await read_body(request)


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_serve_makes_enum_members_plain_class_attributes() -> None:
    out = _python(
        """
        import enum, timeit
        import msgspec
        import flowyard.http.app
        from flowyard.cli.serve import plain_enum_lookups
        from flowyard.jobs.model import Job, JobStatus
        from flowyard.workflows.state import ExecutionStatus, StepStatus

        done = plain_enum_lookups()
        fallback = "__getattr__" in vars(enum.EnumType)
        ok = (
            JobStatus.RUNNING is JobStatus("running") is JobStatus["RUNNING"]
            and list(StepStatus)[0] is StepStatus.PENDING
            and msgspec.json.decode(b'"paused"', type=ExecutionStatus) is ExecutionStatus.PAUSED
            and not hasattr(JobStatus, "NOPE")
        )
        print(done, fallback, ok)
        """
    )
    if sys.version_info >= (3, 12):
        assert out == "False False True"  # nothing to do: Python has no fallback
    else:
        assert out == "True False True"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12 has no enum fallback")
def test_the_fallback_stays_while_an_enum_needs_it() -> None:
    out = _python(
        """
        import enum
        from flowyard.cli.serve import plain_enum_lookups

        class Field(enum.Enum):
            A = 1

        type.__delattr__(Field, "A")  # now only the fallback finds it
        print(plain_enum_lookups(), Field.A is Field(1))
        """
    )
    assert out == "False True"
