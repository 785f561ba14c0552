"""The topology shared by the tests that need running replicas: started once for the package,
as starting it (the demo trains two models, two replicas start) takes most of its time."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.deploy.topology import Topology, running_topology


@pytest.fixture(scope="package")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Two replicas of two workers behind the shipped nginx, on PostgreSQL and Redis."""
    database_url = os.environ.get("PREDGATE_TEST_DATABASE_URL")
    if not database_url:
        pytest.skip("PREDGATE_TEST_DATABASE_URL is not set: replicas share PostgreSQL")
    redis_url = os.environ.get("PREDGATE_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("PREDGATE_TEST_REDIS_URL is not set: several workers need Redis")
    with running_topology(database_url, redis_url, tmp_path_factory.mktemp("deploy")) as running:
        yield running
