"""Token prices and amounts: integers of 1e-9 tokens inside, decimal strings outside.

A project with no balance set is unlimited. Prices (DESIGN §2): creating a job, and every
other client write to jobs or queues, costs ``JOB_WRITE``; creating a blueprint, and every
other workflow write (trigger, cancel, pause, resume), ``WORKFLOW_WRITE``, and a trigger or
resume also pays ``JOB_WRITE`` for each step it schedules; reads cost ``READ``. The pull and
push protocols (claim, ack, heartbeat, callbacks), the token routes, health and admin routes
are free, so that work already handed out can always finish.
"""

from decimal import Decimal, InvalidOperation

NANOS_PER_TOKEN = 10**9
JOB_WRITE = 1_800
WORKFLOW_WRITE = 5_300
READ = 800
MAX_BALANCE = 10**9 * NANOS_PER_TOKEN
"""The largest balance that can be set: one billion tokens."""


def parse_tokens(value: object) -> int:
    """A token amount (JSON number or decimal string) as an integer of 1e-9 tokens.

    Raises:
        ValueError: not a number, negative, finer than 1e-9, or above ``MAX_BALANCE``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number or a decimal string")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("must be a number or a decimal string") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be a finite number, 0 or more")
    nanos = amount * NANOS_PER_TOKEN
    if nanos != nanos.to_integral_value():
        raise ValueError("has more than 9 decimal places")
    if nanos > MAX_BALANCE:
        raise ValueError("is more than 1000000000 tokens")
    return int(nanos)


def format_tokens(nanos: int) -> str:
    """``1800`` -> ``"0.0000018"``; whole amounts without a decimal point."""
    return format((Decimal(nanos) / NANOS_PER_TOKEN).normalize(), "f")


def family(path: str) -> str:
    """The route family a path bills to: its first two segments (``infra/jobs``)."""
    parts = path.strip("/").split("/", 2)
    return "/".join(parts[:2])
