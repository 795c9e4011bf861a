"""``/core/tokens``: the project's token balance and its usage (any valid key, free)."""

import itertools

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.billing import format_tokens
from flowyard.clock import rfc3339
from flowyard.http.context import caller
from flowyard.http.respond import json_response


async def balance(request: Request) -> Response:
    runtime, key = await caller(request, None)
    left = runtime.accounts.balance(key.project_id)
    return json_response(
        {
            "project_id": key.project_id,
            "total_balance": None if left is None else format_tokens(left),
        }
    )


async def usage(request: Request) -> Response:
    """Calls and tokens per UTC day, in total and per route family, oldest day first."""
    runtime, key = await caller(request, None)
    rows = await runtime.accounts.usage(key.project_id)  # sorted by day, then family
    series = []
    for day, same_day in itertools.groupby(rows, key=lambda row: row.day):
        group = list(same_day)
        series.append(
            {
                "period_start": rfc3339(day * 86_400_000),
                "calls": sum(row.calls for row in group),
                "total": format_tokens(sum(row.nanos for row in group)),
                "by_family": {
                    row.family: {"calls": row.calls, "tokens": format_tokens(row.nanos)}
                    for row in group
                },
            }
        )
    return json_response({"project_id": key.project_id, "granularity": "day", "series": series})


routes = [
    Route("/core/tokens/balance", balance, methods=["GET"]),
    Route("/core/tokens/usage", usage, methods=["GET"]),
]
