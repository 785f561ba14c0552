"""Rate-limit settings: defaults, normalized policies, errors that name the variable, and the
RATELIMIT_* keys flask-limiter reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, SettingsError


def test_defaults_count_in_memory_and_refuse_when_the_store_fails(tmp_path: Path) -> None:
    settings = Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path)})
    assert settings.default_rate_limit == "600/minute;100000/day"
    assert settings.unauthenticated_rate_limit == "30/minute"
    assert settings.redis_url is None
    config = settings.flask_config()
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["RATELIMIT_STRATEGY"] == "moving-window"
    assert config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is False
    assert config["RATELIMIT_HEADERS_ENABLED"] is False  # predgate writes its own


def test_redis_and_failure_mode_reach_flask_limiter(tmp_path: Path) -> None:
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
    config = settings.flask_config()
    assert config["RATELIMIT_STORAGE_URI"] == "redis://:secret@10.0.0.5:6379/2"
    assert config["RATELIMIT_STORAGE_OPTIONS"]["socket_timeout"] == 1.0
    assert config["RATELIMIT_STRATEGY"] == "sliding-window-counter"
    assert config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True
    assert config["RATELIMIT_KEY_PREFIX"] == "eu-1"
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
