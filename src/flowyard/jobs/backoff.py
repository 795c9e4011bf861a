"""Retry delays: exponential (capped, jittered), linear or fixed."""

from flowyard.jobs.model import Backoff

EXPONENTIAL_CAP_SECONDS = 3600.0


def retry_delay_seconds(backoff: Backoff, attempt: int, base: float, draw: float) -> float:
    """The wait before the next attempt, after attempt number ``attempt`` (from 1) failed.

    Args:
        backoff: the job's strategy.
        attempt: the attempt that just failed.
        base: the base delay in seconds (``--retry-base-seconds``).
        draw: a uniform random number in [0, 1), used for exponential jitter.
    """
    if backoff == "fixed":
        return base
    if backoff == "linear":
        return base * attempt
    ceiling: float = min(base * 2 ** (attempt - 1), EXPONENTIAL_CAP_SECONDS)
    return ceiling / 2 + draw * ceiling / 2
