"""The counter store as a separate process: exactness across gunicorn workers sharing Redis,
each PREDGATE_RATELIMIT_ON_STORE_FAILURE mode while Redis is down, and recovery when it returns."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session

from auth.api_keys import issue_key
from auth.tenants import assign_model, create_tenant
from config import Settings
from db.engine import create_db_engine, make_session_factory
from db.migrations import upgrade
from gateway.cli import cli
from gateway.runtime import get_runtime
from models.artifacts import ArtifactStore
from models.registry import register_model
from ratelimit.limiter import STORE_FAILURE_LOG
from tests.conftest import HOUSE, World
from tests.gateway.conftest import limited_settings
from tests.gateway.test_audit_http import record_for
from tests.gateway.test_errors import assert_problem
from tests.gateway.test_rate_limits import audit_details, key_limit, post, remaining
from tests.ratelimit_support import Clock, RedisServer, free_port

PREDGATE = str(Path(sys.executable).with_name("predgate"))
# Worker processes counting against one limit in Redis: two share it as four would, and more
# would only take turns on the test machine's two cores while they start.
WORKERS = 2


@pytest.fixture
def ratelimit_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture predgate.ratelimit (the `predgate` logger does not propagate to the root)."""
    logger = logging.getLogger("predgate.ratelimit")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.mark.parametrize("mode", ["closed", "open", "local"])
def test_store_failure_modes_and_recovery(
    mode: str,
    redis_server: RedisServer,
    settings: Settings,
    make_app: Callable[..., Flask],
    world: World,
    session: Session,
    clock: Clock,
    ratelimit_log: pytest.LogCaptureFixture,
) -> None:
    key_limit(session, world.acme_key_id, "2/minute")
    app = make_app(limited_settings(settings, redis_server.url, ratelimit_on_store_failure=mode))
    client = app.test_client()
    healthy = post(client, world.acme_key)
    assert remaining(healthy) == {"key-minute": 1}
    assert "X-RateLimit-Degraded" not in healthy.headers

    redis_server.stop()
    down = post(client, world.acme_key)
    if mode == "closed":
        assert_problem(down, 503, "ratelimit_unavailable")
        assert "X-RateLimit-Degraded" not in down.headers
        assert record_for(session, down)["reason_code"] == "ratelimit_unavailable"
    elif mode == "open":
        assert down.status_code == 200
        assert down.headers["X-RateLimit-Degraded"] == "open"
        assert "RateLimit" not in down.headers  # nothing was counted: no invented numbers
        assert audit_details(session, down) == {"ratelimit_degraded": "open"}
    else:
        # Counted in this process's memory, from zero: the limit still holds.
        assert down.status_code == 200
        assert down.headers["X-RateLimit-Degraded"] == "local"
        assert remaining(down) == {"key-minute": 1}
        assert audit_details(session, down) == {"ratelimit_degraded": "local"}
        assert post(client, world.acme_key).status_code == 200
        refused = post(client, world.acme_key)
        assert_problem(refused, 429, "rate_limited")
        assert refused.headers["X-RateLimit-Degraded"] == "local"
    limiter = get_runtime(app).limiter
    assert limiter is not None
    assert limiter.store_failures()[mode] >= 1
    assert STORE_FAILURE_LOG in ratelimit_log.text
    assert f"PREDGATE_RATELIMIT_ON_STORE_FAILURE={mode}" in ratelimit_log.text

    redis_server.start()  # same port, empty: what the old server counted is gone
    clock.advance(2)  # a dead store is tried again after 1 s, then 2, 4, ... 32 s
    recovered = post(client, world.acme_key)
    assert recovered.status_code == 200
    assert "X-RateLimit-Degraded" not in recovered.headers
    assert remaining(recovered) == {"key-minute": 1}


def test_serve_refuses_several_workers_without_redis(tmp_path: Path) -> None:
    env = {"PREDGATE_DATA_DIR": str(tmp_path), "PREDGATE_SECRET_KEY": "0123456789abcdef" * 4}
    result = CliRunner().invoke(cli, ["serve", "--workers", "4"], env=env)
    assert result.exit_code == 1
    assert "PREDGATE_REDIS_URL" in result.output
    assert "4 times every limit" in result.output


