"""``client.whoami()``, ``client.tokens`` and ``client.admin``: the calling key, balances and
usage, projects, keys, stats, the cluster's nodes."""

from collections.abc import Sequence
from typing import Any

from flowyard.client.core import Call, query, returns, returns_page, segment
from flowyard.client.models import (
    UNSET,
    Cluster,
    CreatedKey,
    Execution,
    ExecutionStatusName,
    JobStatusName,
    KeyRecord,
    Page,
    Project,
    ProjectJob,
    Stats,
    TokenBalance,
    TokenUsage,
    TriggerName,
    Unset,
    WhoAmI,
)
from flowyard.client.namespace import Mode, Namespace, endpoint, paginate


class Identity(Namespace[Mode]):
    """``/core/whoami``: the calling key and its project (free, any scope)."""

    @endpoint
    def whoami(self) -> Call[WhoAmI]:
        """The key's id, name, scopes and admin flag, and its project's id and name."""
        return Call("GET", "/core/whoami", returns(WhoAmI))


class Tokens(Namespace[Mode]):
    """``/core/tokens``: the project's balance and usage (free, any scope)."""

    @endpoint
    def balance(self) -> Call[TokenBalance]:
        """The balance, a decimal string (None: unlimited)."""
        return Call("GET", "/core/tokens/balance", returns(TokenBalance))

    @endpoint
    def usage(self) -> Call[TokenUsage]:
        """Calls and tokens per UTC day and route family."""
        return Call("GET", "/core/tokens/usage", returns(TokenUsage))


class Admin(Namespace[Mode]):
    """``/admin``: projects, keys, and views across projects (admin keys only)."""

    @endpoint
    def create_project(self, name: str) -> Call[Project]:
        """Create a project."""
        return Call("POST", "/admin/projects", returns(Project), body={"name": name})

    @endpoint
    def list_projects(self, *, limit: int = 25, cursor: str | None = None) -> Call[Page[Project]]:
        """One page of projects."""
        parse = returns_page("projects", Project)
        return Call("GET", "/admin/projects", parse, query(limit=limit, cursor=cursor))

    iter_projects = paginate(list_projects)
    """Every project."""

    @endpoint
    def get_project(self, project_id: str) -> Call[Project]:
        """One project with its limits."""
        return Call("GET", f"/admin/projects/{segment(project_id)}", returns(Project))

    @endpoint
    def update_project(
        self,
        project_id: str,
        *,
        rate_limit_rps: float | None | Unset = UNSET,
        token_balance: str | float | None | Unset = UNSET,
    ) -> Call[Project]:
        """Set a project's rate limit or token balance (None: no limit / unlimited)."""
        body = {
            name: value
            for name, value in (
                ("rate_limit_rps", rate_limit_rps),
                ("token_balance", token_balance),
            )
            if value is not UNSET
        }
        path = f"/admin/projects/{segment(project_id)}"
        return Call("PATCH", path, returns(Project), body=body)

    @endpoint
    def list_keys(
        self, *, project_id: str | None = None, limit: int = 25, cursor: str | None = None
    ) -> Call[Page[KeyRecord]]:
        """One page of API keys (never the keys themselves)."""
        params = query(project_id=project_id, limit=limit, cursor=cursor)
        return Call("GET", "/admin/keys", returns_page("keys", KeyRecord), params)

    iter_keys = paginate(list_keys)
    """Every API key."""

    @endpoint
    def create_key(
        self,
        project_id: str,
        *,
        name: str = "",
        scopes: Sequence[str] | None = None,
        admin: bool = False,
    ) -> Call[CreatedKey]:
        """Create a key (default scopes: all but `*`); ``CreatedKey.key`` is shown this once."""
        body: dict[str, Any] = {"project_id": project_id, "name": name, "admin": admin}
        if scopes is not None:
            body["scopes"] = scopes
        return Call("POST", "/admin/keys", returns(CreatedKey), body=body)

    @endpoint
    def revoke_key(self, key_id: str) -> Call[KeyRecord]:
        """Revoke a key: it stops working at once."""
        return Call("DELETE", f"/admin/keys/{segment(key_id)}", returns(KeyRecord))

    @endpoint
    def list_executions(
        self,
        *,
        project_id: str | None = None,
        blueprint_id: str | None = None,
        status: ExecutionStatusName | None = None,
        limit: int = 25,
        cursor: str | None = None,
    ) -> Call[Page[Execution]]:
        """One page of executions across projects, newest first."""
        params = query(
            project_id=project_id,
            blueprint_id=blueprint_id,
            status=status,
            limit=limit,
            cursor=cursor,
        )
        return Call("GET", "/admin/executions", returns_page("executions", Execution), params)

    iter_executions = paginate(list_executions)
    """Every execution that matches, across projects."""

    @endpoint
    def list_jobs(
        self,
        *,
        project_id: str | None = None,
        status: JobStatusName | None = None,
        trigger_type: TriggerName | None = None,
        queue: str | None = None,
        limit: int = 25,
        cursor: str | None = None,
    ) -> Call[Page[ProjectJob]]:
        """One page of jobs across projects, newest first, each with its ``project_id``."""
        params = query(
            project_id=project_id,
            status=status,
            trigger_type=trigger_type,
            queue=queue,
            limit=limit,
            cursor=cursor,
        )
        return Call("GET", "/admin/jobs", returns_page("jobs", ProjectJob), params)

    iter_jobs = paginate(list_jobs)
    """Every job that matches, across projects."""

    @endpoint
    def stats(self, *, project_id: str | None = None) -> Call[Stats]:
        """Executions and jobs per project and status (every status, zeros included)."""
        return Call("GET", "/admin/stats", returns(Stats), query(project_id=project_id))

    @endpoint
    def cluster(self) -> Call[Cluster]:
        """The nodes on the server's database and the shards each owns (a single server: one
        node owning every shard)."""
        return Call("GET", "/admin/cluster", returns(Cluster))
