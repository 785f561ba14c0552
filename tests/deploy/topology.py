"""The compose topology as processes on loopback: two `predgate serve --workers 2` replicas on
one PostgreSQL schema and one Redis key prefix of their own (tests.propagation.deployment), and
the shipped nginx in front of them (tests.deploy.nginx)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text

from tests.deploy.nginx import SHIPPED, Nginx, adapt
from tests.propagation import deployment as propagation
from tests.propagation.deployment import Deployment, Gateway

# Where nginx connects from here; in compose, the Docker networks the file trusts.
TRUSTED_PROXIES = "127.0.0.1/32"
READY_SECONDS = 60.0


@dataclass
class Topology:
    """The running replicas, nginx in front of them, and a key of tenant acme."""

    deployment: Deployment
    nginx: Nginx
    api_key: str

    def issue_key(self, *extra: str) -> tuple[str, str]:
        """(key id, API key) of a new key of acme, issued with `predgate keys issue`."""
        issued = json.loads(
            self.deployment.cli.run("keys", "issue", "--tenant", "acme", "--json", *extra)
            .check()
            .stdout
        )
        return str(issued["key_id"]), str(issued["api_key"])

    def audited(self, request_ids: list[str]) -> dict[str, tuple[int, int, str | None]]:
        """request id -> (HTTP status, worker pid, source address) of its audit record."""
        query = text(
            "SELECT request_id, http_status, process_id, source_ip FROM audit_records "
            "WHERE request_id IN :ids"
        ).bindparams(bindparam("ids", expanding=True))
        found: dict[str, tuple[int, int, str | None]] = {}
        with self.deployment.engine.connect() as connection:
            for start in range(0, len(request_ids), 1000):
                rows = connection.execute(query, {"ids": request_ids[start : start + 1000]})
                found.update({str(rid): (int(st), int(pid), ip) for rid, st, pid, ip in rows})
        return found


def _behind_proxy(make_env: Callable[..., dict[str, str]]) -> Callable[..., dict[str, str]]:
    def env(*args: str) -> dict[str, str]:
        return {**make_env(*args), "PREDGATE_TRUSTED_PROXIES": TRUSTED_PROXIES}

    return env


@contextlib.contextmanager
def running_topology(database_url: str, redis_url: str, folder: Path) -> Iterator[Topology]:
    """Replicas, nginx running the shipped file in front of them; all stopped afterwards."""
    with contextlib.ExitStack() as cleanup:
        # deployment() builds the replicas' environment with gateway_env: the replicas trust
        # nginx's address for X-Forwarded-*, as the compose file's replicas trust its networks.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(propagation, "gateway_env", _behind_proxy(propagation.gateway_env))
            running = cleanup.enter_context(propagation.deployment(database_url, redis_url, folder))
        nginx = Nginx(folder / "nginx")
        nginx.start(
            adapt(
                SHIPPED.read_text(),
                upstream_ports=[gateway.port for gateway in running.gateways],
                listen={8000: nginx.port},
                logs=nginx.logs,
            )
        )
        cleanup.callback(nginx.stop)
        topology = Topology(running, nginx, "")
        topology.api_key = topology.issue_key()[1]
        yield topology


def restart_replica(gateway: Gateway, env: dict[str, str]) -> None:
    """Start a replica again on its port, as compose's restart policy starts its container."""
    if gateway.process.poll() is None:
        raise AssertionError(f"replica {gateway.name} is still running")
    gateway.start(env)
    gateway.wait_ready(time.monotonic() + READY_SECONDS)
