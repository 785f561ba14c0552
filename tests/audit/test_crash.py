"""Crash safety: serving workers SIGKILLed repeatedly under load lose no record of a response
that reached its client, and the chain still verifies. Bounded: ~9 s of load per database."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from audit.recorder import load_audit_config, verify_database
from config import Settings
from db.engine import create_db_engine, make_session_factory
from tests.conftest import HOUSE
from tests.ratelimit_support import unique_key_prefix
from tests.serving_support import run_predgate, wait_until_serving

PREDGATE = str(Path(sys.executable).with_name("predgate"))
KILLS = 3
# Each replacement has started before the next kill: one worker is replaced at a time.
KILL_EVERY = 2.0
# Answers received before the first kill: the workers are serving, not still loading.
ANSWERED_BEFORE_KILLS = 20
# The load goes on this long after the last kill, so no worker is still starting when the
# server is told to stop.
SETTLE_SECONDS = 3.0
# granian stops altogether when a worker it has just replaced dies again within 5.5 s (its
# crash-loop guard): only workers older than this are killed.
MIN_WORKER_AGE = 6.5
CLIENTS = 4
DEADLINE_SECONDS = 60.0  # for the first answers and the kills (a loaded machine)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


@pytest.mark.slow
def test_sigkilled_workers_lose_no_answered_record(settings: Settings) -> None:
    redis_url = os.environ.get("PREDGATE_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("several workers need Redis for their rate-limit counters")
    env = {
        **os.environ,
        "PREDGATE_REDIS_URL": redis_url,
        "PREDGATE_DATA_DIR": str(settings.data_dir),
        "PREDGATE_DATABASE_URL": settings.database_url,
        "PREDGATE_SECRET_KEY": settings.secret_key.decode(),
        "PREDGATE_LOG_LEVEL": "WARNING",
        # A prefix of this run, so its counters are deleted when the run ends.
        "PREDGATE_RATELIMIT_KEY_PREFIX": unique_key_prefix(),
    }
    demo = run_predgate(env, "demo", "--json")
    assert demo.exit_code == 0, demo.output
    key = json.loads(demo.stdout)["tenants"][0]["api_key"]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = settings.data_dir.parent / "serve.log"
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [PREDGATE, "serve", "--port", str(port), "--workers", "3", "--threads", "2"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    received: list[tuple[str, int]] = []
    lost = 0
    stop = threading.Event()
    lock = threading.Lock()

    def load() -> None:
        nonlocal lost
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    response = http.post(
                        f"{base}/v1/predict",
                        json=HOUSE,
                        timeout=10,
                        headers={"Authorization": f"Bearer {key}"},
                    )
                except requests.RequestException:
                    with lock:
                        lost += 1
                    continue
                with lock:
                    received.append((response.headers["X-Request-ID"], response.status_code))

    kills = 0
    killed: set[int] = set()  # a killed worker stays a child until the server reaps it
    try:
        wait_until_serving(base, server, log_path=log_path)
        clients = [threading.Thread(target=load) for _ in range(CLIENTS)]
        first_seen: dict[int, float] = dict.fromkeys(_workers(server.pid), float("-inf"))
        for client in clients:
            client.start()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(received) < ANSWERED_BEFORE_KILLS and time.monotonic() < deadline:
            time.sleep(0.05)
        # Every KILL_EVERY a worker old enough is killed while the others serve: in effect the
        # original workers, as a replacement is old enough only after MIN_WORKER_AGE.
        while kills < KILLS and time.monotonic() < deadline:
            time.sleep(KILL_EVERY)
            now = time.monotonic()
            for pid in _workers(server.pid):
                first_seen.setdefault(pid, now)
            old = [
                pid
                for pid in _workers(server.pid)
                if pid not in killed and now - first_seen[pid] > MIN_WORKER_AGE
            ]
            if old:
                victim = random.choice(old)
                os.kill(victim, signal.SIGKILL)
                killed.add(victim)
                kills += 1
        time.sleep(SETTLE_SECONDS)
        stop.set()
        for client in clients:
            client.join(timeout=30)
    finally:
        stop.set()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    print(f"kills={kills} received={len(received)} lost={lost}")
    assert kills >= KILLS
    assert len(received) > 50, (len(received), lost)
    engine = create_db_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            stored = dict(
                session.execute(
                    text(
                        "SELECT request_id, http_status FROM audit_records "
                        "WHERE route = '/v1/predict'"
                    )
                ).all()
            )
            counts = dict(
                session.execute(
                    text(
                        "SELECT request_id, count(*) FROM audit_records "
                        "WHERE request_id IS NOT NULL GROUP BY request_id"
                    )
                ).all()
            )
            missing = [rid for rid, _ in received if rid not in stored]
            assert missing == []
            assert all(stored[rid] == status for rid, status in received)
            assert all(counts[rid] == 1 for rid, _ in received)
            config = load_audit_config(settings.data_dir, signing_key="", instance_id="test")
            report = verify_database(session, config.public_keys())
            assert report.ok, report.findings
    finally:
        engine.dispose()
