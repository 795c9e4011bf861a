"""``Http1Client.request``: any method, headers in, status, headers and body out (the
requests between the nodes of a cluster), against the scripted raw server of
``test_http1_client``."""

import pytest

from flowyard import __version__
from flowyard.egress.http1 import Http1Client, InvalidUrl
from tests.test_http1_client import CHUNKED, OK, _length, our_client, reply, serving

TIMEOUT = 5.0
MAX_BODY = 1024


async def _request(
    client: Http1Client,
    url: str,
    method: str = "PATCH",
    target: bytes = b"/infra/jobs/job_1?x=1",
    headers: tuple[tuple[bytes, bytes], ...] = ((b"x-a", b"1"), (b"authorization", b"Bearer k")),
    body: bytes = b"{}",
) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    answer = await client.request(
        method, url, target, headers, body, timeout=TIMEOUT, max_body=MAX_BODY
    )
    return answer.status, answer.headers, answer.body, answer.complete


async def test_the_request_and_its_answer_on_the_wire() -> None:
    answer = _length(b"409 Conflict", b'{"code":"conflict"}', b"X-Request-Id: r1", b"A: b")
    async with serving(reply(answer)) as server, our_client() as client:
        base = f"http://127.0.0.1:{server.port}"
        got = await _request(client, base)
    host = b"Host: 127.0.0.1:%d\r\n" % server.port
    assert server.requests == [
        b"PATCH /infra/jobs/job_1?x=1 HTTP/1.1\r\n"
        + host
        + b"User-Agent: flowyard/"
        + __version__.encode()
        + b"\r\nx-a: 1\r\nauthorization: Bearer k\r\ncontent-length: 2\r\n\r\n{}"
    ]
    assert got == (
        409,
        [(b"X-Request-Id", b"r1"), (b"A", b"b"), (b"Content-Length", b"19")],
        b'{"code":"conflict"}',
        True,
    )


async def test_requests_share_kept_alive_connections_with_posts() -> None:
    async with serving(reply(OK), reply(CHUNKED)) as server, our_client() as client:
        base = f"http://127.0.0.1:{server.port}"
        first = await _request(client, base, "GET", b"/a", (), b"")
        posted = await client.post(base + "/b", b"{}", [], timeout=TIMEOUT, max_body=MAX_BODY)
        second = await _request(client, base, "DELETE", b"/c", (), b"")
    assert server.connections == 1
    assert first[0] == second[0] == 200
    assert second[1][0] == (b"Transfer-Encoding", b"chunked")
    assert second[2] == b"abcdefg0123456789"
    assert posted.headers == []  # a delivery does not keep them
    assert [r.split(b" ")[:2] for r in server.requests] == [
        [b"GET", b"/a"],
        [b"POST", b"/b"],
        [b"DELETE", b"/c"],
    ]


async def test_an_interim_answer_s_headers_are_not_the_answer_s() -> None:
    answer = b"HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n" + _length(b"200 OK", b"ok", b"B: 2")
    async with serving(reply(answer)) as server, our_client() as client:
        got = await _request(client, f"http://127.0.0.1:{server.port}")
    assert got == (200, [(b"B", b"2"), (b"Content-Length", b"2")], b"ok", True)


async def test_a_long_answer_is_cut_at_max_body() -> None:
    async with serving(reply(_length(b"200 OK", b"x" * 5000))) as server, our_client() as client:
        status, _, body, complete = await _request(client, f"http://127.0.0.1:{server.port}")
    assert (status, len(body), complete) == (200, MAX_BODY, False)


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("HEAD", b"/a", ()),  # its answer's body would be waited for
        ("GE T", b"/a", ()),
        ("GET\r\n", b"/a", ()),
        ("GET", b"a", ()),
        ("GET", b"/a b", ()),
        ("GET", b"/a\r\nX: 1", ()),
        ("GET", b"/caf\xc3\xa9", ()),
        ("GET", b"/a", ((b"x", b"a\r\nX-Injected: 1"),)),
        ("GET", b"/a", ((b"x", b"a\nb"),)),
        ("GET", b"/a", ((b"x:y", b"1"),)),
        ("GET", b"/a", ((b"", b"1"),)),
    ],
)
async def test_what_cannot_be_sent_is_refused_before_anything_is_sent(
    method: str, target: bytes, headers: tuple[tuple[bytes, bytes], ...]
) -> None:
    async with serving(reply(OK)) as server, our_client() as client:
        base = f"http://127.0.0.1:{server.port}"
        with pytest.raises(InvalidUrl):
            await _request(client, base, method, target, headers)
        assert (server.connections, server.requests) == (0, [])
        assert (await _request(client, base))[0] == 200  # the client is still usable
