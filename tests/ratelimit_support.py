"""Rate-limit test support: a Redis server a test can stop and start again, a clock tests move
by hand, and the counter stores to run against (memory always; Redis when
PREDGATE_TEST_REDIS_URL is set, as CI does)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from typing import Any

import redis

REDIS_URL_VARIABLE = "PREDGATE_TEST_REDIS_URL"
# Every counter a test run writes to the shared test Redis has a key prefix starting with this
# (see unique_key_prefix), so the run deletes exactly its own keys at the end (tests/conftest.py).
RUN_KEY_PREFIX = f"predgate-test-{uuid.uuid4().hex[:10]}"


def unique_key_prefix() -> str:
    """A rate-limit key prefix (PREDGATE_RATELIMIT_KEY_PREFIX) of this run, unique per call."""
    return f"{RUN_KEY_PREFIX}-{uuid.uuid4().hex[:8]}"


def delete_keys_with_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every counter whose key prefix starts with `prefix`; how many were deleted."""
    names = list(client.scan_iter(match=f"*LIMITER/{prefix}*", count=1000))
    for start in range(0, len(names), 500):
        client.delete(*names[start : start + 500])
    return len(names)


def storage_variants() -> list[str]:
    """`memory`, plus `redis` when a test Redis is configured."""
    return ["memory", "redis"] if os.environ.get(REDIS_URL_VARIABLE) else ["memory"]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A private `redis-server` on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait (at most 10 s) until it answers."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        """Kill the server (no shutdown save) and wait for it to exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class Clock:
    """Stands in for `time.time`, which `limits` and flask-limiter read; moved by hand.

    Only the thread that made the clock (the test's, which also serves the test client's
    requests) sees it; other threads keep the real time. limits' MemoryStorage prunes expired
    entries on a 10 ms `threading.Timer` whose firing depends on real time and whose cut-off
    (`expiry <= now`) is one instant earlier than the request path's (`atime >= now - window`):
    on the test clock it could drop an entry exactly at a window boundary, or not, at random.
    """

    def __init__(self, now: float) -> None:
        self.now = now
        self._owner = threading.get_ident()
        self._real_time = time.time

    def __call__(self) -> float:
        if threading.get_ident() != self._owner:
            return self._real_time()
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rate_headers(response: Any) -> dict[str, str]:
    """The rate-limit headers of a response."""
    names = (
        "RateLimit-Policy",
        "RateLimit",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "X-RateLimit-Degraded",
        "Retry-After",
    )
    return {name: response.headers[name] for name in names if name in response.headers}
