"""Settings: zero-configuration defaults, a generated secret, errors naming the variable."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from config import Settings, SettingsError


def test_defaults_generate_a_private_secret(tmp_path: Path) -> None:
    settings = Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path / "var")})
    secret_file = tmp_path / "var" / "server_secret"
    assert secret_file.exists()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'predgate.db'}"
    assert len(settings.secret_key) >= 64
    again = Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path / "var")})
    assert again.secret_key == settings.secret_key
    assert "secret_key" not in repr(settings)


def test_each_data_dir_gets_its_own_secret(tmp_path: Path) -> None:
    first = Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path / "a")})
    second = Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path / "b")})
    assert first.secret_key != second.secret_key


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PREDGATE_SECRET_KEY", "changeme"),
        ("PREDGATE_SECRET_KEY", "short"),
        ("PREDGATE_MAX_BATCH", "many"),
        ("PREDGATE_MAX_BATCH", "0"),
        ("PREDGATE_MAX_BODY_BYTES", "1.5"),
        ("PREDGATE_MAX_MODEL_UPLOAD_BYTES", "10"),
        ("PREDGATE_MODEL_CACHE_SIZE", "-1"),
        ("PREDGATE_DATABASE_URL", "mysql://localhost/x"),
        ("PREDGATE_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path), variable: value})


def test_given_secret_is_used_and_nothing_generated(tmp_path: Path) -> None:
    secret = "a" * 16 + "b" * 16 + "c" * 16
    settings = Settings.from_env(
        {"PREDGATE_DATA_DIR": str(tmp_path), "PREDGATE_SECRET_KEY": secret}
    )
    assert settings.secret_key == secret.encode()
    assert not (tmp_path / "server_secret").exists()
