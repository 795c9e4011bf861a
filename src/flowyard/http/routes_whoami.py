"""``GET /core/whoami``: the calling key and its project, for any valid key, free.

A key that is not an admin's cannot read ``/admin/projects``, so this is how a client (the
dashboard) learns its project's name, and whether its key may use the admin routes.
"""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.http.context import caller
from flowyard.http.respond import json_response
from flowyard.storage.projects import get_project


async def whoami(request: Request) -> Response:
    runtime, key = await caller(request, None)
    project = await get_project(runtime.db, key.project_id)
    return json_response(
        {
            "project_id": key.project_id,
            "project_name": project.name if project else "",
            "key_id": key.id,
            "name": key.name,
            "scopes": list(key.scopes),
            "admin": key.admin,
        }
    )


routes = [Route("/core/whoami", whoami, methods=["GET"])]
