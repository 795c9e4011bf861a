"""Forwarding a request about an object to its shard's owner (``cluster/forward.py``).

The owner is a real ``flowyard serve`` process; the forwarding node runs in this process on a
real socket, with a cluster that says every shard is owned by the owner's URL (or by nobody,
or by an address where nothing listens). Clients talk to the forwarding node over HTTP, raw
sockets where the bytes matter.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from anyio.abc import ByteStream

from flowyard.cluster import hop
from flowyard.cluster.forward import FORWARDED_BY, Forwarder, Forwarding, object_of
from flowyard.errors import Unauthorized, Unavailable
from flowyard.http.app import create_app
from flowyard.http.boundary import ErrorBoundary
from flowyard.settings import Settings
from tests.cluster_support import (
    UNKNOWN_JOB,
    FakeCluster,
    Owner,
    counting_relay,
    front_node,
    now_ms,
    pull_job,
    start_owner,
)
from tests.conftest import ServerProcess, Service, free_port, serve_tcp
from tests.jobs_support import PULL, error_of
from tests.raw_http import exchange, request_head


@pytest.fixture
def owner(tmp_path: Path, server_process: Callable[..., ServerProcess]) -> Owner:
    return start_owner(tmp_path, server_process)


# ------------------------------------------------------------------ which paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/infra/jobs/job_01ABC", "job_01ABC"),
        ("/infra/jobs/job_01ABC/runs", "job_01ABC"),
        ("/infra/jobs/job_01ABC/ack", "job_01ABC"),
        ("/infra/jobs/job_01ABC/heartbeat", "job_01ABC"),
        ("/infra/jobs/job_01ABC/trigger", "job_01ABC"),
        ("/infra/jobs/job_01ABC/retry", "job_01ABC"),
        ("/infra/jobs/job_01ABC/runs/run_1/callback", "job_01ABC"),
        ("/infra/workflows/executions/wfexec_9", "wfexec_9"),
        ("/infra/workflows/executions/wfexec_9/steps/a/items", "wfexec_9"),
        ("/infra/workflows/executions/wfexec_9/cancel", "wfexec_9"),
        ("/infra/workflows/schedules/wfsch_7", "wfsch_7"),
        ("/infra/workflows/schedules/wfsch_7/trigger", "wfsch_7"),
        ("/infra/jobs", None),
        ("/infra/jobs/", None),
        ("/infra/jobs/claim", None),
        ("/infra/jobs/exchange", None),
        ("/infra/jobs/batch", None),
        ("/infra/jobs/signing-secret", None),
        ("/infra/jobs/signing-secret/rotate", None),
        ("/infra/jobs/wfexec_9", None),
        ("/infra/workflows/executions", None),
        ("/infra/workflows/schedules", None),
        ("/infra/workflows/blueprints/wf_1/trigger", None),
        ("/infra/webhooks/whk_1", None),
        ("/admin/jobs", None),
        ("/livez", None),
        ("/infra/jobsjob_1", None),
    ],
)
def test_the_paths_about_one_object(path: str, expected: str | None) -> None:
    assert object_of(path) == expected


# ------------------------------------------------------------------ the header


def test_the_hop_header_verifies_only_as_signed() -> None:
    now = now_ms()
    value = hop.sign("s3cret", "node-a", now, "POST", b"/infra/jobs/job_1/ack?x=1")
    assert hop.verify("s3cret", value, now + 1000, "POST", b"/infra/jobs/job_1/ack?x=1") == (
        "node-a"
    )
    refused = [
        ("other", value, now, "POST", b"/infra/jobs/job_1/ack?x=1"),  # another secret
        ("s3cret", value, now, "GET", b"/infra/jobs/job_1/ack?x=1"),  # another method
        ("s3cret", value, now, "POST", b"/infra/jobs/job_2/ack?x=1"),  # another target
        ("s3cret", value, now + 30_001, "POST", b"/infra/jobs/job_1/ack?x=1"),  # stale
        ("s3cret", value, now - 30_001, "POST", b"/infra/jobs/job_1/ack?x=1"),  # from ahead
        ("s3cret", value.replace(b"node-a", b"node-b"), now, "POST", b"/infra/jobs/job_1/ack?x=1"),
        ("s3cret", b"node-a", now, "POST", b"/"),
        ("s3cret", value + b" " + b"x" * 300, now, "POST", b"/infra/jobs/job_1/ack?x=1"),
        ("", hop.sign("", "n", now, "GET", b"/"), now, "GET", b"/"),  # no secret loaded
    ]
    for secret, sent, at, method, target in refused:
        with pytest.raises(Unauthorized):
            hop.verify(secret, sent, at, method, target)


# ------------------------------------------------------------------ through a real owner


async def test_the_owner_answers_through_the_forwarding_node(tmp_path: Path, owner: Owner) -> None:
    job = await pull_job(owner)
    async with owner.client() as direct:
        limited = await direct.patch(
            f"/admin/projects/{owner.project_id}",
            json={"rate_limit_rps": 50},
            headers={"Authorization": f"Bearer {owner.admin}"},
        )
        assert limited.status_code == 200, limited.text
        expected = (await direct.get(f"/infra/jobs/{job['id']}")).json()
    async with front_node(tmp_path, owner.server.url) as front, owner.client(front.url) as client:
        got = await client.get(f"/infra/jobs/{job['id']}", headers={"X-Request-Id": "trace-1"})
        assert got.status_code == 200, got.text
        assert got.json() == expected
        assert got.headers["x-request-id"] == "trace-1"
        assert got.headers["x-ratelimit-limit"] == "50"
        assert int(got.headers["x-ratelimit-remaining"]) < 50
        assert "x-ratelimit-reset" in got.headers
        assert got.headers.get_list("x-request-id") == ["trace-1"]  # once, not twice
        assert len(got.headers.get_list("date")) == 1

        runs = await client.get(f"/infra/jobs/{job['id']}/runs?limit=2")
        assert runs.status_code == 200, runs.text
        assert runs.json() == {"runs": [], "next_cursor": None}

        # A body goes along, and the owner's errors come back as the owner gave them.
        bad = await client.post(f"/infra/jobs/{job['id']}/heartbeat", json={"nope": 1})
        details = error_of(bad, 400, "bad_request")["details"]
        assert any("nope" in detail["path"] for detail in details), details
        missing = await client.get(f"/infra/jobs/{UNKNOWN_JOB}")
        error_of(missing, 404, "not_found")
        cancelled = await client.delete(f"/infra/jobs/{job['id']}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"

        # The owner's key means nothing to the forwarding node: what is not about one object
        # is served here.
        listed = await client.get("/infra/jobs")
        error_of(listed, 401, "unauthorized")
    async with owner.client() as direct:
        assert (await direct.get(f"/infra/jobs/{job['id']}")).json()["status"] == "cancelled"


async def test_the_owner_s_429_comes_back_with_retry_after(tmp_path: Path, owner: Owner) -> None:
    job = await pull_job(owner)
    async with owner.client() as direct:
        limited = await direct.patch(
            f"/admin/projects/{owner.project_id}",
            json={"rate_limit_rps": 1},
            headers={"Authorization": f"Bearer {owner.admin}"},
        )
        assert limited.status_code == 200, limited.text
    async with front_node(tmp_path, owner.server.url) as front, owner.client(front.url) as client:
        for _ in range(20):
            got = await client.get(f"/infra/jobs/{job['id']}")
            if got.status_code == 429:
                break
        error_of(got, 429, "rate_limited")
        assert int(got.headers["retry-after"]) >= 1
        assert got.headers["x-ratelimit-limit"] == "1"
        assert got.headers["x-ratelimit-remaining"] == "0"


async def test_head_is_answered_like_get_without_the_body(tmp_path: Path, owner: Owner) -> None:
    job = await pull_job(owner)
    auth = f"Authorization: Bearer {owner.key}"
    async with front_node(tmp_path, owner.server.url) as front:
        got = await exchange(front.url, request_head("GET", f"/infra/jobs/{job['id']}", auth))
        async with await anyio.connect_tcp("127.0.0.1", int(front.url.rsplit(":", 1)[1])) as s:
            await s.send(request_head("HEAD", f"/infra/jobs/{job['id']}", auth))
            head = b""
            while b"\r\n\r\n" not in head:
                head += await s.receive()
    assert got.status == 200
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200")
    assert f"content-length: {len(got.body)}" in [line.lower() for line in lines]
    assert head.endswith(b"\r\n\r\n")  # no body


async def test_connections_to_the_owner_are_kept_alive(tmp_path: Path, owner: Owner) -> None:
    job = await pull_job(owner)
    async with (
        counting_relay(owner.server.url) as relay,
        front_node(tmp_path, relay.url) as front,
        owner.client(front.url) as client,
    ):
        for _ in range(5):
            got = await client.get(f"/infra/jobs/{job['id']}")
            assert got.status_code == 200, got.text
        assert relay.connections == 1
        metrics = (await client.get("/metrics")).text
        [counted] = [
            line
            for line in metrics.splitlines()
            if line.startswith("flowyard_http_requests_total{") and 'route="forwarded"' in line
        ]
        assert 'method="GET"' in counted and 'status="200"' in counted
        assert counted.endswith(" 5.0")
        sent = b"".join(relay.requests).split(b"\r\n")
        [value] = [line for line in sent if line.startswith(b"x-flowyard-forwarded: ")][:1]
        target = f"/infra/jobs/{job['id']}".encode()
        secret = front.supervisor.jobs.push.server_secret
        node = hop.verify(secret, value.split(b": ", 1)[1], now_ms(), "GET", target)
        assert node == "front"


async def test_a_handler_forwards_through_the_same_client(owner: Owner) -> None:
    job = await pull_job(owner)
    forwarder = Forwarder(lambda: FakeCluster(None), lambda: "s3cret")
    target = f"/infra/jobs/{job['id']}"
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": target,
        "raw_path": target.encode(),
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {owner.key}".encode()), (b"host", b"front")],
    }
    try:
        response = await forwarder.forward(scope, b"", owner.server.url)
        assert response.status_code == 200
        assert msgspec.json.decode(response.body)["id"] == job["id"]
        scope[FORWARDED_BY] = "elsewhere"  # as Forwarding notes a verified hop
        with pytest.raises(Unavailable, match="forwarded only once"):
            await forwarder.forward(scope, b"", owner.server.url)
    finally:
        await forwarder.aclose()


async def test_the_owner_checks_the_hop_and_never_hops_again(tmp_path: Path) -> None:
    """Two nodes in a row: the client asks A, A forwards to B, whose key it is."""
    async with (
        front_node(tmp_path, None, "b") as b,
        front_node(tmp_path, b.url, "a") as a,
        httpx.AsyncClient(base_url=a.url, headers={"Authorization": f"Bearer {b.key}"}) as client,
    ):
        b.supervisor.jobs.push.server_secret = a.supervisor.jobs.push.server_secret  # one db
        async with httpx.AsyncClient(base_url=b.url) as direct:
            created = await direct.post(
                "/infra/jobs", json=PULL, headers={"Authorization": f"Bearer {b.key}"}
            )
        job_id = created.json()["id"]
        got = await client.get(f"/infra/jobs/{job_id}")
        assert (got.status_code, got.json()["id"]) == (200, job_id)
        error_of(await client.get(f"/infra/jobs/{UNKNOWN_JOB}"), 404, "not_found")

        b.cluster.owner = "http://127.0.0.1:1"  # B has lost the shard meanwhile
        moved = error_of(await client.get(f"/infra/jobs/{job_id}"), 503, "unavailable")
        assert "forwarded only once" in moved["message"]
        assert b.cluster.asked and a.cluster.asked

        b.cluster.owner = None
        b.supervisor.jobs.push.server_secret = "another cluster's"
        forged = error_of(await client.get(f"/infra/jobs/{job_id}"), 401, "unauthorized")
        assert "signature" in forged["message"]


async def test_a_second_hop_is_refused_with_503(tmp_path: Path, owner: Owner) -> None:
    target = f"/infra/jobs/{UNKNOWN_JOB}"
    async with front_node(tmp_path, owner.server.url) as front:
        answer = await exchange(front.url, request_head("GET", target, front.signed("GET", target)))
    assert answer.status == 503
    assert answer.json()["code"] == "unavailable"
    assert "forwarded only once" in answer.json()["message"]
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["x-request-id"]


async def test_a_signed_request_for_this_node_is_served(tmp_path: Path) -> None:
    async with front_node(tmp_path, None) as front:
        target = "/infra/jobs/" + UNKNOWN_JOB
        answer = await exchange(front.url, request_head("GET", target, front.signed("GET", target)))
    assert answer.status == 401  # the route's own check: the request came without a key
    assert answer.json()["code"] == "unauthorized"


@pytest.mark.parametrize("path", [f"/infra/jobs/{UNKNOWN_JOB}", "/infra/jobs", "/livez"])
async def test_forged_or_stale_headers_are_refused(tmp_path: Path, path: str) -> None:
    async with front_node(tmp_path, "http://127.0.0.1:1") as front:
        good = front.signed("GET", path).split(": ", 1)[1]
        node, stamp, mac = good.split(" ")
        forged = [
            f"{node} {stamp} {'0' * 64}",
            f"other {stamp} {mac}",
            f"{node} {int(stamp) + 1} {mac}",
            "front",
            "x" * 10_000,
            "",
        ]
        for value in forged:
            head = request_head("GET", path, f"X-Flowyard-Forwarded: {value}")
            answer = await exchange(front.url, head)
            assert answer.status == 401, (value, answer)
            assert answer.json()["code"] == "unauthorized"
            assert "x-flowyard-forwarded" in answer.json()["message"]
        stale = await exchange(
            front.url, request_head("GET", path, front.signed("GET", path, 31_000))
        )
        assert stale.status == 401
        assert "stale" in stale.json()["message"]
        other_path = await exchange(
            front.url, request_head("GET", path + "x", front.signed("GET", path))
        )
        assert other_path.status == 401
        assert front.cluster.asked == []  # refused before anything else


async def test_an_unreachable_owner_is_503(tmp_path: Path) -> None:
    async with (
        front_node(tmp_path, f"http://127.0.0.1:{free_port()}") as front,
        httpx.AsyncClient(base_url=front.url) as client,
    ):
        got = await client.post(f"/infra/jobs/{UNKNOWN_JOB}/ack", json={})
    body = error_of(got, 503, "unavailable")
    assert "cannot be reached" in body["message"]


async def test_an_owner_that_does_not_answer_in_time_is_503(tmp_path: Path) -> None:
    async def silent(stream: ByteStream) -> None:
        async with stream:
            await stream.receive()
            await anyio.sleep_forever()

    async with serve_tcp(silent) as port, front_node(tmp_path, f"http://127.0.0.1:{port}") as front:
        front.forwarder.timeout = 0.3
        async with httpx.AsyncClient(base_url=front.url) as client:
            got = await client.get(f"/infra/jobs/{UNKNOWN_JOB}")
    body = error_of(got, 503, "unavailable")
    assert "did not answer within 0.3 s" in body["message"]


async def test_a_shard_without_an_owner_is_503(tmp_path: Path) -> None:
    async with (
        front_node(tmp_path, "") as front,
        httpx.AsyncClient(base_url=front.url) as client,
    ):
        got = await client.get(f"/infra/workflows/executions/wfexec_{'0' * 26}")
        other = await client.get("/livez")
    error_of(got, 503, "unavailable")
    assert other.status_code == 200
    assert front.cluster.asked == [0]


async def test_a_body_over_the_limit_is_refused_before_the_hop(tmp_path: Path) -> None:
    async with (
        front_node(tmp_path, f"http://127.0.0.1:{free_port()}") as front,
        httpx.AsyncClient(base_url=front.url) as client,
    ):
        got = await client.post(f"/infra/jobs/{UNKNOWN_JOB}/ack", content=b"x" * ((1 << 20) + 1))
    error_of(got, 413, "payload_too_large")


async def test_a_key_sends_a_create_to_its_owner_and_its_absence_keeps_it_here(
    tmp_path: Path,
) -> None:
    async with front_node(tmp_path, f"http://127.0.0.1:{free_port()}") as front:
        head = request_head(  # no key: a plain request of this node (401 here, no hop)
            "POST", "/infra/jobs", "Content-Type: application/json", "Content-Length: 2"
        )
        plain = await exchange(front.url, head + b"{}")
        keyed_body = b'{"idempotency_key": "k1"}'
        head = request_head(
            "POST",
            "/infra/jobs",
            "Content-Type: application/json",
            f"Content-Length: {len(keyed_body)}",
        )
        keyed = await exchange(front.url, head + keyed_body)  # to the key's owner: unreachable
        head = request_head(  # too large to read for its key: served here, 401 before 413
            "POST", "/infra/jobs", "Content-Type: application/json", "Content-Length: 2000000"
        )
        large = await exchange(front.url, head)
    assert plain.status == 401, plain
    assert keyed.status == 503, keyed
    assert large.status == 401, large
    assert front.cluster.asked  # the key's shard was looked up


@pytest.mark.parametrize("node_url", [None, "http://127.0.0.1:9"])
def test_only_a_node_of_a_cluster_has_the_layer(tmp_path: Path, node_url: str | None) -> None:
    pytest.importorskip("asyncpg")
    # A node's database is PostgreSQL (not connected to here: the app is only built).
    db = str(tmp_path / "layers.db") if node_url is None else "postgresql://x@127.0.0.1:1/x"
    app: Any = create_app(Settings(db=db, node_url=node_url))
    stack = app.build_middleware_stack()
    assert isinstance(stack, ErrorBoundary)
    if node_url is None:
        assert stack.app == app.router.app
    else:
        assert isinstance(stack.app, Forwarding)
        assert stack.app.app == app.router.app


def test_a_cluster_node_needs_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a PostgreSQL database"):
        create_app(Settings(db=str(tmp_path / "node.db"), node_url="http://127.0.0.1:9"))


async def test_a_server_outside_a_cluster_ignores_the_header(service: Service) -> None:
    forged = f"X-Flowyard-Forwarded: front 1 {'0' * 64}"
    auth = f"Authorization: Bearer {service.key}"
    for target in ("/infra/jobs", f"/infra/jobs/{UNKNOWN_JOB}"):
        answer = await exchange(service.url, request_head("GET", target, auth, forged))
        assert answer.status == (200 if target == "/infra/jobs" else 404), answer
