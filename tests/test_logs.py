"""The log formatters and request ids of flowyard.logs, without a server."""

import json
import logging
import re
import sys

import pytest

from flowyard import logs

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("flowyard.test", logging.WARNING, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_json_line_has_the_fields_and_no_unknown_ids() -> None:
    line = logs.JsonFormatter().format(record("hello %s", "world"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert set(parsed) == {"ts", "level", "logger", "msg"}
    assert TS.match(parsed["ts"]), parsed["ts"]
    assert parsed["level"] == "WARNING"
    assert parsed["logger"] == "flowyard.test"
    assert parsed["msg"] == "hello world"


def test_json_line_carries_bound_ids_and_extra_ids_win() -> None:
    with logs.bound(request="req-1", project="proj_1", execution="exe_1"):
        bound = json.loads(logs.JsonFormatter().format(record()))
        extra = json.loads(logs.JsonFormatter().format(record(job_id="job_9", request_id="r-2")))
    assert bound["request_id"] == "req-1"
    assert bound["project_id"] == "proj_1"
    assert bound["execution_id"] == "exe_1"
    assert "job_id" not in bound
    assert extra["job_id"] == "job_9"
    assert extra["request_id"] == "r-2"  # the call's own beats the bound one
    assert extra["execution_id"] == "exe_1"
    after = json.loads(logs.JsonFormatter().format(record()))
    assert not {"request_id", "project_id", "execution_id"} & set(after)  # restored


def test_json_line_has_the_traceback_and_escapes_newlines() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        failed = record("it failed: %s", "a\nb")
        failed.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(failed)
    assert "\n" not in line  # one object per line, whatever the message holds
    parsed = json.loads(line)
    assert parsed["msg"] == "it failed: a\nb"
    assert "Traceback (most recent call last)" in parsed["exc"]
    assert "ValueError: bad" in parsed["exc"]


def test_text_line_ends_with_the_known_ids() -> None:
    formatter = logs.TextFormatter()
    assert formatter.format(record("plain")).endswith(" WARNING flowyard.test: plain")
    with logs.bound(request="req-1", project="proj_1"):
        line = formatter.format(record("about %s", "a job", job_id="job_1"))
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING flowyard.test: ", line)
    assert line.endswith("about a job request_id=req-1 project_id=proj_1 job_id=job_1")


def test_formatter_names_the_two_formats() -> None:
    assert isinstance(logs.formatter("json"), logs.JsonFormatter)
    assert isinstance(logs.formatter("text"), logs.TextFormatter)
    with pytest.raises(ValueError):
        logs.formatter("xml")


@pytest.mark.parametrize(
    "sent",
    [
        b"abc-123",
        b"A" * 128,
        b"0f2e/trace:span=1+2@host_x.y",
    ],
)
def test_sane_request_ids_are_kept(sent: bytes) -> None:
    assert logs.request_id_from(sent) == sent.decode()


@pytest.mark.parametrize(
    "sent",
    [None, b"", b"A" * 129, b"a b", b"a\x01b", b"caf\xc3\xa9", b"a,b", b"<script>"],
)
def test_other_request_ids_are_replaced_by_fresh_ones(sent: bytes | None) -> None:
    made = logs.request_id_from(sent)
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", made), made
    assert made != logs.request_id_from(sent)
