"""One server per module for the Jobs API tests; each test gets its own empty project."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, running_service
from tests.jobs_support import project_client


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    """One server for the module; each test gets its own empty project through ``api``."""
    path: Path = tmp_path_factory.mktemp("jobs")
    async with running_service(path) as service:
        yield service


@pytest.fixture
async def api(shared: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with project_client(shared) as client:
        yield client
