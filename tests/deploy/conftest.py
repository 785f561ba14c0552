"""The topology shared by the tests that need running replicas: started once for the package,
as starting it (the demo trains two models, two replicas start) takes most of its time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.topology import Topology, running_topology
from tests.propagation.deployment import service_urls


@pytest.fixture(scope="package")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Two replicas of two workers behind the shipped nginx, on PostgreSQL and Redis."""
    database_url, redis_url = service_urls()
    with running_topology(database_url, redis_url, tmp_path_factory.mktemp("deploy")) as running:
        yield running
