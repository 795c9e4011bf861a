"""``bench.pg_drivers``: the group-commit loop, and every batch method writing every row.

The figures are the benchmark's business (``python -m bench.pg_drivers``); here only that the
loop batches what is waiting and that each method commits each transition's three writes.
"""

from collections.abc import Iterator

import anyio
import pytest
from bench import pg_drivers, postgres

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("asyncpg")


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.Cluster]:
    try:
        postgres.find_binaries()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with postgres.running_cluster() as running:
        yield running


def test_a_transition_is_a_500_byte_job_doc_a_run_and_an_event() -> None:
    first, second = pg_drivers.transition(3, 0), pg_drivers.transition(3, 1)
    status, doc, job_id = first.job
    assert 450 <= len(doc) <= 650 and job_id == "job_00000003" and status == "running"
    assert second.job[2] == job_id and second.job[1] != doc
    assert first.run[0] != second.run[0] and first.run[1] == job_id
    assert (first.event[0], first.event[1], second.event[1]) == ("exe_00000003", 0, 1)


def test_the_unnest_columns_follow_the_placeholders() -> None:
    batch = [pg_drivers.transition(p, 7) for p in range(3)]
    columns = pg_drivers._columns(batch)
    assert len(columns) == 9 and all(len(column) == 3 for column in columns)
    assert columns[2] == ["job_00000000", "job_00000001", "job_00000002"]
    assert columns[7] == [7, 7, 7]
    assert pg_drivers._psycopg_sql(pg_drivers.UPDATE_JOB) == (
        "UPDATE jobs SET status = %b, doc = %b WHERE id = %b"
    )


async def test_the_writer_takes_everything_waiting_in_one_batch() -> None:
    batches: list[int] = []

    async def write(batch: list[pg_drivers.Transition]) -> None:
        batches.append(len(batch))
        await anyio.sleep(0.001)

    group = pg_drivers.GroupCommit(write)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(group.run)
            async with anyio.create_task_group() as producers:
                for producer in range(16):
                    for n in range(5):
                        producers.start_soon(group.submit, pg_drivers.transition(producer, n))
            tg.cancel_scope.cancel()
    assert sum(batches) == group.transitions == 80 and group.commits == len(batches)
    assert max(batches) > 1


@pytest.mark.parametrize("method", pg_drivers.METHODS)
async def test_each_method_commits_every_write_of_every_transition(
    cluster: postgres.Cluster, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_drivers, "WARMUP_SECONDS", 0.05)
    url = cluster.create_database()
    with anyio.fail_after(30):
        figures = await pg_drivers.measure(method, url, 4, 0.2, cluster.pid)
    assert figures["transitions_per_s"] > 0 and figures["mean_batch"] >= 1
    assert figures["cpu_us_per_transition"] > 0
    with psycopg.connect(url) as conn:
        runs, events, started = conn.execute(
            "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM events),"
            " (SELECT count(*) FROM jobs WHERE length(doc) > 400)"
        ).fetchone()
    assert runs == events > 0 and started == 4
