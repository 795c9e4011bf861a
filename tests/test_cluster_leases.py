"""Shard leases on a real PostgreSQL: sharing, takeover, hand-over, fencing, notices.

Each test drives :class:`~flowyard.cluster.leases.Leases` objects in this process, as the
supervisor would (``settle`` once a change is asked for), on a fresh database; the
three-process behaviour is in ``tests/test_cluster.py``.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from bench import postgres

from flowyard.cluster.leases import Leases
from flowyard.errors import Unavailable
from flowyard.storage.intents import SetBalance, SetServerSecret, Spend
from flowyard.storage.projects import new_project
from tests.cluster_nodes import postgres_server

asyncpg = pytest.importorskip("asyncpg")

from flowyard.storage.postgres import PostgresDatabase  # noqa: E402  (needs asyncpg)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
async def db_url(cluster: str) -> AsyncIterator[str]:
    url = postgres.create_database(cluster)
    store = PostgresDatabase(url)
    await store.open()  # the schema
    await store.close()
    yield url


async def node(url: str, shards: int = 8) -> Leases:
    leases = Leases(url, f"http://127.0.0.1:{9000 + len(url) % 7}")
    await leases.join(shards)
    return leases


async def owners(url: str) -> dict[int, str | None]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT shard, node_id FROM cluster_shards ORDER BY shard")
    finally:
        await conn.close()
    return {row["shard"]: row["node_id"] for row in rows}


async def renew(leases: Leases) -> None:
    """One renewal, and what the supervisor does with the change it may ask for."""
    async with leases._lock:
        await leases._renew(decide=True)
    if leases.changed.is_set():
        await leases.settle()
        leases.settled()


async def gone(leases: Leases) -> None:
    """As ``kill -9`` would leave it: its sessions end without a word."""
    if leases._conn is not None:
        leases._conn.terminate()
        leases._conn = None
    await leases.notices.close()


async def test_the_first_node_owns_every_shard_and_the_count_is_kept(db_url: str) -> None:
    first = await node(db_url, shards=8)
    try:
        assert first.owned == frozenset(range(8))
        assert set((await owners(db_url)).values()) == {first.node_id}
        second = Leases(db_url, "http://127.0.0.1:2")
        await second.join(16)  # the database was created with 8
        assert second.total == 8
        await gone(second)
    finally:
        await gone(first)


async def test_a_joining_node_gets_its_share_by_hand_over(db_url: str) -> None:
    first = await node(db_url)
    second = await node(db_url)
    try:
        assert second.owned == frozenset()
        await renew(first)  # first gives half away: second is short and nothing is free
        assert len(first.owned) == 4
        await renew(second)
        assert len(second.owned) == 4
        assert first.owned.isdisjoint(second.owned)
        state = await first.state()
        assert sorted(len(n.shards) for n in state.nodes) == [4, 4]
        assert state.shards == {"total": 8, "unowned": 0}
    finally:
        await gone(first)
        await gone(second)


async def test_a_dead_node_s_shards_are_taken_and_it_is_fenced(db_url: str) -> None:
    first = await node(db_url)
    second = await node(db_url)
    writer = PostgresDatabase(db_url)
    writer.session_name = f"flowyard {first.node_id}"
    fenced: list[bool] = []
    writer.on_fenced = lambda: fenced.append(True)
    await writer.open()
    writer.fence = (first.node_id, first.epoch)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run_writer)
            await writer.commit([SetServerSecret("before")])  # the owner writes
            # first stops renewing: its lease runs out (as a paused node's would)
            conn = await asyncpg.connect(db_url)
            await conn.execute(
                "UPDATE cluster_nodes SET last_seen_at = 0 WHERE node_id = $1", first.node_id
            )
            await conn.close()
            await renew(second)
            assert second.owned == frozenset(range(8))
            with pytest.raises(Unavailable, match="lost its shards"):
                await writer.commit([SetServerSecret("after")])
            assert fenced == [True]
            writer.close_writer()
            tg.cancel_scope.cancel()
        assert set((await owners(db_url)).values()) == {second.node_id}
    finally:
        await writer.close()
        await gone(first)
        await gone(second)


async def test_a_node_s_fenced_commit_is_written_once(db_url: str) -> None:
    first = await node(db_url)
    writer = PostgresDatabase(db_url)
    await writer.open()
    writer.fence = (first.node_id, first.epoch)
    project, put = new_project("fenced")
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run_writer)
            await writer.commit([put, SetBalance(project.id, 1_000)])
            await writer.commit([Spend(project.id, 100)])  # one statement
            await writer.commit([Spend(project.id, 10), Spend(project.id, 1)])
            writer.close_writer()
            tg.cancel_scope.cancel()
        row = await writer.fetchone(
            "SELECT token_balance FROM projects WHERE id = ?", (project.id,)
        )
        assert row == (889,)
    finally:
        await writer.close()
        await gone(first)


async def test_a_fenced_node_starts_again_with_a_new_epoch(db_url: str) -> None:
    first = await node(db_url)
    second = await node(db_url)
    try:
        old_epoch = first.epoch
        conn = await asyncpg.connect(db_url)
        await conn.execute(
            "UPDATE cluster_nodes SET last_seen_at = 0 WHERE node_id = $1", first.node_id
        )
        await conn.close()
        await renew(second)
        await renew(first)  # its renewal finds the epoch moved on
        assert first.epoch > old_epoch
        assert first.owned == frozenset()
        assert not first.moving
    finally:
        await gone(first)
        await gone(second)


async def test_a_killed_node_is_seen_dead_before_its_lease_runs_out(db_url: str) -> None:
    first = await node(db_url)
    second = await node(db_url)
    try:
        await gone(first)  # its session ends: dead at once, whatever its last renewal
        for _ in range(50):
            await renew(second)
            if second.owned == frozenset(range(8)):
                break
            await anyio.sleep(0.05)
        assert second.owned == frozenset(range(8))
    finally:
        await gone(second)


async def test_leaving_hands_every_shard_over(db_url: str) -> None:
    first = await node(db_url)
    second = await node(db_url)
    try:
        await first.leave()
        assert set((await owners(db_url)).values()) == {None}
        await renew(second)
        assert second.owned == frozenset(range(8))
        assert [n.node_id for n in (await second.state()).nodes] == [second.node_id]
    finally:
        await gone(second)


async def test_ready_hints_and_settings_reach_the_other_nodes(db_url: str) -> None:
    first = await node(db_url)
    second = await node(db_url)
    heard: list[Any] = []
    second.notices.on_ready = lambda project, queue: heard.append(("ready", project, queue))
    second.notices.on_settings = lambda change: heard.append(("settings", change))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(first.notices.run)
            await tg.start(second.notices.run)
            await renew(second)  # second learns first's URL
            await renew(first)

            class Queue:
                project_id = "proj_1"
                name = "emails"

            first.notices.announce(Queue())
            first.notices.publish("queue proj_1 emails")
            with anyio.fail_after(5):
                while len(heard) < 2:
                    await anyio.sleep(0.01)
            assert sorted(heard) == [
                ("ready", "proj_1", "emails"),
                ("settings", "queue proj_1 emails"),
            ]
            [(node_id, url, hint)] = second.notices.hinted("proj_1", "emails")
            assert (node_id, url) == (first.node_id, first.url)
            second.notices.drained("proj_1", "emails", node_id, hint - 1)  # an older claim
            assert second.notices.hinted("proj_1", "emails")
            second.notices.drained("proj_1", "emails", node_id, hint)
            assert second.notices.hinted("proj_1", "emails") == []
            tg.cancel_scope.cancel()
    finally:
        await gone(first)
        await gone(second)
