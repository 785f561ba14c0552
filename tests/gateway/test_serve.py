"""`predgate serve` as operators run it: a graceful stop commits what is queued and signs a final
checkpoint of the chain's head (SIGTERM, as a container runtime or systemd sends it)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import text

from config import Settings
from db.engine import create_db_engine
from tests.conftest import HOUSE, bearer
from tests.gateway.test_oauth_client_library import PREDGATE, _wait_until_serving
from tests.ratelimit_support import free_port


@pytest.mark.slow
def test_a_graceful_stop_signs_a_final_checkpoint(
    settings: Settings, predgate: Callable[..., Any]
) -> None:
    key = json.loads(predgate("demo", "--json").stdout)["tenants"][0]["api_key"]
    port = free_port()
    env = {
        "PREDGATE_DATA_DIR": str(settings.data_dir),
        "PREDGATE_DATABASE_URL": settings.database_url,
        "PREDGATE_SECRET_KEY": settings.secret_key.decode(),
        "PREDGATE_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [PREDGATE, "serve", "--port", str(port), "--workers", "1", "--threads", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, server)
        answered = requests.post(f"{base}/v1/predict", json=HOUSE, headers=bearer(key), timeout=10)
        assert answered.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0

    engine = create_db_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            head = connection.execute(text("SELECT seq, hash FROM audit_head")).one()
            last = connection.execute(
                text("SELECT seq, hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1")
            ).one()
            served = connection.execute(
                text("SELECT seq FROM audit_records WHERE request_id = :r"),
                {"r": answered.headers["X-Request-ID"]},
            ).scalar_one()
    finally:
        engine.dispose()
    # The stop signed the head as it was, covering the answered request's record.
    assert tuple(last) == tuple(head)
    assert served <= head[0]
    verified = predgate("audit", "verify", "--json")
    report = json.loads(verified.stdout)
    assert report["ok"]
    assert report["uncovered_tail"] == 0
