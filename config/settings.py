"""Settings: one frozen object built from PREDGATE_* variables, validated when it is built."""

from __future__ import annotations

import ipaddress
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
    # Audit log: Ed25519 checkpoint key (PEM or base64 seed; generated into data_dir if empty),
    # checkpoint cadence, whether health checks are audited, proxies trusted for X-Forwarded-For.
    audit_signing_key: str = field(default="", repr=False)
    audit_checkpoint_records: int = 1000
    audit_checkpoint_seconds: int = 60
    audit_health_checks: bool = True
    trusted_proxies: tuple[str, ...] = ()

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
            audit_signing_key=reader.text("AUDIT_SIGNING_KEY", ""),
            audit_checkpoint_records=reader.integer(
                "AUDIT_CHECKPOINT_RECORDS", 1000, minimum=1, maximum=1000
            ),
            audit_checkpoint_seconds=reader.integer(
                "AUDIT_CHECKPOINT_SECONDS", 60, minimum=1, maximum=60
            ),
            audit_health_checks=reader.boolean("AUDIT_HEALTH_CHECKS", True),
            trusted_proxies=reader.networks("TRUSTED_PROXIES"),
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

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.env.get(PREFIX + name, "").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{PREFIX}{name} must be true or false")

    def networks(self, name: str) -> tuple[str, ...]:
        raw = self.env.get(PREFIX + name, "")
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise SettingsError(
                    f"{PREFIX}{name} must be a comma-separated list of IP addresses or networks"
                ) from None
        return items

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        raw = self.env.get(PREFIX + name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{PREFIX}{name} must be an integer") from None
        if value < minimum:
            raise SettingsError(f"{PREFIX}{name} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{PREFIX}{name} must be at most {maximum}")
        return value
