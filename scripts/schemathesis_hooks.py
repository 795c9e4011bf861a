"""Schemathesis hooks for ``scripts/schemathesis`` (loaded through ``SCHEMATHESIS_HOOKS``).

``POST /infra/jobs/claim`` long-polls for ``wait_seconds`` (0..20) when its queue is empty,
which it nearly always is under fuzzing: valid waits above one second are cut to one so that
the run stays within its time budget. Out-of-range values are left alone (they must be 400).
"""

from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if case.operation.path == "/infra/jobs/claim" and isinstance(body, dict):
        wait = body.get("wait_seconds")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and 1 < wait <= 20:
            body["wait_seconds"] = 1
