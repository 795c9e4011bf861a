"""``flowyard cluster``: the nodes serving a database and the shards each owns (admin key)."""

import argparse

from flowyard.cli.common import print_table
from flowyard.cli.display import print_json
from flowyard.cli.remote import remote, remote_options
from flowyard.client import Client

COLUMNS = ("node_id", "url", "shards", "started_at", "last_seen_at")


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    cluster = commands.add_parser(
        "cluster",
        parents=[remote_options()],
        help="the cluster's nodes and their shards (needs an admin key)",
        description="Prints GET /admin/cluster: each node (its id, URL, how many shards it"
        " owns, when it started and last renewed its leases), then how many shards there are"
        " and how many no live node owns. A single server is one node owning every shard.",
    )
    cluster.set_defaults(run=remote(show))


def show(client: Client, args: argparse.Namespace) -> int:
    state = client.admin.cluster()
    if args.json:
        print_json(state)
        return 0
    rows = [
        (node.node_id, node.url, len(node.shards), node.started_at, node.last_seen_at)
        for node in state.nodes
    ]
    print_table(COLUMNS, rows)
    print(f"shards: {state.shards.total} total, {state.shards.unowned} unowned")
    return 0
