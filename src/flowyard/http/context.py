"""What a handler reaches through ``request``: the supervisor and the authenticator."""

from dataclasses import dataclass

from starlette.requests import Request

from flowyard.actors.supervisor import Supervisor
from flowyard.http.auth import Authenticator
from flowyard.storage.projects import ApiKey


@dataclass(frozen=True)
class Context:
    """The app's lifespan state."""

    runtime: Supervisor
    authenticate: Authenticator


async def caller(request: Request, scope: str | None) -> tuple[Supervisor, ApiKey]:
    """Check readiness and the key's scope; the runtime and the key for the handler."""
    context: Context = request.app.state.context
    key = await context.authenticate(request, scope)
    context.runtime.check_ready()
    return context.runtime, key
