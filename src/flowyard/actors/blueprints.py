"""The blueprint catalog: blueprints created, archived and read, with their graphs cached.

A blueprint never changes once created but for its ``archived_at``, so a blueprint read once
and the graph built from it are kept in memory (the blueprints up to
:data:`BLUEPRINT_CACHE_SIZE`, dropped all at once when full).
"""

from collections.abc import Callable

from msgspec.structs import replace

from flowyard.actors.accounts import Accounts
from flowyard.billing import WORKFLOW_WRITE
from flowyard.clock import Clock
from flowyard.errors import Invalid, NotFound
from flowyard.ids import new_id
from flowyard.storage import workflows as store
from flowyard.storage.port import Store
from flowyard.workflows.blueprint import BlueprintSpec, Graph, build_graph

BLUEPRINT_CACHE_SIZE = 10_000
FAMILY = "infra/workflows"


class BlueprintCatalog:
    """A project's blueprints, read through a cache."""

    def __init__(self, db: Store, accounts: Accounts, clock: Clock) -> None:
        self.db = db
        self.accounts = accounts
        self.clock = clock
        self.graphs: dict[str, Graph] = {}  # blueprint id -> its graph, once built
        self._blueprints: dict[str, store.Blueprint] = {}
        # A cluster node's: tells the other nodes that a blueprint was archived here.
        self.changed: Callable[[str], None] | None = None

    async def create(self, project_id: str, spec: BlueprintSpec) -> store.Blueprint:
        """Validate and store a blueprint."""
        graph = build_graph(spec)
        await self._check_children(project_id, spec)
        blueprint = store.Blueprint(
            id=new_id("wf"),
            project_id=project_id,
            name=spec.name,
            description=spec.description,
            steps=list(spec.steps),
            max_duration_sec=spec.max_duration_sec,
            created_at=self.clock.now_ms(),
        )
        with self.accounts.paying(project_id, WORKFLOW_WRITE, FAMILY):
            await self.db.commit([store.put_blueprint(blueprint)])
        self.graphs[blueprint.id] = graph
        return blueprint

    async def _check_children(self, project_id: str, spec: BlueprintSpec) -> None:
        """Every sub_workflow names a blueprint of the project that can still be triggered
        (a blueprint never names itself: its id does not exist yet, so children never loop).

        Raises:
            Invalid: 400 at ``$.steps[i].sub_workflow.blueprint_id`` for each that does not.
        """
        problems: list[dict[str, str]] = []
        for i, step in enumerate(spec.steps):
            if step.sub_workflow is None:
                continue
            child_id = step.sub_workflow.blueprint_id
            path = f"$.steps[{i}].sub_workflow.blueprint_id"
            try:
                child = await self.get(project_id, child_id)
            except NotFound:
                problems.append(
                    {"path": path, "message": f"no blueprint {child_id!r} in this project"}
                )
                continue
            if child.archived_at is not None:
                problems.append({"path": path, "message": f"blueprint {child_id!r} is archived"})
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            first = problems[0]
            raise Invalid(f"invalid blueprint: {first['path']}: {first['message']}{more}", problems)

    async def archive(self, project_id: str, blueprint_id: str) -> store.Blueprint:
        """Archive a blueprint: it leaves lists and cannot be triggered, while its executions
        run on. Archiving it again changes nothing and answers the same."""
        blueprint = await self.get(project_id, blueprint_id)
        if blueprint.archived_at is not None:
            self.accounts.charge(project_id, WORKFLOW_WRITE, FAMILY)
            return blueprint
        archived = replace(blueprint, archived_at=self.clock.now_ms())
        with self.accounts.paying(project_id, WORKFLOW_WRITE, FAMILY):
            await self.db.commit([store.archive_blueprint(archived)])
        self._blueprints[blueprint.id] = archived
        if self.changed is not None:
            self.changed(f"blueprint {blueprint.id}")
        return archived

    def forget(self, blueprint_id: str) -> None:
        """Another node of the cluster archived a blueprint: read it again when needed."""
        self._blueprints.pop(blueprint_id, None)

    async def get(self, project_id: str, blueprint_id: str) -> store.Blueprint:
        """A blueprint of the project, or 404."""
        found = self._blueprints.get(blueprint_id)
        if found is None:
            found = await store.get_blueprint_by_id(self.db, blueprint_id)
            if found is not None:
                if len(self._blueprints) >= BLUEPRINT_CACHE_SIZE:
                    self._blueprints.clear()
                self._blueprints[blueprint_id] = found
        if found is None or found.project_id != project_id:
            raise NotFound(f"blueprint {blueprint_id} not found")
        return found

    async def graph(self, blueprint_id: str) -> Graph:
        """The graph of a blueprint of any project (404 if there is none)."""
        graph = self.graphs.get(blueprint_id)
        if graph is None:
            found = await store.get_blueprint_by_id(self.db, blueprint_id)
            if found is None:
                raise NotFound(f"blueprint {blueprint_id} not found")
            spec = BlueprintSpec(
                name=found.name,
                description=found.description,
                steps=found.steps,
                max_duration_sec=found.max_duration_sec,
            )
            graph = self.graphs[blueprint_id] = build_graph(spec)
        return graph
