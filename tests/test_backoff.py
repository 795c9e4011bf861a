"""Retry delays: exponential doubling with a 1 h cap and half-to-full jitter, linear, fixed."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowyard.jobs.backoff import EXPONENTIAL_CAP_SECONDS, retry_delay_seconds


def test_cap_is_one_hour() -> None:
    assert EXPONENTIAL_CAP_SECONDS == 3600.0


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0), (10, 1024.0), (11, 2048.0)],
)
def test_exponential_doubles_per_attempt(attempt: int, ceiling: float) -> None:
    assert retry_delay_seconds("exponential", attempt, 2.0, 0.0) == pytest.approx(ceiling / 2)
    assert retry_delay_seconds("exponential", attempt, 2.0, 0.5) == pytest.approx(ceiling * 0.75)
    assert retry_delay_seconds("exponential", attempt, 2.0, 0.999999) == pytest.approx(
        ceiling, rel=1e-5
    )


def test_exponential_ceiling_doubles_between_attempts() -> None:
    lows = [retry_delay_seconds("exponential", a, 0.05, 0.0) for a in range(1, 8)]
    assert all(b == pytest.approx(2 * a) for a, b in itertools.pairwise(lows))
    assert lows[0] == pytest.approx(0.025)


@pytest.mark.parametrize("attempt", [12, 13, 20, 50])
def test_exponential_is_capped_at_one_hour(attempt: int) -> None:
    # base 2: 2 * 2^11 = 4096 > 3600, so attempt 12 onwards is capped.
    assert retry_delay_seconds("exponential", attempt, 2.0, 0.0) == pytest.approx(1800.0)
    assert retry_delay_seconds("exponential", attempt, 2.0, 0.5) == pytest.approx(2700.0)
    assert retry_delay_seconds("exponential", attempt, 2.0, 0.9999999) <= 3600.0


def test_exponential_just_below_the_cap_is_not_capped() -> None:
    # base 2, attempt 11: 2048 s < 3600 s.
    assert retry_delay_seconds("exponential", 11, 2.0, 0.0) == pytest.approx(1024.0)


@given(
    attempt=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0.001, max_value=100, allow_nan=False, allow_infinity=False),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_exponential_jitter_stays_between_half_and_all_of_the_ceiling(
    attempt: int, base: float, draw: float
) -> None:
    ceiling = min(base * 2 ** (attempt - 1), 3600.0)
    delay = retry_delay_seconds("exponential", attempt, base, draw)
    assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9
    # The draw maps linearly and monotonically onto the interval.
    assert delay == pytest.approx(ceiling / 2 + draw * ceiling / 2)


def test_exponential_draw_is_monotonic() -> None:
    draws = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    delays = [retry_delay_seconds("exponential", 3, 1.0, d) for d in draws]
    assert delays == sorted(delays)
    assert len(set(delays)) == len(delays)


@pytest.mark.parametrize("attempt", [1, 2, 3, 7, 20])
@pytest.mark.parametrize("draw", [0.0, 0.5, 0.99])
def test_linear_is_base_times_attempt_without_jitter(attempt: int, draw: float) -> None:
    assert retry_delay_seconds("linear", attempt, 2.0, draw) == pytest.approx(2.0 * attempt)
    assert retry_delay_seconds("linear", attempt, 0.05, draw) == pytest.approx(0.05 * attempt)


@pytest.mark.parametrize("attempt", [1, 2, 3, 7, 20])
@pytest.mark.parametrize("draw", [0.0, 0.5, 0.99])
def test_fixed_is_always_base_without_jitter(attempt: int, draw: float) -> None:
    assert retry_delay_seconds("fixed", attempt, 2.0, draw) == 2.0
    assert retry_delay_seconds("fixed", attempt, 0.05, draw) == 0.05


def test_linear_is_not_capped() -> None:
    # Only exponential has the one-hour cap.
    assert retry_delay_seconds("linear", 20, 600.0, 0.0) == pytest.approx(12000.0)
