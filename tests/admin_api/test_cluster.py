"""``GET /admin/cluster`` on a single server: one node that owns every shard (DESIGN §11).

A cluster of several nodes is in ``tests/test_cluster_processes.py`` (real processes on a
throwaway PostgreSQL database).
"""

import re
from pathlib import Path

import anyio
import httpx

from flowyard.storage.projects import create_key_sync
from tests.admin_api.conftest import ok
from tests.conftest import Service, running_service
from tests.jobs_support import error_of, new_key

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def test_a_single_server_is_one_node_owning_every_shard(
    shared: Service, admin: httpx.AsyncClient
) -> None:
    answer = ok(await admin.get("/admin/cluster"))
    assert answer["shards"] == {"total": 64, "unowned": 0}
    [node] = answer["nodes"]
    assert set(node) == {"node_id", "url", "started_at", "last_seen_at", "shards"}
    assert node["url"] == shared.url
    assert node["shards"] == list(range(64))
    assert TIMESTAMP.match(node["started_at"]) and TIMESTAMP.match(node["last_seen_at"])
    assert node["started_at"] <= node["last_seen_at"]
    again = ok(await admin.get("/admin/cluster"))["nodes"][0]
    assert again["node_id"] == node["node_id"] and again["started_at"] == node["started_at"]


async def test_missing_or_project_keys_are_refused(shared: Service) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as anonymous:
        error_of(await anonymous.get("/admin/cluster"), 401, "unauthorized")
    star = await new_key(shared, "cluster-project", ["*"])
    async with shared.client_for(star) as client:
        refused = error_of(await client.get("/admin/cluster"), 403, "forbidden")
        assert "admin" in refused["message"]


async def test_the_shard_count_follows_the_setting(tmp_path: Path) -> None:
    async with running_service(tmp_path, shards=8) as service:
        created = await anyio.to_thread.run_sync(
            lambda: create_key_sync(service.db, "ops", ["*"], admin=True)
        )
        async with service.client_for(created.key) as client:
            answer = ok(await client.get("/admin/cluster"))
    assert answer["shards"] == {"total": 8, "unowned": 0}
    assert answer["nodes"][0]["shards"] == list(range(8))
