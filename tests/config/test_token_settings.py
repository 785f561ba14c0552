"""Access-token settings: issuer, audience, lifetime and the one accepted algorithm."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, SettingsError


def test_token_defaults_and_flask_jwt_extended_keys(tmp_path: Path) -> None:
    settings = Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path)})
    # The gateway's public base URL; the default is where `make run` serves.
    assert settings.oauth_issuer == "http://127.0.0.1:8000"
    assert settings.oauth_audience == "predgate"
    assert settings.token_lifetime_seconds == 900
    assert settings.jwt_algorithm == "ES256"
    config = settings.flask_config()
    assert config["JWT_DECODE_ALGORITHMS"] == ["ES256"]
    assert config["JWT_DECODE_ISSUER"] == "http://127.0.0.1:8000"
    assert config["JWT_DECODE_AUDIENCE"] == "predgate"
    assert config["JWT_TOKEN_LOCATION"] == ["headers"]


def test_token_settings_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "PREDGATE_DATA_DIR": str(tmp_path),
            "PREDGATE_OAUTH_ISSUER": "https://gateway.example/",
            "PREDGATE_OAUTH_AUDIENCE": "https://gateway.example/v1",
            "PREDGATE_TOKEN_LIFETIME_SECONDS": "300",
            "PREDGATE_JWT_ALGORITHM": "es256",
        }
    )
    assert settings.oauth_issuer == "https://gateway.example"  # no final '/': URLs append paths
    assert settings.flask_config()["JWT_DECODE_ISSUER"] == "https://gateway.example"
    assert settings.oauth_audience == "https://gateway.example/v1"
    assert settings.token_lifetime_seconds == 300
    assert settings.jwt_algorithm == "ES256"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JWT_ALGORITHM", "HS256"),
        ("JWT_ALGORITHM", "none"),
        ("JWT_ALGORITHM", "RS256"),
        ("TOKEN_LIFETIME_SECONDS", "10"),
        ("TOKEN_LIFETIME_SECONDS", "999999"),
        ("TOKEN_LIFETIME_SECONDS", "soon"),
        ("OAUTH_ISSUER", "predgate"),
        ("OAUTH_ISSUER", "api.example.com"),
        ("OAUTH_ISSUER", "ftp://api.example.com"),
        ("OAUTH_ISSUER", "https://"),
        ("OAUTH_ISSUER", "https://api.example.com?tenant=acme"),
        ("OAUTH_ISSUER", "https://api.example.com#top"),
        ("OAUTH_ISSUER", "https://user:secret@api.example.com"),
        ("OAUTH_ISSUER", "https://api.example.com:99999"),
        ("OAUTH_ISSUER", "https://" + "a" * 200 + ".example"),
    ],
)
def test_bad_token_settings_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"PREDGATE_{name}"):
        Settings.from_env({"PREDGATE_DATA_DIR": str(tmp_path), f"PREDGATE_{name}": value})
