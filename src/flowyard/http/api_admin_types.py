"""The response bodies of the admin API (``/admin/...``), for ``/openapi.json``; the rules of
``http/api_types.py`` hold here too."""

from flowyard.http.api_types import Cursor, Job, Timestamp, Tokens, View
from flowyard.jobs.model import JobStatus
from flowyard.workflows.state import ExecutionStatus


class Project(View, frozen=True):
    """A project: its rate limit (null: none) and token balance (null: unlimited)."""

    id: str
    name: str
    rate_limit_rps: float | None
    token_balance: Tokens | None
    created_at: Timestamp


class ProjectList(View, frozen=True):
    """A page of projects, newest first."""

    projects: list[Project]
    next_cursor: Cursor


class KeyRecord(View, frozen=True):
    """An API key as stored: never its secret or its hash."""

    id: str
    project_id: str
    name: str
    scopes: list[str]
    admin: bool
    created_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class KeyList(View, frozen=True):
    """A page of keys, newest first."""

    keys: list[KeyRecord]
    next_cursor: Cursor


class CreatedKey(View, frozen=True):
    """A key just created: `key` is its secret, shown this once."""

    id: str
    key: str
    project_id: str
    name: str
    scopes: list[str]
    created_at: Timestamp


class ProjectJob(Job, frozen=True):
    """A job in a list across projects: the job and its project."""

    project_id: str


class ProjectJobList(View, frozen=True):
    """A page of jobs of every project (or one), newest first."""

    jobs: list[ProjectJob]
    next_cursor: Cursor


class ProjectStats(View, frozen=True):
    """How many executions and jobs a project has in each status (zeros included)."""

    project_id: str
    executions: dict[ExecutionStatus, int]
    jobs: dict[JobStatus, int]


class Stats(View, frozen=True):
    """Counts per project, newest project first."""

    projects: list[ProjectStats]


class ClusterNode(View, frozen=True):
    """A node of the cluster: where the others reach it, when it started, its last lease
    renewal, and the shards it owns (in order)."""

    node_id: str
    url: str
    started_at: Timestamp
    last_seen_at: Timestamp
    shards: list[int]


class ShardCounts(View, frozen=True):
    """How many shards there are, and how many have no live owner right now."""

    total: int
    unowned: int


class Cluster(View, frozen=True):
    """The nodes on the database and the shards' ownership (a single server is one node that
    owns every shard)."""

    nodes: list[ClusterNode]
    shards: ShardCounts
