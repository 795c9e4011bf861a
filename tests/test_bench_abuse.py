"""``bench.abuse``: its wire reading, its figures, and one small attack against a real server.

The attacks' verdicts are the benchmark's business (run ``python -m bench.abuse``); here only
that it measures and reports what it says, on the real server, at a small scale.
"""

import socket
from typing import Any

import anyio
import orjson
import pytest
from bench import abuse
from bench.abuse_answers import closed_by_server
from bench.abuse_good import good_figures
from bench.abuse_wire import close, connect, parse_answers


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_parse_answers_splits_pipelined_answers_in_order() -> None:
    data = (
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}"
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nInvalid"
    )
    answers = parse_answers(data)
    assert [(a.status, a.body) for a in answers] == [(202, b"{}"), (400, b"Invalid")]
    assert answers[1].headers["content-type"] == "text/plain"


def test_parse_answers_leaves_out_a_truncated_answer() -> None:
    whole = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    data = whole + b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{"
    assert [a.status for a in parse_answers(data)] == [200]
    assert parse_answers(b"HTTP/1.1 408 Request") == []


def test_good_figures_count_only_the_window_and_every_non_2xx_as_an_error() -> None:
    samples = [
        (0.5, 0.001, "200"),  # before the window
        (1.0, 0.002, "200"),
        (1.1, 0.004, "202"),
        (1.2, 0.010, "503"),
        (1.3, 10.0, "timeout"),
        (9.0, 0.001, "200"),  # after it
    ]
    figures = good_figures(samples, 1.0, 2.0)
    assert figures["good_calls"] == 4
    assert figures["good_errors"] == 2
    assert figures["good_error_kinds"] == {"503": 1, "timeout": 1}
    assert figures["good_p50_ms"] == 4.0
    assert figures["good_p99_ms"] == 10000.0


async def test_closed_by_server_sees_the_peer_close() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        stream = await connect(listener.getsockname()[1])
        accepted, _ = listener.accept()
        assert not closed_by_server(stream)
        accepted.close()
        with anyio.fail_after(5):
            while not closed_by_server(stream):
                await anyio.sleep(0.01)
        await close(stream)
    finally:
        listener.close()


def test_one_attack_on_a_real_server_prints_one_line_of_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = abuse.main(["--only", "pipelined_garbage", "--scale", "0.1", "--settle", "0.2"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    result: dict[str, Any] = orjson.loads(lines[0])
    figures = result["attacks"]["pipelined_garbage"]
    assert code == (0 if result["ok"] else 1)
    assert figures["server_survived"] and figures["server_exit"] == 0
    assert "error" not in figures
    for name in ("rss_before_mib", "rss_after_mib", "growth_mib", "good_p50_ms", "good_p99_ms"):
        assert isinstance(figures[name], float), name
    assert figures["good_calls"] > 0
    assert figures["rounds"] == 5
    assert sum(figures["answer_sequences"].values()) == 5
    assert isinstance(figures["ordered"], bool)
