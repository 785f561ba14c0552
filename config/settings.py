"""Settings: one frozen object built from PREDGATE_* variables, validated when it is built."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.secrets import SecretError, load_or_create_secret, parse_secret

PREFIX = "PREDGATE_"


class SettingsError(ValueError):
    """A PREDGATE_* variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from its environment, typed and checked."""

    data_dir: Path
    database_url: str
    secret_key: bytes = field(repr=False)
    max_batch: int = 1000
    max_body_bytes: int = 1_048_576
    model_cache_size: int = 8
    log_level: str = "INFO"
    instance_id: str = "local"

    @property
    def artifacts_dir(self) -> Path:
        """Folder of content-addressed model artifacts."""
        return self.data_dir / "artifacts"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from PREDGATE_* variables, creating the data directory and secret."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        data_dir = Path(reader.text("DATA_DIR", "./var")).expanduser().resolve()
        database_url = reader.text("DATABASE_URL", "") or f"sqlite:///{data_dir / 'predgate.db'}"
        if not database_url.startswith(("sqlite://", "postgresql+psycopg://")):
            raise SettingsError(
                f"{PREFIX}DATABASE_URL must start with sqlite:// or postgresql+psycopg://"
            )
        secret_value = reader.text("SECRET_KEY", "")
        try:
            if secret_value:
                secret = parse_secret(secret_value, variable=f"{PREFIX}SECRET_KEY")
            else:
                secret = load_or_create_secret(data_dir)
        except SecretError as exc:
            raise SettingsError(str(exc)) from exc
        except OSError as exc:
            raise SettingsError(f"{PREFIX}DATA_DIR {data_dir} is not writable: {exc}") from exc
        log_level = reader.text("LOG_LEVEL", "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            secret_key=secret,
            max_batch=reader.integer("MAX_BATCH", 1000, minimum=1),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", 1_048_576, minimum=256),
            model_cache_size=reader.integer("MODEL_CACHE_SIZE", 8, minimum=1),
            log_level=log_level,
            instance_id=reader.text("INSTANCE_ID", "") or socket.gethostname(),
        )

    def flask_config(self) -> dict[str, Any]:
        """The keys Flask and its extensions read, derived from these settings."""
        return {
            "MAX_CONTENT_LENGTH": self.max_body_bytes,
            "JSON_SORT_KEYS": False,
        }


@dataclass(frozen=True)
class _Reader:
    env: Mapping[str, str]

    def text(self, name: str, default: str) -> str:
        return self.env.get(PREFIX + name, default).strip()

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self.env.get(PREFIX + name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{PREFIX}{name} must be an integer") from None
        if value < minimum:
            raise SettingsError(f"{PREFIX}{name} must be at least {minimum}")
        return value
