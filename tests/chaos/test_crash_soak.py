"""kill -9 under load, again and again: nothing acknowledged is lost, every execution ends right.

``flowyard serve`` runs as a child process; a trigger client, a job creator, pull workers and a
push handler keep it busy over 127.0.0.1, and a webhook receiver records its events, while it
is killed at random moments and restarted on the same SQLite file (see ``bench/chaos.py``,
which runs the long version).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.chaos import Outcome

from tests.chaos.soak_support import (
    check_copy,
    damaged_copy,
    damaged_deliveries,
    describe,
    short_soak,
)


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    yield short_soak(tmp_path_factory.mktemp("chaos"))


def test_no_invariant_breaks_across_kills(soaked: Outcome) -> None:
    figures = soaked.figures
    assert figures["violations"] == 0, describe(soaked)
    assert figures["quiesced"], describe(soaked)
    # The load really ran across the kills: work was acknowledged and clients saw the outages.
    assert figures["triggers_confirmed"] > 0, describe(soaked)
    assert figures["acks"] > 0 and figures["jobs_created_confirmed"] > 0, describe(soaked)
    assert figures["connection_errors"] > 0, describe(soaked)
    assert figures["push_deliveries"] > 0, describe(soaked)
    assert figures["final_exit_code"] == 0, describe(soaked)
    # The webhook saw the run: job and execution ends arrived, and the outbox drained.
    assert figures["webhooks_drained"], describe(soaked)
    topics = figures["webhook_topics"]
    assert topics.get("jobs.completed", 0) > 0, describe(soaked)
    assert topics.get("workflows.execution.completed", 0) > 0, describe(soaked)
    assert figures["webhook_events_distinct"] == figures["webhook_events_stored"], describe(soaked)


def test_checks_find_the_damage_a_crash_could_do(soaked: Outcome, tmp_path: Path) -> None:
    kinds = check_copy(soaked, damaged_copy(soaked, tmp_path)).kinds()
    for kind in ("trigger_lost", "execution_status", "duplicate_step_job", "ack_lost"):
        assert kinds.get(kind, 0) >= 1, kinds
    # The rolled-back ack's and the lost execution's events now speak of uncommitted changes.
    assert kinds.get("webhook_event_uncommitted", 0) >= 2, kinds


def test_checks_find_the_damage_to_webhook_deliveries(soaked: Outcome) -> None:
    assert check_copy(soaked, soaked.db).kinds() == {}
    kinds = check_copy(soaked, soaked.db, damaged_deliveries(soaked)).kinds()
    for kind in ("webhook_event_missing", "webhook_event_not_received", "webhook_event_twice"):
        assert kinds.get(kind, 0) >= 1, kinds
    assert kinds.get("webhook_signature", 0) >= 1, kinds
