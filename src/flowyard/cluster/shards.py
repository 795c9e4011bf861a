"""Which shard an object belongs to: written into its id when it is made.

An id is ``<prefix>_<26 ULID digits>``: 10 digits of time, then 16 random ones. A sharded id
spends its first two random digits (10 bits) on the shard, so the shard of any id is read from
the id alone, without a database read: ``shard_of(id, total)``. An id made before shards (or
by a single server) has random digits there, which still name one shard, always the same.
Shards are therefore limited to :data:`MAX_SHARDS`.
"""

import zlib

from flowyard.ids import _PAIRS, new_id

MAX_SHARDS = 1024
"""Two Crockford base32 digits."""
DEFAULT_SHARDS = 64

_VALUE_OF_PAIR = {pair: value for value, pair in enumerate(_PAIRS)}
_SHARD_DIGITS = slice(10, 12)  # of the ULID part: the first two random digits


def shard_of(object_id: str, total: int) -> int:
    """The shard of ``object_id`` among ``total``; any text names some shard."""
    ulid = object_id[object_id.rfind("_") + 1 :]
    value = _VALUE_OF_PAIR.get(ulid[_SHARD_DIGITS]) if len(ulid) == 26 else None
    if value is None:
        value = zlib.crc32(object_id.encode("utf-8", "surrogatepass"))
    return value % total


def key_shard(project_id: str, key: str, total: int) -> int:
    """The shard that decides about an idempotency key (so one node sees every use of it)."""
    return zlib.crc32(f"{project_id}\0{key}".encode("utf-8", "surrogatepass")) % total


def sharded_id(prefix: str, shard: int) -> str:
    """A new id of ``prefix`` that belongs to ``shard``."""
    plain = new_id(prefix)
    cut = len(prefix) + 1 + _SHARD_DIGITS.start
    return plain[:cut] + _PAIRS[shard] + plain[cut + 2 :]
