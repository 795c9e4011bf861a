"""``/infra/queues``: depth, running count, limits, pause and default handler of each queue."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.cluster.peers import merged_views
from flowyard.errors import invalid_field
from flowyard.http.body import query_int, query_str, read_json
from flowyard.http.context import caller, charge_read, peers
from flowyard.http.respond import json_response
from flowyard.http.schemas import QueueBody
from flowyard.jobs.spec import check_url
from flowyard.storage.pages import seal, unseal

NAME_MAX = 128


async def list_queues(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:read")
    limit = query_int(request, "limit", 25, 1, 100)
    cursor_key = runtime.db.cursor_key
    after = unseal(cursor_key, "queues", query_str(request, "cursor", 1024))
    now = runtime.jobs.clock.now_ms()
    views = [q.view(now) for q in runtime.jobs.project_queues(key.project_id)]
    others = peers(request)
    if others is not None:  # every node's counts, added up
        merged = merged_views(views + await others.queues())
        views = [merged[name] for name in sorted(merged)]
    views = [view for view in views if after is None or view["name"] > after]
    page = views[:limit]
    next_cursor = seal(cursor_key, "queues", page[-1]["name"]) if len(views) > limit else None
    charge_read(request, runtime, key.project_id)
    return json_response({"queues": page, "next_cursor": next_cursor})


async def put_queue(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    name = request.path_params["name"]
    if not 1 <= len(name) <= NAME_MAX:
        raise invalid_field("$.name", f"must be 1 to {NAME_MAX} characters")
    body = await read_json(request, QueueBody)
    if isinstance(body.handler, str):
        problems = check_url(body.handler, "$.handler")
        if problems:
            raise invalid_field("$.handler", problems[0]["message"])
    queue = await runtime.jobs.set_queue(
        key.project_id,
        name,
        concurrency=body.concurrency,
        rate_limit_per_second=body.rate_limit_per_second,
        paused=body.paused,
        handler=body.handler,
    )
    return json_response(queue.view(runtime.jobs.clock.now_ms()))


routes = [
    Route("/infra/queues", list_queues, methods=["GET"]),
    Route("/infra/queues/{name}", put_queue, methods=["PUT"]),
]
