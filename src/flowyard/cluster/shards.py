"""Which shard an object belongs to: written into its id when it is made.

An id is ``<prefix>_<26 ULID digits>``: 10 digits of time, then 16 random ones. A sharded id
spends its first two random digits (10 bits) on the shard, so the shard of any id is read from
the id alone, without a database read: ``shard_of(id, total)``. An id made before shards (or
by a single server) has random digits there, which still name one shard, always the same.
Shards are therefore limited to :data:`MAX_SHARDS`.
"""

import zlib
from collections.abc import Iterable

from flowyard.errors import Unavailable
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


def key_shard(scope: str, key: str, total: int) -> int:
    """The shard that decides about idempotency key ``key`` of ``scope`` (a project's jobs, a
    blueprint's executions), so that one node sees every use of it."""
    return zlib.crc32(f"{scope}\0{key}".encode("utf-8", "surrogatepass")) % total


def sharded_id(prefix: str, shard: int) -> str:
    """A new id of ``prefix`` that belongs to ``shard``."""
    return new_id(prefix, _PAIRS[shard])


class Placement:
    """The shards one node's engines hold: which objects are theirs, where new ones go.

    Fixed for an engine's life: a change of ownership rebuilds the engines
    (``Supervisor._serve_shards``).
    """

    def __init__(self, total: int, owned: Iterable[int]) -> None:
        self.total = total
        self.owned = frozenset(owned)
        self._order = sorted(self.owned)
        self._next = 0

    @classmethod
    def everything(cls, total: int = DEFAULT_SHARDS) -> "Placement":
        """A server that holds every shard."""
        return cls(total, range(total))

    def holds(self, object_id: str) -> bool:
        """Whether the object ``object_id`` belongs to a shard held here."""
        return shard_of(object_id, self.total) in self.owned

    def new_id(self, prefix: str) -> str:
        """A new id in one of the shards held here (in turn).

        Raises:
            Unavailable: no shard is held here right now.
        """
        order = self._order
        if not order:
            raise Unavailable("this node owns no shard right now; retry or use another node")
        self._next = shard = (self._next + 1) % len(order)
        return sharded_id(prefix, order[shard])

    def beside(self, prefix: str, other_id: str) -> str:
        """A new id in the shard of ``other_id`` (a step's job beside its execution)."""
        return sharded_id(prefix, shard_of(other_id, self.total))

    def keyed(self, prefix: str, scope: str, key: str) -> str:
        """A new id in the shard that decides about idempotency key ``key`` of ``scope``, if
        it is held here (a request with a key is sent to that shard's owner); else as
        :meth:`new_id`: a node makes objects only in the shards it holds."""
        shard = key_shard(scope, key, self.total)
        return sharded_id(prefix, shard) if shard in self.owned else self.new_id(prefix)
