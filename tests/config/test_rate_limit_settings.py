"""Rate-limit settings: defaults, normalized policies, errors that name the variable, and the
counters each configuration builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, SettingsError
from config.settings import DEFAULT_RATE_LIMIT, UNAUTHENTICATED_RATE_LIMIT
from gateway.runtime import build_runtime
from ratelimit.counters import MemoryCounters, RedisCounters
from ratelimit.policy import normalize_policy


def test_defaults_count_in_memory_and_refuse_when_the_store_fails(tmp_path: Path) -> None:
    settings = Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path)})
    assert settings.default_rate_limit == "600/minute;100000/day"
    assert settings.unauthenticated_rate_limit == "30/minute"
    assert settings.redis_url is None
    assert settings.ratelimit_strategy == "moving-window"
    assert settings.ratelimit_on_store_failure == "closed"
    limiter = build_runtime(settings).limiter
    assert limiter is not None
    assert isinstance(limiter.store, MemoryCounters)
    assert limiter.on_store_failure == "closed"


@pytest.mark.parametrize("policy", [DEFAULT_RATE_LIMIT, UNAUTHENTICATED_RATE_LIMIT])
def test_the_built_in_policies_are_valid_and_canonical(tmp_path: Path, policy: str) -> None:
    # Settings take a variable's built-in policy as it is, unparsed: parsing loads `limits`,
    # which every command would pay for. Each parses to itself, also as the other's value.
    assert normalize_policy(policy) == policy
    both = {"PREDGATE_DEFAULT_RATE_LIMIT": policy, "PREDGATE_UNAUTHENTICATED_RATE_LIMIT": policy}
    settings = Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path), **both})
    assert settings.default_rate_limit == settings.unauthenticated_rate_limit == policy


def test_redis_strategy_and_failure_mode_reach_the_limiter(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "PREDGATE_DATA_DIR": str(tmp_path),
            "PREDGATE_REDIS_URL": "redis://:secret@10.0.0.5:6379/2",
            "PREDGATE_RATELIMIT_STRATEGY": "sliding-window-counter",
            "PREDGATE_RATELIMIT_ON_STORE_FAILURE": "local",
            "PREDGATE_DEFAULT_RATE_LIMIT": "5000/day, 100/minute",
            "PREDGATE_RATELIMIT_KEY_PREFIX": "eu-1",
        }
    )
    limiter = build_runtime(settings).limiter  # connects to nothing until it counts
    assert limiter is not None
    assert isinstance(limiter.store, RedisCounters)
    connection = limiter.store.client.connection_pool.connection_kwargs
    assert (connection["host"], connection["port"], connection["db"]) == ("10.0.0.5", 6379, 2)
    assert connection["socket_timeout"] == 1.0
    assert limiter.store.strategy == "sliding-window-counter"
    assert limiter.store.key_prefix == "eu-1"
    assert limiter.on_store_failure == "local"
    assert settings.default_rate_limit == "100/minute;5000/day"
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PREDGATE_DEFAULT_RATE_LIMIT", "lots"),
        ("PREDGATE_DEFAULT_RATE_LIMIT", "0/minute"),
        ("PREDGATE_UNAUTHENTICATED_RATE_LIMIT", "30/fortnight"),
        ("PREDGATE_REDIS_URL", "http://localhost:6379"),
        ("PREDGATE_RATELIMIT_STRATEGY", "fixed-window"),
        ("PREDGATE_RATELIMIT_ON_STORE_FAILURE", "ignore"),
        ("PREDGATE_RATELIMIT_KEY_PREFIX", "a/b"),
    ],
)
def test_bad_rate_limit_values_name_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path), variable: value})
