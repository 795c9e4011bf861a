"""Our HTTP/1.1 framing against h11's, byte stream by byte stream.

The same bytes go to :class:`HttpProtocol` (a real server on a real socket, on uvloop as in
production) and to ``h11.Connection(h11.SERVER)``. Both must find the same requests (method,
target, body) and agree on whether the stream is refused: a disagreement on where a request
ends is what request smuggling is made of. Where they differ on purpose, the tables below say
why; everywhere else any difference fails.
"""

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h11
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from flowyard.http.protocol import protocol_class

Found = tuple[tuple[str, str, str], ...]  # (method, target, body) of each whole request
END = b"GET /end HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
"""Sent after every stream: once it is answered the server closes, so no test waits for a
timeout unless the stream leaves a request unfinished."""


@dataclass(frozen=True)
class Outcome:
    found: Found
    verdict: str  # "complete", "incomplete" (a request unfinished) or "rejected"


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers each request with what it was, in a header (so ``HEAD`` shows it too)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    query = scope["query_string"]
    target = scope["raw_path"] + (b"?" + query if query else b"")
    seen = [scope["method"], target.decode("latin-1"), body.decode("latin-1")]
    headers = [(b"x-seen", base64.b64encode(json.dumps(seen).encode())), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """Our server in a thread of its own; short timeouts, so an unfinished request is 408."""
    config = uvicorn.Config(
        _echo,
        host="127.0.0.1",
        port=0,
        log_level="critical",
        lifespan="on",
        loop="uvloop",
        http=protocol_class(read_timeout=0.3),
        timeout_keep_alive=0.3,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.005)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


def ours(port: int, data: bytes) -> Outcome:
    """What our server made of ``data`` + :data:`END`, read off its answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data + END)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    found: list[tuple[str, str, str]] = []
    verdict = "complete"
    while received:
        head, _, received = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines[1:])}
        length = int(headers.get(b"content-length", b"0"))
        received = received[length:]
        if status == 200:
            method, target, body = json.loads(base64.b64decode(headers[b"x-seen"]))
            found.append((method, target, body))
        elif status == 408:
            verdict = "incomplete"
        elif status >= 400:
            verdict = "rejected"
    return Outcome(tuple(found), verdict)


def _target(target: bytes) -> str:
    """h11's target as the ASGI scope shows it: no scheme and host, fragment or bare ``?``."""
    if b"://" in target:
        target = b"/" + target.split(b"://", 1)[1].partition(b"/")[2]
    path, _, query = target.partition(b"#")[0].partition(b"?")
    return (path + b"?" + query if query else path).decode("latin-1")


def theirs(data: bytes) -> Outcome:
    """What h11 makes of ``data`` + :data:`END`, answering each request as it completes."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data + END)
    found: list[tuple[str, str, str]] = []
    current: tuple[str, str] | None = None
    body = b""
    try:
        while True:
            event: Any = conn.next_event()
            if isinstance(event, h11.Request):
                current, body = (event.method.decode(), _target(event.target)), b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and current is not None:
                found.append((*current, body.decode("latin-1")))
                current = None
                try:
                    conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                    conn.send(h11.EndOfMessage())
                except h11.LocalProtocolError:  # CONNECT or an upgrade: no more HTTP
                    return Outcome(tuple(found), "complete")
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return Outcome(tuple(found), "complete")  # the request closes
                conn.start_next_cycle()
            elif event is h11.NEED_DATA:
                unfinished = current is not None or conn.trailing_data[0]
                return Outcome(tuple(found), "incomplete" if unfinished else "complete")
            else:  # PAUSED (an upgrade) or ConnectionClosed
                return Outcome(tuple(found), "complete")
    except h11.RemoteProtocolError:
        return Outcome(tuple(found), "rejected")


def post(body: bytes, *headers: bytes, target: bytes = b"/p") -> bytes:
    head = b"POST " + target + b" HTTP/1.1\r\nHost: t\r\n"
    return head + b"".join(line + b"\r\n" for line in headers) + b"\r\n" + body


GET = b"GET /a?b=1 HTTP/1.1\r\nHost: t\r\n\r\n"
CHUNKED = b"Transfer-Encoding: chunked"

SAME = {
    "get": GET,
    "post": post(b"hello", b"Content-Length: 5"),
    "chunked": post(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", CHUNKED),
    "chunk-extension": post(b"3;x=1\r\nabc\r\n0\r\n\r\n", CHUNKED),
    "trailer": post(b"3\r\nabc\r\n0\r\nX-T: y\r\n\r\n", CHUNKED),
    "pipeline": GET + post(b"xy", b"Content-Length: 2") + post(b"1\r\nz\r\n0\r\n\r\n", CHUNKED),
    "head": b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
    "whitespace-around-values": b"GET / HTTP/1.1\r\nHost:   t  \r\nX:\t y \t\r\n\r\n",
    "http-1.0": b"GET / HTTP/1.0\r\n\r\n" + GET,
    "http-1.0-chunked": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
    "coding-case": post(b"1\r\nz\r\n0\r\n\r\n", b"Transfer-Encoding: Chunked"),
    "hex-upper-case": post(b"A\r\n0123456789\r\n0\r\n\r\n", CHUNKED),
    "empty-body": post(b"", b"Content-Length: 0"),
    "close-then-more": b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + GET,
    "body-short": post(b"ab", b"Content-Length: 500"),
    "head-unfinished": b"GET / HTTP/1.1\r\nHost: t\r\nX-Unfinished: ",
    "expect-continue": post(b"abc", b"Content-Length: 3", b"Expect: 100-continue"),
    "obs-text-value": b"GET / HTTP/1.1\r\nHost: t\r\nX: caf\xc3\xa9\r\n\r\n",
    "length-sign": post(b"abc", b"Content-Length: +3"),
    "length-negative": post(b"abc", b"Content-Length: -3"),
    "length-junk": post(b"abc", b"Content-Length: 3x"),
    "length-trailing-space": post(b"abc", b"Content-Length: 3 "),
    "length-inner-space": post(b"abc", b"Content-Length: 1 2"),
    "length-differs": post(b"abcdef", b"Content-Length: 3", b"Content-Length: 6"),
    "identity-coding": post(b"abc", b"Transfer-Encoding: identity", b"Content-Length: 3"),
    "gzip-then-chunked": post(b"3\r\nabc\r\n0\r\n\r\n", b"Transfer-Encoding: gzip, chunked"),
    "chunked-then-gzip": post(b"3\r\nabc\r\n0\r\n\r\n", b"Transfer-Encoding: chunked, gzip"),
    "unknown-coding": post(b"3\r\nabc\r\n0\r\n\r\n", b"Transfer-Encoding: xchunked"),
    "space-before-colon": post(b"3\r\nabc\r\n0\r\n\r\n", b"Transfer-Encoding : chunked"),
    "vertical-tab-value": post(b"3\r\nabc\r\n0\r\n\r\n", b"Transfer-Encoding:\x0bchunked"),
    "chunk-size-not-hex": post(b"zz\r\nabc\r\n0\r\n\r\n", CHUNKED),
    "chunk-data-too-long": post(b"3\r\nabcX0\r\n\r\n", CHUNKED),
    "chunk-size-0x": post(b"0x3\r\nabc\r\n0\r\n\r\n", CHUNKED),
    "chunk-size-negative": post(b"-3\r\nabc\r\n0\r\n\r\n", CHUNKED),
    "chunk-bare-lf": post(b"3\nabc\n0\n\n", CHUNKED),
    "bare-cr": b"GET / HTTP/1.1\rHost: t\r\n\r\n",
    "bad-header-name": b"GET / HTTP/1.1\r\nHost: t\r\nX(: y\r\n\r\n",
    "empty-header-name": b"GET / HTTP/1.1\r\nHost: t\r\n: y\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n",
    "no-version": b"GET /\r\nHost: t\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
    "not-ascii-target": b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "garbage": b"NOT HTTP AT ALL\r\n\r\n",
    "post-then-garbage": post(b"ab", b"Content-Length: 2") + b"GARBAGE\r\n\r\n",
    "tab-separated": b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n",
    "absolute-form": b"GET http://t/a?b HTTP/1.1\r\nHost: t\r\n\r\n",
    "fragment": b"GET /a#f HTTP/1.1\r\nHost: t\r\n\r\n",
}

# Ours refuses where h11 accepts or waits. Each is a request RFC 9112 lets a server refuse
# (or that a proxy in front could read otherwise); refusing cannot frame a request wrongly.
STRICTER = {
    "length-and-chunked": post(b"3\r\nabc\r\n0\r\n\r\n", b"Content-Length: 3", CHUNKED),
    "chunked-and-length": post(b"3\r\nabc\r\n0\r\n\r\n", CHUNKED, b"Content-Length: 3"),
    "length-twice-same": post(b"abc", b"Content-Length: 3", b"Content-Length: 3"),
    "length-list": post(b"abc", b"Content-Length: 3, 3"),
    "chunk-size-overflow": post(b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n", CHUNKED),
    "chunk-size-space": post(b"3 \r\nabc\r\n0\r\n\r\n", CHUNKED),
    "obs-fold": b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n",
    "obs-fold-hides-coding": post(
        b"3\r\nabc\r\n0\r\n\r\n", b"X: a", b" " + CHUNKED, b"Content-Length: 3"
    ),
    "bare-lf": b"GET / HTTP/1.1\nHost: t\n\n",
    "bare-lf-in-headers": b"GET / HTTP/1.1\r\nHost: t\nX: y\r\n\r\n",
    "control-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n",
    "del-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x7fb\r\n\r\n",
    "http-2.0-line": b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
    "http-1.2": b"GET / HTTP/1.2\r\nHost: t\r\n\r\n",
    "lower-case-method": b"get / HTTP/1.1\r\nHost: t\r\n\r\n",
    "unknown-method": b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n",  # a 405 in any case
    "connect": b"CONNECT t:443 HTTP/1.1\r\nHost: t\r\n\r\n",  # no tunnels here
}

# Ours accepts where h11 refuses, or stops earlier; what ours finds is given.
LENIENT: dict[str, tuple[bytes, Found]] = {
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request line
    # (llhttp skips any CR and LF there).
    "empty-line-first": (b"\r\n" + GET, (("GET", "/a?b=1", ""), ("GET", "/end", ""))),
    # llhttp splits the request line on runs of spaces; the line still ends at its CRLF,
    # so no byte moves between requests.
    "double-space": (
        b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
        (("GET", "/", ""), ("GET", "/end", "")),
    ),
    # An upgrade request is answered as plain HTTP and the connection closed: what follows
    # is left unread (h11, told the upgrade was refused, reads on).
    "upgrade": (
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n" + GET,
        (("GET", "/", ""),),
    ),
}


@pytest.mark.parametrize("name", list(SAME))
def test_ours_frames_requests_as_h11_does(port: int, name: str) -> None:
    assert ours(port, SAME[name]) == theirs(SAME[name])


@pytest.mark.parametrize("name", list(STRICTER))
def test_ours_refuses_what_it_does_not_frame_as_h11_would(port: int, name: str) -> None:
    mine, h11s = ours(port, STRICTER[name]), theirs(STRICTER[name])
    assert mine != h11s, "the same now: move the case to SAME"
    assert mine.verdict == "rejected" and mine.found == h11s.found[: len(mine.found)]


@pytest.mark.parametrize("name", list(LENIENT))
def test_ours_accepts_these_where_h11_does_not(port: int, name: str) -> None:
    data, expected = LENIENT[name]
    mine, h11s = ours(port, data), theirs(data)
    assert mine != h11s, "the same now: move the case to SAME"
    assert (mine.found, mine.verdict) == (expected, "complete")


# --------------------------------------------------------------------- generated streams

_TARGET = st.text("abcxyz019-._~/%?=&", max_size=20).map(lambda path: "/" + path)
_EXTRA = st.sampled_from(
    [
        b"",
        b"X-A: 1\r\n",
        b"x-b:\t two words \r\n",
        b"Accept: */*\r\n",
        b"Connection: keep-alive\r\n",
    ]
)


@st.composite
def _request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
    head = f"{method} {draw(_TARGET)} HTTP/1.1\r\n".encode() + b"Host: t\r\n" + draw(_EXTRA)
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if framing == "none" or (framing == "length" and method == "HEAD"):
        return head + b"\r\n"
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


_REQUESTS = st.lists(_request(), min_size=1, max_size=4)
_SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_SETTINGS
@given(requests=_REQUESTS)
def test_generated_pipelines_are_framed_as_h11_frames_them(
    port: int, requests: list[bytes]
) -> None:
    stream = b"".join(requests)
    assert ours(port, stream) == theirs(stream)


@_SETTINGS
@given(
    requests=_REQUESTS,
    at=st.integers(min_value=0),
    byte=st.sampled_from([b"\r", b"\n", b" ", b"\t", b":", b"0", b"f", b";", b"\x00", b""]),
    replace=st.booleans(),
)
def test_damaged_pipelines_are_never_framed_otherwise_than_by_h11(
    port: int, requests: list[bytes], at: int, byte: bytes, replace: bool
) -> None:
    """One byte changed, added or dropped: ours finds what h11 finds, or refuses sooner."""
    stream = b"".join(requests)
    at %= len(stream)
    damaged = stream[:at] + byte + stream[at + replace :]
    mine, h11s = ours(port, damaged), theirs(damaged)
    if mine == h11s:
        return
    if mine.verdict != "rejected" and byte in b"\r\n " and byte:
        # The two leniencies of LENIENT: an empty line before a request line, a run of
        # spaces in one. Then ours must frame the stream as if the byte were not there.
        starts = [sum(map(len, requests[:n])) for n in range(len(requests))]
        lines = [start + requests[n].index(b"\r\n") for n, start in enumerate(starts)]
        in_first_line = any(start < at <= end for start, end in zip(starts, lines, strict=True))
        between = any(0 <= start - at <= 1 for start in [*starts, len(stream)])
        if (between and byte in b"\r\n") or (in_first_line and byte == b" "):
            assert mine == theirs(stream[:at] + stream[at + replace :]), (damaged, mine)
            return
    assert mine.verdict == "rejected", (damaged, mine, h11s)
    assert mine.found == h11s.found[: len(mine.found)], (damaged, mine, h11s)
