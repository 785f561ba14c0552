"""`predgate serve` as operators run it: a graceful stop commits what is queued and signs a final
checkpoint of the chain's head (SIGTERM, as a container runtime or systemd sends it)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import text

from config import Settings
from db.engine import create_db_engine
from tests.conftest import HOUSE, bearer
from tests.serving_support import start_serving


@pytest.mark.slow
def test_a_graceful_stop_signs_a_final_checkpoint(
    settings: Settings, predgate: Callable[..., Any]
) -> None:
    key = json.loads(predgate("demo", "--json").stdout)["tenants"][0]["api_key"]
    server, base = start_serving(settings)
    try:
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