@pytest.fixture
def served_key(tmp_path: Path, model_files: dict[str, Path]) -> tuple[dict[str, str], str]:
    """A fresh data directory with one key limited to 5/minute: (environment, api key)."""
    data_dir = tmp_path / "var"
    url = f"sqlite:///{tmp_path / 'predgate.db'}"
    env = {
        **os.environ,
        "PREDGATE_DATA_DIR": str(data_dir),
        "PREDGATE_DATABASE_URL": url,
        "PREDGATE_LOG_LEVEL": "WARNING",
    }
    settings = Settings.from_env(env)
    engine = create_db_engine(url)
    upgrade(engine)
    with make_session_factory(engine)() as session:
        register_model(
            session,
            ArtifactStore(settings.artifacts_dir),
            name="house-price",
            artifact_path=model_files["house-price"],
            registered_by="test",
        )
        create_tenant(session, name="acme")
        assign_model(session, "acme", model_name="house-price", version=None)
        issued = issue_key(
            session,
            settings.secret_key,
            tenant_name="acme",
            created_by="test",
            rate_limit="5/minute",
        )
        session.commit()
    engine.dispose()
    return env, issued.api_key


def test_exactly_the_limit_is_admitted_across_worker_processes(
    served_key: tuple[dict[str, str], str], redis_server: RedisServer, tmp_path: Path
) -> None:
    env, api_key = served_key
    env["PREDGATE_REDIS_URL"] = redis_server.url
    port = free_port()
    server = subprocess.Popen(
        [PREDGATE, "serve", "--port", str(port), "--workers", str(WORKERS), "--threads", "8"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_all_workers_serve(base, server, env["PREDGATE_DATABASE_URL"], workers=WORKERS)
        start = threading.Barrier(100)

        def call(_: int) -> int:
            start.wait(timeout=10)
            response = requests.post(
                f"{base}/v1/predict",
                json=HOUSE,
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=20,
            )
            return response.status_code

        with ThreadPoolExecutor(max_workers=100) as pool:
            statuses = Counter(pool.map(call, range(100)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert statuses == {200: 5, 429: 95}
    assert _processes_serving(env["PREDGATE_DATABASE_URL"], "/v1/predict") == WORKERS


def _processes_serving(database_url: str, route: str) -> int:
    """How many worker processes answered requests to the route (from the audit log)."""
    engine = create_db_engine(database_url)
    with engine.connect() as connection:
        count = connection.execute(
            text("SELECT count(DISTINCT process_id) FROM audit_records WHERE route = :r"),
            {"r": route},
        ).scalar_one()
    engine.dispose()
    return int(count)


def _wait_until_all_workers_serve(
    base: str, server: subprocess.Popen[bytes], database_url: str, *, workers: int
) -> None:
    """Until each worker has answered (an audited request), so the burst meets all of them."""
    deadline = time.monotonic() + 90  # each worker imports scikit-learn and onnx
    with ThreadPoolExecutor(max_workers=8) as pool:
        while time.monotonic() < deadline:
            assert server.poll() is None, "predgate serve exited"
            try:
                list(pool.map(lambda _: requests.get(f"{base}/openapi.json", timeout=5), range(8)))
            except requests.RequestException:  # not listening yet, or a worker still booting
                time.sleep(0.05)
                continue
            if _processes_serving(database_url, "/openapi.json") >= workers:
                return
    raise AssertionError(f"predgate serve did not answer from {workers} workers within 90 s")


def test_usage_command_reads_the_served_counters(
    redis_server: RedisServer,
    settings: Settings,
    make_app: Callable[..., Flask],
    world: World,
    session: Session,
) -> None:
    key_limit(session, world.acme_key_id, "5/minute;100/day")
    app_settings = limited_settings(settings, redis_server.url)
    client = make_app(app_settings).test_client()
    post(client, world.acme_key, {"instances": [HOUSE] * 3})
    env = {
        "PREDGATE_DATA_DIR": str(settings.data_dir),
        "PREDGATE_DATABASE_URL": settings.database_url,
        "PREDGATE_SECRET_KEY": settings.secret_key.decode(),
        "PREDGATE_REDIS_URL": redis_server.url,
        "PREDGATE_RATELIMIT_KEY_PREFIX": app_settings.ratelimit_key_prefix,
    }
    result = CliRunner().invoke(cli, ["keys", "usage", world.acme_key_id, "--json"], env=env)
    assert result.exit_code == 0, result.output
    windows = {w["window"]: w for w in json.loads(result.stdout)["windows"]}
    assert {name: (w["used"], w["remaining"]) for name, w in windows.items()} == {
        "key-minute": (3, 2),
        "key-day": (3, 97),
    }
    assert windows["key-minute"]["policy_source"] == "key"
    assert 0 < windows["key-minute"]["resets_in_seconds"] <= 61
    table = CliRunner().invoke(cli, ["keys", "usage", world.acme_key_id], env=env).output
    assert "key-minute" in table
    assert "5/minute;100/day" in table

    redis_server.stop()
    down = CliRunner().invoke(cli, ["keys", "usage", world.acme_key_id], env=env)
    assert down.exit_code == 1
    assert "unreachable" in down.output
    assert "Traceback" not in down.output
