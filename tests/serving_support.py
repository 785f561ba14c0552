"""`predgate serve` as a test starts it: on a free loopback port, with a test's settings in its
environment, answering /healthz before the test goes on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests

from config import Settings
from tests.ratelimit_support import free_port

PREDGATE = str(Path(sys.executable).with_name("predgate"))
START_SECONDS = 20


def start_serving(
    settings: Settings, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`predgate serve ARGS...` (one worker, two threads unless ARGS say otherwise) on this
    test's database and data directory; (the process, its base URL) once it answers."""
    port = port or free_port()
    environment = {
        "PATH": str(Path(sys.executable).parent),
        "PREDGATE_DATA_DIR": str(settings.data_dir),
        "PREDGATE_DATABASE_URL": settings.database_url,
        "PREDGATE_SECRET_KEY": settings.secret_key.decode(),
        "PREDGATE_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    server = subprocess.Popen(
        [PREDGATE, "serve", "--port", str(port), "--workers", "1", "--threads", "2", *args],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server)
    except BaseException:
        server.kill()
        server.wait(timeout=30)
        raise
    return server, base


def wait_until_serving(base: str, server: subprocess.Popen[bytes]) -> None:
    """Until /healthz answers 200 (AssertionError if the server exits or takes too long)."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert server.poll() is None, "predgate serve exited"
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.05)
    raise AssertionError(f"predgate serve did not answer within {START_SECONDS} s")
