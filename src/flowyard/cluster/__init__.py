"""The cluster: several ``flowyard serve`` nodes on one PostgreSQL database (DESIGN §11).

Work is split into shards; each shard is owned by one node at a time through a lease in the
database, and the owner holds the shard's actors, queues and timers in memory. The parts:

- ``shards``: which shard an object belongs to (the shard is written into its id);
- ``view``: what the HTTP layer asks of the cluster (who owns a shard, the nodes);
- ``leases``: the lease table, renewal, takeover, hand-over and fencing (PostgreSQL);
- ``forward``: a request about an object owned elsewhere goes to its owner in one hop;
- ``hop``: the signed header that marks a forwarded request, so that it is forwarded once.

A server without ``--node-url`` (SQLite, or one PostgreSQL server) is a cluster of one node
that owns every shard.
"""
