"""Which shard an object belongs to, where new objects go, and which requests carry a key."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowyard.cluster import keyed
from flowyard.cluster.shards import MAX_SHARDS, Placement, key_shard, shard_of, sharded_id
from flowyard.errors import Unavailable
from flowyard.ids import new_id


@given(st.integers(min_value=1, max_value=MAX_SHARDS), st.data())
def test_a_sharded_id_names_its_shard(total: int, data: st.DataObject) -> None:
    shard = data.draw(st.integers(min_value=0, max_value=total - 1))
    made = sharded_id("job", shard)
    assert shard_of(made, total) == shard
    assert made.startswith("job_") and len(made) == len(new_id("job"))


@given(st.text(max_size=80), st.integers(min_value=1, max_value=MAX_SHARDS))
def test_any_text_names_one_shard_always_the_same(text: str, total: int) -> None:
    shard = shard_of(text, total)
    assert 0 <= shard < total
    assert shard_of(text, total) == shard


def test_ids_made_before_shards_keep_one_shard() -> None:
    old = new_id("wfexec")
    assert shard_of(old, 64) == shard_of(old, 64)
    assert 0 <= shard_of(old, 64) < 64


def test_a_placement_makes_ids_only_in_its_shards_in_turn() -> None:
    place = Placement(64, [3, 9, 40])
    shards = [shard_of(place.new_id("job"), 64) for _ in range(6)]
    assert sorted(shards) == [3, 3, 9, 9, 40, 40]  # each in turn
    assert place.holds(sharded_id("job", 9)) and not place.holds(sharded_id("job", 10))


def test_beside_keeps_the_shard_of_the_other_object() -> None:
    place = Placement(64, [5])
    execution = place.new_id("wfexec")
    assert shard_of(place.beside("job", execution), 64) == 5


def test_a_key_s_shard_is_used_when_held_and_never_one_that_is_not() -> None:
    total = 64
    key = "order-17"
    shard = key_shard("wf_1", key, total)
    held = Placement(total, [shard])
    assert shard_of(held.keyed("wfexec", "wf_1", key), total) == shard
    other = Placement(total, [(shard + 1) % total])
    assert shard_of(other.keyed("wfexec", "wf_1", key), total) == (shard + 1) % total


def test_a_placement_without_shards_makes_nothing() -> None:
    with pytest.raises(Unavailable):
        Placement(64, []).new_id("job")


def test_everything_holds_every_id() -> None:
    place = Placement.everything(8)
    assert all(place.holds(new_id("job")) for _ in range(50))


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/infra/jobs", keyed.JOBS_SCOPE),
        ("POST", "/infra/workflows/blueprints/wf_01ABC/trigger", "wf_01ABC"),
        ("GET", "/infra/jobs", None),
        ("POST", "/infra/jobs/batch", None),
        ("POST", "/infra/workflows/blueprints/wf_01ABC/other", None),
        ("POST", "/infra/workflows/blueprints/x/trigger", None),
    ],
)
def test_the_requests_a_key_decides(method: str, path: str, scope: str | None) -> None:
    assert keyed.key_scope(method, path) == scope


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"idempotency_key": "k1", "input_data": {}}', "k1"),
        (b'{"idempotency_key": ""}', None),
        (b'{"idempotency_key": 5}', None),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"", None),
    ],
)
def test_the_key_is_read_from_a_body_only_when_it_is_one(body: bytes, key: str | None) -> None:
    assert keyed.idempotency_key(body) == key


async def test_a_body_read_for_its_key_is_given_to_the_handler_again() -> None:
    messages = [{"type": "http.disconnect"}]

    async def receive() -> dict[str, object]:
        return messages.pop()

    again = keyed.replay(b"{}", receive)
    assert await again() == {"type": "http.request", "body": b"{}", "more_body": False}
    assert await again() == {"type": "http.disconnect"}
