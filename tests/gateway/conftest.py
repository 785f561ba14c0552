"""Gateway fixtures for rate limits: apps over each counter store, a controlled clock, and a
Redis server a test can stop."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
from tests.ratelimit_support import (
    REDIS_URL_VARIABLE,
    Clock,
    RedisServer,
    storage_variants,
    unique_key_prefix,
)

LimitedApp = Callable[..., FlaskClient]


@pytest.fixture(params=storage_variants())
def storage(request: pytest.FixtureRequest) -> str:
    """The counter store: `memory`, or the test Redis when one is configured."""
    return str(request.param)


def limited_settings(settings: Settings, redis_url: str | None, **overrides: Any) -> Settings:
    """This test's settings with rate limits on a store and a key prefix of their own."""
    return replace(
        settings,
        redis_url=redis_url,
        ratelimit_key_prefix=unique_key_prefix(),
        **overrides,
    )


@pytest.fixture
def limited(settings: Settings, storage: str, make_app: Callable[..., Flask]) -> LimitedApp:
    """`limited(**settings overrides)` -> a client of an app counting on this test's store."""

    def build(**overrides: Any) -> FlaskClient:
        redis_url = os.environ[REDIS_URL_VARIABLE] if storage == "redis" else None
        return make_app(limited_settings(settings, redis_url, **overrides)).test_client()

    return build


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """`time.time` under the test's control (what `limits` stamps and compares)."""
    fake = Clock(1_900_000_000.0)
    monkeypatch.setattr(time, "time", fake)
    return fake


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private Redis the test may stop and start again."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
