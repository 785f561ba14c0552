"""Shared benchmark plumbing: a demo data directory and a real gunicorn server on loopback."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

PREDGATE = str(Path(sys.executable).with_name("predgate"))


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_environment(extra: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """A fresh data directory with the demo applied: (environment, {tenant: api key})."""
    data_dir = tempfile.mkdtemp(prefix="predgate-bench-")
    env = {**os.environ, "PREDGATE_DATA_DIR": data_dir, "PREDGATE_LOG_LEVEL": "WARNING"}
    env.update(extra or {})
    output = subprocess.run(
        [PREDGATE, "demo", "--json"], env=env, check=True, capture_output=True, text=True
    ).stdout
    keys = {entry["tenant"]: entry["api_key"] for entry in json.loads(output)["tenants"]}
    return env, keys


@contextmanager
def running_server(env: dict[str, str], *, workers: int = 1, threads: int = 4) -> Iterator[str]:
    """`predgate serve` on a free loopback port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            PREDGATE,
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def time_calls(call: Callable[[], object], count: int, warmup: int = 50) -> list[float]:
    """Latencies of `count` sequential calls, in milliseconds, after a warm-up."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p95 and mean of latencies in ms."""
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }
