"""Service settings: one frozen struct, filled from CLI options or ``FLOWYARD_*`` variables."""

from typing import Literal

import msgspec

SyncMode = Literal["full", "normal"]
HandlerNetwork = Literal["any", "public"]
LogFormat = Literal["text", "json"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything that changes how ``flowyard serve`` behaves.

    Attributes:
        db: path of the SQLite file (created on first start), or a ``postgresql://`` URL.
        sync: SQLite ``synchronous`` mode; ``full`` fsyncs every commit.
        retry_base_seconds: base of the retry backoff formulas.
        handler_network: ``public`` refuses handler URLs that resolve to non-public addresses.
        callback_window_seconds: how long a handler that answered 202 has to call back.
        push_concurrency: how many push deliveries run at once, across all queues.
        mailbox_size: capacity of each actor's mailbox.
        max_inflight: requests worked on at once; more are answered 503 (see http/inflight.py).
        max_inflight_per_project: how many of those one project may hold (None: half of
            ``max_inflight``); more of its requests are answered 503.
        public_url: the base URL handlers use for callbacks (default: the bound address).
        webhook_retry_base_seconds: base of the webhook deliveries' retry backoff.
        read_timeout_seconds: how long a request's head may take to arrive, and a body may
            stall, before the answer is ``408`` (see http/limits.py).
        log_format: ``text`` lines, or one JSON object per line (DESIGN §9).
        metrics_token: when set, ``GET /metrics`` needs ``Authorization: Bearer <it>``.
        node_url: this node's base URL as the other nodes of a cluster reach it; set, the
            server is a cluster node (PostgreSQL only, DESIGN §11).
        shards: how many shards a new database is created with (fixed from then on).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    db: str = "./flowyard.db"
    sync: SyncMode = "full"
    retry_base_seconds: float = 2.0
    handler_network: HandlerNetwork = "any"
    callback_window_seconds: float = 3600.0
    push_concurrency: int = 256
    mailbox_size: int = 10_000
    max_inflight: int = 256
    max_inflight_per_project: int | None = None
    log_level: str = "info"
    public_url: str | None = None
    read_timeout_seconds: float = 10.0
    webhook_retry_base_seconds: float = 10.0
    log_format: LogFormat = "text"
    metrics_token: str | None = None
    node_url: str | None = None
    shards: int = 64
