"""The ``x-flowyard-forwarded`` header: which node forwarded a request, signed with the secret
every node of the cluster shares.

A node forwards a request about an object to the object's owner (``cluster/forward.py``) and
says so in this header: its node id, the time in milliseconds and an HMAC-SHA256 over both,
the method and the request target, keyed with the server secret of the database
(``storage.projects.server_secret``). The owner then knows the request made its one hop: if
the shard moved meanwhile, it answers ``503`` (retry) instead of forwarding again, so that two
nodes with different views of the leases cannot pass a request back and forth.

The header grants nothing else: the forwarded request still carries the client's own key and
is authenticated, scoped and rate-limited on the owner like any other. A header that does not
verify (not ours, edited, or older than :data:`MAX_AGE_MS`) is refused with ``401``, so that a
client cannot make a node believe that a request was forwarded.
"""

import hashlib
import hmac
import re

from flowyard.errors import Unauthorized

HEADER = b"x-flowyard-forwarded"
MAX_AGE_MS = 30_000
"""A header older (or newer: clocks drift) than this is stale and refused."""
MAX_LENGTH = 256
"""The longest header value read; longer is refused before any work."""
_FORM = re.compile(rb"([\x21-\x7e]{1,100}) ([0-9]{1,15}) ([0-9a-f]{64})")
"""``<node id> <ms since the epoch> <HMAC in hex>``."""


def _mac(secret: str, node_id: bytes, stamp: bytes, method: bytes, target: bytes) -> str:
    message = b"\n".join((node_id, stamp, method, target))
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, node_id: str, now_ms: int, method: str, target: bytes) -> bytes:
    """The header's value for a request ``method target`` forwarded by ``node_id`` now."""
    stamp = b"%d" % now_ms
    node = node_id.encode("ascii")
    return b"%s %s %s" % (node, stamp, _mac(secret, node, stamp, method.encode(), target).encode())


def verify(secret: str, value: bytes, now_ms: int, method: str, target: bytes) -> str:
    """The id of the node that forwarded ``method target``, if ``value`` proves it.

    Raises:
        Unauthorized: the value is malformed, its signature does not match, or it is stale.
    """
    found = _FORM.fullmatch(value) if len(value) <= MAX_LENGTH else None
    if found is None:
        raise Unauthorized("malformed x-flowyard-forwarded header")
    node, stamp, mac = found.groups()
    expected = _mac(secret, node, stamp, method.encode(), target)
    if not secret or not hmac.compare_digest(expected.encode(), mac):
        raise Unauthorized("the x-flowyard-forwarded header's signature does not match")
    if abs(now_ms - int(stamp)) > MAX_AGE_MS:
        raise Unauthorized(
            f"the x-flowyard-forwarded header is stale (over {MAX_AGE_MS // 1000} s old)"
        )
    return node.decode("ascii")


def target_of(raw_path: bytes, query: bytes) -> bytes:
    """The request target as sent on the wire (what the signature covers)."""
    return raw_path + b"?" + query if query else raw_path
