"""``flowyard serve``'s options, each also read from ``FLOWYARD_<OPTION>``, and the
:class:`~flowyard.settings.Settings` they make."""

import argparse

from flowyard.cli.common import DEFAULTS, described, env, positive_int
from flowyard.cluster.shards import MAX_SHARDS
from flowyard.settings import Settings


def add_settings(parser: argparse.ArgumentParser) -> None:
    """The service's options, each also read from ``FLOWYARD_<OPTION>``."""
    d = DEFAULTS
    parser.add_argument(
        "--host",
        default=env("host", d.host),
        help=described("address to listen on", d.host, "host"),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env("port", str(d.port))),
        help=described("port to listen on; 0 picks a free one", d.port, "port"),
    )
    parser.add_argument(
        "--db",
        default=env("db", d.db),
        help=described(
            "the SQLite file, created (0600) if missing, one server per file; or a"
            " postgresql://user@host:port/db URL",
            d.db,
            "db",
        ),
    )
    parser.add_argument(
        "--sync",
        choices=["full", "normal"],
        default=env("sync", d.sync),
        help=described("SQLite durability: full fsyncs every commit", d.sync, "sync"),
    )
    parser.add_argument(
        "--retry-base-seconds",
        type=float,
        default=float(env("retry_base_seconds", str(d.retry_base_seconds))),
        help=described(
            "base of the jobs' retry backoff, in seconds",
            d.retry_base_seconds,
            "retry_base_seconds",
        ),
    )
    parser.add_argument(
        "--webhook-retry-base-seconds",
        type=_positive_seconds,
        default=env("webhook_retry_base_seconds", f"{d.webhook_retry_base_seconds:g}"),
        help=described(
            "base of the webhook deliveries' retry backoff, in seconds",
            f"{d.webhook_retry_base_seconds:g}",
            "webhook_retry_base_seconds",
        ),
    )
    parser.add_argument(
        "--handler-network",
        choices=["any", "public"],
        default=env("handler_network", d.handler_network),
        help=described(
            "public refuses handler URLs on loopback, private or link-local addresses",
            d.handler_network,
            "handler_network",
        ),
    )
    parser.add_argument(
        "--callback-window-seconds",
        type=float,
        default=float(env("callback_window_seconds", str(d.callback_window_seconds))),
        help=described(
            "how long a handler that answered 202 has to call back",
            d.callback_window_seconds,
            "callback_window_seconds",
        ),
    )
    parser.add_argument(
        "--push-concurrency",
        type=int,
        default=int(env("push_concurrency", str(d.push_concurrency))),
        help=described("push deliveries in flight at once", d.push_concurrency, "push_concurrency"),
    )
    parser.add_argument(
        "--max-inflight",
        type=positive_int,
        default=env("max_inflight", str(d.max_inflight)),  # a string: checked as given
        help=described(
            "requests worked on at once; more are answered 503 with Retry-After",
            d.max_inflight,
            "max_inflight",
        ),
    )
    parser.add_argument(
        "--log-level",
        default=env("log_level", d.log_level),
        help=described("logging level", d.log_level, "log_level"),
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=env("log_format", d.log_format),
        help=described("text lines, or one JSON object per line", d.log_format, "log_format"),
    )
    parser.add_argument(
        "--metrics-token",
        default=env("metrics_token", "") or None,
        help=described(
            "when set, GET /metrics needs 'Authorization: Bearer TOKEN'",
            "none: /metrics is open",
            "metrics_token",
        ),
    )
    parser.add_argument(
        "--max-inflight-per-project",
        type=positive_int,
        default=env("max_inflight_per_project", "") or None,  # None: half of --max-inflight
        help=described(
            "of those, how many one project may hold",
            "half of --max-inflight",
            "max_inflight_per_project",
        ),
    )
    parser.add_argument(
        "--public-url",
        default=env("public_url", "") or None,
        help=described("base URL handlers use to call back", "http://HOST:PORT", "public_url"),
    )
    parser.add_argument(
        "--read-timeout",
        type=_positive_seconds,
        default=env("read_timeout", f"{DEFAULTS.read_timeout_seconds:g}"),
        help="seconds a request's head may take to arrive, and its body may stall; then 408"
        " (default: 10, env FLOWYARD_READ_TIMEOUT)",
    )
    parser.add_argument(
        "--node-url",
        default=env("node_url", "") or None,
        help=described(
            "this node's base URL as the other nodes reach it: the server joins the cluster"
            " of its PostgreSQL database (DESIGN §11)",
            "none, a server of its own",
            "node_url",
        ),
    )
    parser.add_argument(
        "--shards",
        type=_shard_count,
        default=env("shards", str(d.shards)),
        help=described(
            "shards of a new PostgreSQL database, fixed from then on", d.shards, "shards"
        ),
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """The :class:`Settings` the options of :func:`add_settings` name."""
    return Settings(
        host=args.host,
        port=args.port,
        db=args.db,
        sync=args.sync,
        retry_base_seconds=args.retry_base_seconds,
        handler_network=args.handler_network,
        callback_window_seconds=args.callback_window_seconds,
        push_concurrency=args.push_concurrency,
        max_inflight=args.max_inflight,
        max_inflight_per_project=args.max_inflight_per_project,
        log_level=args.log_level,
        log_format=args.log_format,
        metrics_token=args.metrics_token,
        public_url=args.public_url,
        read_timeout_seconds=args.read_timeout,
        webhook_retry_base_seconds=args.webhook_retry_base_seconds,
        node_url=args.node_url,
        shards=args.shards,
    )


def _shard_count(text: str) -> int:
    count = positive_int(text)
    if count > MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SHARDS} shards")
    return count


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value
