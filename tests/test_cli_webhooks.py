"""``flowyard webhooks list|create|deliveries|retry`` in process, over a fake transport that
answers as DESIGN.md section 7 documents: the requests each command sends, what it prints,
its exit status."""

import functools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from flowyard.cli import main, remote
from flowyard.client import Client
from tests.test_client_webhooks import DELIVERY, DELIVERY_VIEW, HOOK, WEBHOOK, Fake

Answer = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[[Answer], Fake]:
    """``serve(answer)``: the commands' client talks to a fake server; returns its record."""

    def install(answer: Answer) -> Fake:
        fake = Fake(answer)
        factory = functools.partial(Client, transport=httpx.MockTransport(fake))
        monkeypatch.setattr(remote, "Client", factory)
        return fake

    monkeypatch.setenv("FLOWYARD_API_KEY", "sk_live_k")
    monkeypatch.setenv("FLOWYARD_URL", "http://flowyard.test")
    return install


def always(status: int, body: Any) -> Answer:
    return lambda _: httpx.Response(status, json=body)


def test_create_sends_the_url_topics_and_options(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = serve(always(201, WEBHOOK))
    argv = ["webhooks", "create", "https://example.com/hooks", "--topic", "jobs.*"]
    assert main([*argv, "--topic", "workflows.execution.completed", "--name", "orders"]) == 0
    assert fake.last == (
        "POST",
        "/infra/webhooks",
        {},
        {
            "url": "https://example.com/hooks",
            "topics": ["jobs.*", "workflows.execution.completed"],
            "name": "orders",
        },
    )
    out = capsys.readouterr().out
    assert f"secret:     {WEBHOOK['secret']}" in out
    assert "topics:     jobs.*, workflows.execution.completed" in out

    assert main([*argv, "--name", "o", "--secret", "s" * 16, "--json"]) == 0
    assert fake.last[3] == {
        "url": "https://example.com/hooks",
        "topics": ["jobs.*"],
        "name": "o",
        "secret": "s" * 16,
    }
    assert json.loads(capsys.readouterr().out) == WEBHOOK


def test_create_needs_a_topic(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = serve(always(201, WEBHOOK))
    with pytest.raises(SystemExit) as usage:
        main(["webhooks", "create", "https://example.com/hooks"])
    assert usage.value.code == 2 and "--topic" in capsys.readouterr().err
    assert fake.seen == []


def test_list_prints_a_table_or_the_api_list(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = serve(always(200, {"webhooks": [WEBHOOK], "next_cursor": "c2"}))
    assert main(["webhooks", "list", "--limit", "5"]) == 0
    assert fake.last[:3] == ("GET", "/infra/webhooks", {"limit": "5"})
    captured = capsys.readouterr()
    header, row = captured.out.splitlines()
    assert header.split() == ["id", "name", "url", "topics", "enabled", "created_at"]
    assert row.split()[:3] == [HOOK, "orders", "https://example.com/hooks"]
    assert "more webhooks" in captured.err

    assert main(["webhooks", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"webhooks": [WEBHOOK], "next_cursor": "c2"}


def test_deliveries_filters_by_status(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = serve(always(200, {"deliveries": [DELIVERY_VIEW], "next_cursor": None}))
    assert main(["webhooks", "deliveries", HOOK, "--status", "failed"]) == 0
    assert fake.last[:3] == (
        "GET",
        f"/infra/webhooks/{HOOK}/deliveries",
        {"status": "failed", "limit": "25"},
    )
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["id", "event_id", "topic", "status"]
    assert row.split()[:6] == [
        DELIVERY,
        DELIVERY_VIEW["event_id"],
        "jobs.completed",
        "failed",
        "8",
        "500",
    ]

    assert main(["webhooks", "deliveries", HOOK, "--all", "--json"]) == 0
    assert fake.last[2] == {"limit": "100"}
    assert json.loads(capsys.readouterr().out)["deliveries"] == [DELIVERY_VIEW]

    with pytest.raises(SystemExit):
        main(["webhooks", "deliveries", HOOK, "--status", "dead"])


def test_retry_prints_the_delivery_or_the_conflict(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    pending = {**DELIVERY_VIEW, "status": "pending"}
    fake = serve(always(200, pending))
    assert main(["webhooks", "retry", HOOK, DELIVERY]) == 0
    assert fake.last == ("POST", f"/infra/webhooks/{HOOK}/deliveries/{DELIVERY}/retry", {}, None)
    assert "status:           pending" in capsys.readouterr().out
    assert main(["webhooks", "retry", HOOK, DELIVERY, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pending

    serve(always(409, {"code": "conflict", "message": f"delivery {DELIVERY} is not failed"}))
    assert main(["webhooks", "retry", HOOK, DELIVERY]) == 1
    assert capsys.readouterr().err == f"flowyard: conflict: delivery {DELIVERY} is not failed\n"
