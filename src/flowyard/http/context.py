"""What a handler reaches through ``request``: the supervisor, the authenticator, the caller.

``caller`` runs the checks every authenticated route starts with, in DESIGN §2's order: the
key (401), the project's rate limit (429, before any work), the project's share of the
requests in flight (503, see ``http/inflight.py``), the scope (403), readiness (503).
It also counts the call in the project's usage. Token charges come later, in the handlers and
engines, once the object was found (404), the body read (400) and its state checked (409).
"""

from dataclasses import dataclass

from starlette.requests import Request

from flowyard import logs
from flowyard.actors.supervisor import Supervisor
from flowyard.billing import READ, family
from flowyard.cluster.forward import Forwarder
from flowyard.cluster.peers import Peers
from flowyard.errors import Forbidden, RateLimited
from flowyard.http.auth import Authenticator
from flowyard.http.inflight import hold_for_project
from flowyard.storage.projects import ApiKey


@dataclass(frozen=True)
class Context:
    """The app's lifespan state."""

    runtime: Supervisor
    authenticate: Authenticator
    forwarder: Forwarder
    """Requests to the other nodes of the cluster (a handler may forward one itself)."""


def context_of(request: Request) -> Context:
    """The app's :class:`Context`.

    A plain attribute of the app: Starlette's ``app.state`` finds its entries by raising
    and catching an ``AttributeError``, and every request reads the context.
    """
    context: Context = request.app.context
    return context


async def caller(request: Request, scope: str | None) -> tuple[Supervisor, ApiKey]:
    """Authenticate, rate-limit, hold the project's share, check the scope and readiness.

    Returns the runtime and the key.
    """
    context = context_of(request)
    authenticator = context.authenticate
    key = authenticator.cached(request.scope) or await authenticator.authenticate(request)
    logs.project_id.set(key.project_id)  # the request's task: its log lines name the project
    accounts = context.runtime.accounts
    account = accounts.get(key.project_id) or await accounts.load(key.project_id)
    if account.rate is not None:
        headers, retry_after = accounts.admit(account)
        # For ErrorBoundary, which adds them to whatever the response turns out to be.
        request.scope.setdefault("state", {})["rate_headers"] = headers
        if retry_after is not None:
            raise RateLimited(
                f"over the project's limit of {account.rate:g} requests/s;"
                f" retry after {retry_after} s",
                retry_after,
            )
    hold_for_project(request.scope, key.project_id)
    accounts.count_call(key.project_id, family(request.scope["path"]))
    if scope is not None and scope not in key.scopes and "*" not in key.scopes:
        raise Forbidden(f"key is missing required scope: {scope}")
    context.runtime.check_ready()
    return context.runtime, key


def peers(request: Request) -> Peers | None:
    """The other nodes of the cluster as this request reaches them; None on a server alone
    and for a request another node sent here."""
    context = context_of(request)
    return Peers.of(context.runtime.leases, context.forwarder, request.scope)


def charge_read(request: Request, runtime: Supervisor, project_id: str) -> None:
    """Charge a read to the project (402 if its balance is short), once it was found."""
    runtime.accounts.charge(project_id, READ, family(request.scope["path"]))


async def admin_caller(request: Request) -> Supervisor:
    """Authenticate an admin key (403 for any other key) and check readiness."""
    context = context_of(request)
    key = await context.authenticate.authenticate(request)
    logs.project_id.set(key.project_id)
    hold_for_project(request.scope, key.project_id)
    if not key.admin:
        raise Forbidden("this route needs an admin key")
    context.runtime.check_ready()
    return context.runtime
