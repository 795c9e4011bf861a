"""Five-field cron expressions evaluated in an IANA timezone."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter


def is_valid_schedule(schedule: str) -> bool:
    """Whether ``schedule`` is a valid 5-field cron expression."""
    return len(schedule.split()) == 5 and bool(croniter.is_valid(schedule))


def ever_fires(schedule: str) -> bool:
    """Whether a valid ``schedule`` names a time that comes: ``0 0 31 2 *`` is well formed but
    names no day, and croniter gives up looking for its next fire."""
    try:
        croniter(schedule, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


def next_fire_ms(schedule: str, timezone: str, after_ms: int) -> int:
    """The first fire strictly after ``after_ms``, in epoch milliseconds.

    The expression is read in ``timezone``'s wall-clock time, so ``0 9 * * *`` in
    ``Europe/Paris`` fires at 09:00 Paris time across daylight-saving changes.
    """
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC).astimezone(ZoneInfo(timezone))
    fire = croniter(schedule, start).get_next(datetime)
    return int(fire.timestamp() * 1000)
