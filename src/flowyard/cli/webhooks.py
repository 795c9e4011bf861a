"""``flowyard webhooks list|create|deliveries|retry``: subscriptions to events and the history
of what was sent to them, on a server."""

import argparse
from typing import get_args

from flowyard.cli.common import described
from flowyard.cli.display import cell, print_fields, print_json
from flowyard.cli.remote import add_paging, fetch, print_page, remote, remote_options
from flowyard.client import Client
from flowyard.client.models import UNSET, DeliveryStatusName, Webhook, WebhookDelivery

LIST_COLUMNS = ("id", "name", "url", "topics", "enabled", "created_at")
DELIVERY_COLUMNS = (
    "id",
    "event_id",
    "topic",
    "status",
    "attempts",
    "http_status",
    "next_attempt_at",
    "created_at",
    "response",
)


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    webhooks = commands.add_parser(
        "webhooks", help="subscribe URLs to events, see and retry their deliveries"
    )
    sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    options = remote_options()

    listing = sub.add_parser("list", parents=[options], help="webhooks, newest first")
    add_paging(listing)
    listing.set_defaults(run=remote(list_webhooks))

    create = sub.add_parser(
        "create",
        parents=[options],
        help="subscribe a URL to topics",
        description="Creates a webhook: events whose topic matches one of the --topic patterns "
        "are POSTed to RECEIVER_URL, signed with the webhook's secret (printed; verify with "
        "flowyard.verify). It is an argument, not an option, because --url names the server.",
    )
    create.add_argument(
        "receiver_url", metavar="RECEIVER_URL", help="where events are POSTed (http or https)"
    )
    create.add_argument(
        "--topic",
        dest="topics",
        action="append",
        required=True,
        metavar="PATTERN",
        help="a topic (jobs.completed), * or a prefix ending in .* (jobs.*); repeat it for "
        "more (required)",
    )
    create.add_argument("--name", required=True, help="a name to tell it by, 1..128 (required)")
    create.add_argument(
        "--secret",
        help=described("the signing secret, 16..256 characters", "one the server generates"),
    )
    create.set_defaults(run=remote(create_webhook))

    deliveries = sub.add_parser(
        "deliveries", parents=[options], help="a webhook's deliveries, newest first"
    )
    deliveries.add_argument("webhook_id", metavar="WEBHOOK_ID", help="the webhook's id (whk_...)")
    deliveries.add_argument(
        "--status",
        choices=get_args(DeliveryStatusName),
        help=described("only deliveries in this status", "any status"),
    )
    add_paging(deliveries)
    deliveries.set_defaults(run=remote(list_deliveries))

    retry = sub.add_parser(
        "retry", parents=[options], help="send a failed delivery again (one more round)"
    )
    retry.add_argument("webhook_id", metavar="WEBHOOK_ID", help="the webhook's id (whk_...)")
    retry.add_argument("delivery_id", metavar="DELIVERY_ID", help="the delivery's id (whd_...)")
    retry.set_defaults(run=remote(retry_delivery))


def _row(hook: Webhook) -> list[object]:
    topics = cell(", ".join(hook.topics))
    return [hook.id, cell(hook.name, 32), cell(hook.url), topics, hook.enabled, hook.created_at]


def list_webhooks(client: Client, args: argparse.Namespace) -> int:
    """``flowyard webhooks list``."""
    page = fetch(args, client.webhooks.list, client.webhooks.iter)
    print_page(args, "webhooks", page, LIST_COLUMNS, _row)
    return 0


def create_webhook(client: Client, args: argparse.Namespace) -> int:
    """``flowyard webhooks create``: the webhook as created, with its secret."""
    hook = client.webhooks.create(
        args.receiver_url,
        args.topics,
        name=args.name,
        secret=UNSET if args.secret is None else args.secret,
    )
    if args.json:
        print_json(hook)
        return 0
    print_fields(
        [
            ("id", hook.id),
            ("name", hook.name),
            ("url", hook.url),
            ("topics", ", ".join(hook.topics)),
            ("enabled", hook.enabled),
            ("secret", hook.secret),
            ("created_at", hook.created_at),
        ],
        uncut=("url", "topics", "secret"),
    )
    return 0


def _delivery_row(delivery: WebhookDelivery) -> list[object]:
    return [
        delivery.id,
        delivery.event_id,
        cell(delivery.topic, 32),
        delivery.status,
        delivery.attempts,
        delivery.http_status,
        delivery.next_attempt_at,
        delivery.created_at,
        cell(delivery.response_snippet, 32),
    ]


def list_deliveries(client: Client, args: argparse.Namespace) -> int:
    """``flowyard webhooks deliveries``: attempts made, the latest status and answer."""
    page = fetch(
        args,
        client.webhooks.deliveries,
        client.webhooks.iter_deliveries,
        webhook_id=args.webhook_id,
        status=args.status,
    )
    print_page(args, "deliveries", page, DELIVERY_COLUMNS, _delivery_row)
    return 0


def retry_delivery(client: Client, args: argparse.Namespace) -> int:
    """``flowyard webhooks retry``: the delivery, ``pending`` again."""
    delivery = client.webhooks.retry_delivery(args.webhook_id, args.delivery_id)
    if args.json:
        print_json(delivery)
        return 0
    print_fields(
        [
            ("id", delivery.id),
            ("webhook_id", delivery.webhook_id),
            ("event_id", delivery.event_id),
            ("topic", delivery.topic),
            ("status", delivery.status),
            ("attempts", delivery.attempts),
            ("http_status", delivery.http_status),
            ("duration_ms", delivery.duration_ms),
            ("response_snippet", delivery.response_snippet),
            ("next_attempt_at", delivery.next_attempt_at),
            ("created_at", delivery.created_at),
            ("updated_at", delivery.updated_at),
        ]
    )
    return 0
