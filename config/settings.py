"""Settings: one frozen object built from PREDGATE_* variables, validated when it is built."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.secrets import SecretError, load_or_create_secret, parse_secret
from ratelimit.errors import InvalidPolicy
from ratelimit.policy import normalize_policy

PREFIX = "PREDGATE_"
RATELIMIT_STRATEGIES = ("moving-window", "sliding-window-counter")
STORE_FAILURE_MODES = ("closed", "open", "local")
# Asymmetric only; tokens are signed and accepted with exactly this algorithm.
TOKEN_ALGORITHMS = ("es256",)
# Clock skew tolerated on exp and nbf; also how long a retired signing key outlives its tokens.
TOKEN_LEEWAY_SECONDS = 30
# The gateway's public base URL when PREDGATE_OAUTH_ISSUER is unset: where `make run` serves.
DEFAULT_ISSUER = "http://127.0.0.1:8000"
# The token denylist stores the issuer in a column of this width (auth.tables).
ISSUER_MAX_LENGTH = 200
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
# A Redis that stops answering costs a request at most this long before the failure mode applies.
REDIS_TIMEOUT_SECONDS = 1.0
# Loopback: a Prometheus (or sidecar) on the gateway's own host.
METRICS_ALLOW_DEFAULT = ("127.0.0.0/8", "::1/128")
# Built-in rate-limit policies, in the canonical spelling a parsed policy takes (a test checks).
DEFAULT_RATE_LIMIT = "600/minute;100000/day"
UNAUTHENTICATED_RATE_LIMIT = "30/minute"
_KEY_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


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
    # Model files uploaded to POST /admin/v1/models: the only route allowed past max_body_bytes.
    max_model_upload_bytes: int = 50 * 1024 * 1024
    model_cache_size: int = 8
    log_level: str = "INFO"
    log_format: str = "json"  # one JSON object per line; "text" for reading in a terminal
    instance_id: str = "local"
    # Audit log: Ed25519 checkpoint key (PEM or base64 seed; generated into data_dir if empty),
    # checkpoint cadence, how long a request waits for its record before it is answered 503,
    # whether liveness/readiness probes are audited, proxies trusted for X-Forwarded-For.
    audit_signing_key: str = field(default="", repr=False)
    audit_checkpoint_records: int = 1000
    audit_checkpoint_seconds: int = 60
    audit_wait_seconds: float = 5.0
    audit_health_checks: bool = False
    # Partner receipts: the Merkle tree over the records, signed tree heads, the Audit-Record
    # header and /v1/receipts, /v1/log/*. `log_origin` names the log in its checkpoints when
    # the tree begins (empty: predgate/audit/<key id>); it is stored then and kept.
    receipts_enabled: bool = True
    log_origin: str = ""
    trusted_proxies: tuple[str, ...] = ()
    # How many proxies in front of the gateway append to X-Forwarded-For (nginx alone: 1).
    trusted_proxy_hops: int = 1
    # Who may read GET /metrics without a credential (after PREDGATE_TRUSTED_PROXIES): these
    # networks; anyone else needs the admin scope.
    metrics_allow: tuple[str, ...] = METRICS_ALLOW_DEFAULT
    # Rate limits: policies such as "100/minute;5000/day", where counters live, how to count,
    # and what a request meets when the counter store is unreachable.
    default_rate_limit: str = DEFAULT_RATE_LIMIT
    unauthenticated_rate_limit: str = UNAUTHENTICATED_RATE_LIMIT
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    ratelimit_strategy: str = "moving-window"
    ratelimit_on_store_failure: str = "closed"
    ratelimit_key_prefix: str = "predgate"
    # OAuth2 access tokens (RFC 9068 JWTs): who issues them, for whom, for how long, how signed.
    # The issuer is the gateway's public base URL: the tokens' `iss`, and the base of every URL
    # the authorisation server metadata advertises (never the request's Host).
    oauth_issuer: str = DEFAULT_ISSUER
    oauth_audience: str = "predgate"
    token_lifetime_seconds: int = 900
    jwt_algorithm: str = "ES256"
    # Not read from the environment, so operators cannot switch limits off; benchmarks can.
    rate_limits_enabled: bool = True
    # How often each worker polls the change generation (db.changes); 0 polls on every request
    # (tests). Cached credentials are trusted for `change_stale_seconds` after a failed poll.
    change_poll_seconds: float = 0.25
    change_stale_seconds: float = 2.0
    # Threads per serving process (`predgate serve --threads`): at most half of them may wait
    # on one audit batch, so a hung database leaves the others to answer.
    server_threads: int = 8

    @property
    def artifacts_dir(self) -> Path:
        """Folder of content-addressed model artifacts."""
        return self.data_dir / "artifacts"

    def redis_options(self) -> dict[str, Any]:
        """Options of the Redis client: a Redis that stops answering costs a request at most
        REDIS_TIMEOUT_SECONDS before the store-failure mode applies."""
        return {
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from PREDGATE_* variables, creating the data directory and secret."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        data_dir = resolve_data_dir(env)
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
        log_format = reader.text("LOG_FORMAT", "json").lower()
        if log_format not in {"json", "text"}:
            raise SettingsError(f"{PREFIX}LOG_FORMAT must be json or text")
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            secret_key=secret,
            max_batch=reader.integer("MAX_BATCH", 1000, minimum=1),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", 1_048_576, minimum=256),
            max_model_upload_bytes=reader.integer(
                "MAX_MODEL_UPLOAD_BYTES", 50 * 1024 * 1024, minimum=1024
            ),
            model_cache_size=reader.integer("MODEL_CACHE_SIZE", 8, minimum=1),
            log_level=log_level,
            log_format=log_format,
            instance_id=reader.text("INSTANCE_ID", "") or socket.gethostname(),
            audit_signing_key=reader.text("AUDIT_SIGNING_KEY", ""),
            audit_checkpoint_records=reader.integer(
                "AUDIT_CHECKPOINT_RECORDS", 1000, minimum=1, maximum=1000
            ),
            audit_checkpoint_seconds=reader.integer(
                "AUDIT_CHECKPOINT_SECONDS", 60, minimum=1, maximum=60
            ),
            audit_wait_seconds=reader.integer("AUDIT_WAIT_SECONDS", 5, minimum=1, maximum=60),
            audit_health_checks=reader.boolean("AUDIT_HEALTH_CHECKS", False),
            receipts_enabled=reader.boolean("RECEIPTS", True),
            log_origin=_log_origin(reader.text("LOG_ORIGIN", "")),
            trusted_proxies=reader.networks("TRUSTED_PROXIES"),
            trusted_proxy_hops=reader.integer("TRUSTED_PROXY_HOPS", 1, minimum=1, maximum=5),
            metrics_allow=reader.networks("METRICS_ALLOW") or METRICS_ALLOW_DEFAULT,
            default_rate_limit=reader.policy("DEFAULT_RATE_LIMIT", DEFAULT_RATE_LIMIT),
            unauthenticated_rate_limit=reader.policy(
                "UNAUTHENTICATED_RATE_LIMIT", UNAUTHENTICATED_RATE_LIMIT
            ),
            redis_url=_redis_url(reader.text("REDIS_URL", "")),
            ratelimit_strategy=reader.choice(
                "RATELIMIT_STRATEGY", "moving-window", RATELIMIT_STRATEGIES
            ),
            ratelimit_on_store_failure=reader.choice(
                "RATELIMIT_ON_STORE_FAILURE", "closed", STORE_FAILURE_MODES
            ),
            ratelimit_key_prefix=_key_prefix(reader.text("RATELIMIT_KEY_PREFIX", "predgate")),
            oauth_issuer=_issuer(reader.text("OAUTH_ISSUER", "") or DEFAULT_ISSUER),
            oauth_audience=reader.text("OAUTH_AUDIENCE", "predgate") or "predgate",
            token_lifetime_seconds=reader.integer(
                "TOKEN_LIFETIME_SECONDS", 900, minimum=60, maximum=86400
            ),
            jwt_algorithm=reader.choice("JWT_ALGORITHM", "es256", TOKEN_ALGORITHMS).upper(),
        )

    def flask_config(self) -> dict[str, Any]:
        """The keys Flask and its extensions read, derived from these settings."""
        return {
            "MAX_CONTENT_LENGTH": self.max_body_bytes,
            "JSON_SORT_KEYS": False,
            # flask-jwt-extended verifies access tokens: one algorithm, our issuer and audience,
            # from the Authorization header only; the key comes from the token's kid.
            "JWT_ALGORITHM": self.jwt_algorithm,
            "JWT_DECODE_ALGORITHMS": [self.jwt_algorithm],
            "JWT_DECODE_ISSUER": self.oauth_issuer,
            "JWT_DECODE_AUDIENCE": self.oauth_audience,
            "JWT_DECODE_LEEWAY": TOKEN_LEEWAY_SECONDS,
            "JWT_TOKEN_LOCATION": ["headers"],
            "JWT_HEADER_NAME": "Authorization",
            "JWT_HEADER_TYPE": "Bearer",
            "JWT_IDENTITY_CLAIM": "sub",
            "JWT_ACCESS_TOKEN_EXPIRES": self.token_lifetime_seconds,
        }


def resolve_data_dir(environ: Mapping[str, str]) -> Path:
    """The data directory: PREDGATE_DATA_DIR, else ./var (of the working directory), absolute."""
    named = environ.get(f"{PREFIX}DATA_DIR", "").strip()
    return Path(named or "./var").expanduser().resolve()


def _redis_url(value: str) -> str | None:
    if value and not value.startswith(REDIS_SCHEMES):
        raise SettingsError(
            f"{PREFIX}REDIS_URL must start with redis://, rediss:// or redis+unix://"
        )
    return value or None


def _issuer(value: str) -> str:
    """The gateway's public base URL: absolute http(s), with a host, and no credentials, query,
    fragment or final '/' (tokens' `iss` and the metadata must match it character for character)."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or set(value) & set("?# \t")
        or len(value) > ISSUER_MAX_LENGTH
    ):
        raise SettingsError(
            f"{PREFIX}OAUTH_ISSUER must be the gateway's public base URL: an absolute http(s) URL "
            f"without credentials, query or fragment, at most {ISSUER_MAX_LENGTH} characters "
            "(e.g. https://api.example.com)"
        )
    return value.rstrip("/")


def _key_prefix(value: str) -> str:
    if not _KEY_PREFIX.match(value):
        raise SettingsError(
            f"{PREFIX}RATELIMIT_KEY_PREFIX is 1-64 letters, digits, '_', '.', ':' or '-'"
        )
    return value


@dataclass(frozen=True)
class _Reader:
    env: Mapping[str, str]

    def text(self, name: str, default: str) -> str:
        return self.env.get(PREFIX + name, default).strip()

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).lower() or default
        if value not in allowed:
            raise SettingsError(f"{PREFIX}{name} must be one of: {', '.join(allowed)}")
        return value

    def policy(self, name: str, default: str) -> str:
        value = self.text(name, default) or default
        if value == default:
            # Valid and canonical already; parsing it would load `limits` in every command.
            return value
        try:
            return normalize_policy(value)
        except InvalidPolicy as exc:
            raise SettingsError(f"{PREFIX}{name}: {exc}") from None

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


def _log_origin(value: str) -> str:
    """A checkpoint's origin line is also its signature's key name: no spaces, no '+'."""
    if value and (any(c.isspace() for c in value) or "+" in value or not value.isprintable()):
        raise SettingsError(f"{PREFIX}LOG_ORIGIN must not contain spaces or '+'")
    return value
