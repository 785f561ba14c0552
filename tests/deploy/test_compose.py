"""docker-compose.yml, read as `docker compose` reads it: its variables interpolated from an
operator's environment, then parsed and validated by a Compose parser (compose-spec: unknown
keys, bad durations or restart policies are refused). No Docker engine runs here; what the file
asks of each service is checked against the gateway's own settings and limits."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from compose_spec import PyCompose, parse_duration

from config import Settings
from db.engine import create_db_engine
from gateway.server import SHUTDOWN_SECONDS
from tests.deploy.nginx import ROOT

COMPOSE = ROOT / "docker-compose.yml"
# What an operator exports before `docker compose up` (README "Deploying at scale").
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "a-database-password",
    "PREDGATE_SECRET_KEY": "ab" * 32,
    "PREDGATE_AUDIT_SIGNING_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "PREDGATE_OAUTH_ISSUER": "https://api.example.com",
}
# Addresses Docker gives containers (nginx among them) on its default address pools.
DOCKER_ADDRESSES = ("172.18.0.5", "172.31.255.2", "192.168.16.3", "192.168.240.7", "10.0.1.7")
# Connections PostgreSQL must keep beside the gateways: superusers, migrations, the CLI.
RESERVED_CONNECTIONS = 10
LONG_RUNNING = ("postgres", "redis", "gateway", "lb")
_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\})"
)


class MissingVariable(ValueError):
    """A required variable (${NAME:?message}) is unset or empty."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation of every string in a parsed file: ${NAME}, ${NAME:-default},
    ${NAME-default}, ${NAME:?error}, ${NAME?error} and $$."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op") or "", match.group("arg")
        if name is None:
            return "$"
        current = env.get(name)
        unset = current is None or (op.startswith(":") and not current)
        if op.endswith("-"):
            return arg if unset else str(current)
        if op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load(env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as `docker compose config` sees it with `env`: parsed, interpolated,
    and parsed again, so every interpolated value is validated too."""
    raw = PyCompose.from_yaml(COMPOSE.read_text()).to_dict()
    parsed = PyCompose.from_json(json.dumps(interpolate(raw, env)))
    parsed.validate()  # every volume, network, config and secret a service names is declared
    return parsed.to_dict()


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The services of the compose file, interpolated with the operator's environment."""
    found: dict[str, Any] = load(OPERATOR_ENV)["services"]
    return found


@pytest.mark.parametrize("variable", sorted(OPERATOR_ENV))
def test_compose_refuses_to_start_without_each_required_variable(variable: str) -> None:
    env = {name: value for name, value in OPERATOR_ENV.items() if name != variable}
    with pytest.raises(MissingVariable, match=variable):
        load(env)
    with pytest.raises(MissingVariable, match=variable):
        load({**env, variable: ""})


def test_every_service_restarts(services: dict[str, Any]) -> None:
    assert set(services) == {*LONG_RUNNING, "migrate"}
    for name in LONG_RUNNING:
        assert services[name].get("restart") in ("unless-stopped", "always"), name
    # Runs once: again only if it failed (PostgreSQL not ready for it after all).
    assert services["migrate"].get("restart") == "on-failure"


def test_each_service_starts_after_what_it_needs_is_healthy(services: dict[str, Any]) -> None:
    postgres = _check(services["postgres"])
    # Over TCP: the image's init-time server listens on the Unix socket only.
    assert postgres[0] == "pg_isready"
    assert postgres[postgres.index("-h") + 1] == "127.0.0.1"
    assert _check(services["redis"]) == ["redis-cli", "ping"]
    assert "http://127.0.0.1:8000/readyz" in " ".join(_check(services["gateway"]))
    conditions = {
        name: {needed: rule["condition"] for needed, rule in service["depends_on"].items()}
        for name, service in services.items()
        if "depends_on" in service
    }
    assert conditions == {
        "migrate": {"postgres": "service_healthy"},
        "gateway": {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
        },
        "lb": {"gateway": "service_healthy"},
    }


def _check(service: dict[str, Any]) -> list[str]:
    """The command of a service's healthcheck (the parser keeps CMD-SHELL as one string)."""
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return shlex.split(test)
    return shlex.split(test[1]) if test[0] == "CMD-SHELL" else list(test[1:])


def test_a_stopped_gateway_has_time_to_finish(services: dict[str, Any]) -> None:
    # Docker kills a container stop_grace_period after SIGTERM (10 s by default); the gateway
    # needs up to SHUTDOWN_SECONDS to commit its queued audit records and sign a checkpoint.
    grace = parse_duration(services["gateway"]["stop_grace_period"])
    assert grace >= SHUTDOWN_SECONDS + 5


def test_redis_keeps_its_counters(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    volumes = {mount.split(":")[1]: mount.split(":")[0] for mount in redis["volumes"]}
    assert volumes.get("/data") in load(OPERATOR_ENV)["volumes"]


def test_gateway_settings_from_the_compose_environment(
    services: dict[str, Any], tmp_path: Path
) -> None:
    environment = services["gateway"]["environment"]
    assert services["migrate"]["environment"] == environment  # one database, one set of secrets
    settings = Settings.from_env({**environment, "PREDGATE_DATA_DIR": str(tmp_path)})
    assert settings.oauth_issuer == OPERATOR_ENV["PREDGATE_OAUTH_ISSUER"]
    assert settings.database_url.startswith("postgresql+psycopg://predgate:")
    assert settings.redis_url == "redis://redis:6379/0"
    networks = [ipaddress.ip_network(item) for item in settings.trusted_proxies]
    for address in DOCKER_ADDRESSES:
        assert any(ipaddress.ip_address(address) in net for net in networks), address
    assert not any(ipaddress.ip_address("203.0.113.7") in net for net in networks)


def test_postgres_accepts_every_connection_the_replicas_may_open(
    services: dict[str, Any],
) -> None:
    command = services["postgres"]["command"]
    settings = dict(item.split("=", 1) for item in command[command.index("-c") + 1 :: 2])
    max_connections = int(settings["max_connections"])
    gateway = services["gateway"]
    replicas = int(gateway["deploy"]["replicas"])
    workers = int(gateway["command"][gateway["command"].index("--workers") + 1])
    engine = create_db_engine("postgresql+psycopg://predgate@postgres/predgate")
    try:
        per_worker = engine.pool.size() + engine.pool._max_overflow  # the pool's hard cap
    finally:
        engine.dispose()
    needed = replicas * workers * per_worker + RESERVED_CONNECTIONS
    print(f"\n{replicas} x {workers} x {per_worker} + {RESERVED_CONNECTIONS} = {needed}")
    assert max_connections >= needed


def test_only_nginx_is_reachable_so_the_replicas_may_leave_buffering_to_it(
    services: dict[str, Any],
) -> None:
    # `--behind-proxy` is safe only when every client comes through nginx, which reads whole
    # requests first: no other service publishes a port.
    assert "--behind-proxy" in services["gateway"]["command"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"lb"}


def test_nginx_follows_the_replicas(services: dict[str, Any]) -> None:
    lb = services["lb"]
    image, _, tag = lb["image"].partition(":")
    assert image == "nginx"
    # `server NAME resolve` (re-resolving replicas) exists in open-source nginx from 1.27.3.
    assert tuple(int(part) for part in tag.split(".")) >= (1, 27, 3)
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in lb["volumes"]
    shipped = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"^\s*server gateway:8000 resolve\b", shipped, flags=re.MULTILINE)
    assert re.search(r"^resolver 127\.0\.0\.11\b", shipped, flags=re.MULTILINE)  # Docker's DNS
    # Only nginx is reachable from outside.
    assert [name for name, service in services.items() if service.get("ports")] == ["lb"]


def test_the_image_holds_every_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in patterns}
    copied = set(re.findall(r"^COPY (\S+) \1$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
