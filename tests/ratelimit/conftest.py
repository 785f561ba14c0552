"""A private Redis a test may stop and start again (never the machine's own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ratelimit_support import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private `redis-server` on a free loopback port."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
