"""Rate limits, measured in one run:

1. exactness: `predgate serve --workers 4` on Redis, 100 concurrent requests against a fresh key
   limited to 5/minute, repeated (20 times by default): how many were admitted each time;
2. overhead: the same POST /v1/predict through the Flask test client with rate limits off, on
   memory counters and on Redis counters (a two-window policy, like the default), interleaved
   rounds; the added latency of the limit check in ms and as a ratio.

    .venv/bin/python -m bench.ratelimit_overhead [--redis-url redis://127.0.0.1:6379/0]
        [--repetitions 20] [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
import requests
from flask.testing import FlaskClient

from audit.writer import NullAuditSink
from auth.api_keys import issue_key
from bench.provision import demo_environment
from bench.servers import predgate_server
from config import Settings
from db.engine import create_db_engine, make_session_factory
from gateway import create_app
from gateway.runtime import get_runtime

ROW = {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}
CONCURRENT = 100
LIMIT = 5


def issue_limited_key(settings: Settings, policy: str) -> str:
    """A fresh acme key with its own policy (fresh counters)."""
    engine = create_db_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        issued = issue_key(
            session, settings.secret_key, tenant_name="acme", created_by="bench", rate_limit=policy
        )
        session.commit()
    engine.dispose()
    return issued.api_key


def exactness(env: dict[str, str], settings: Settings, repetitions: int) -> dict[str, Any]:
    """Admitted counts of CONCURRENT simultaneous requests against LIMIT/minute, per repetition."""
    admitted: list[int] = []
    log = Path(env["PREDGATE_DATA_DIR"]) / "serve.log"
    with predgate_server(env, log, workers=4, threads=8) as server:
        base = server.base_url
        for _ in range(repetitions):
            key = issue_limited_key(settings, f"{LIMIT}/minute")
            barrier = threading.Barrier(CONCURRENT)

            def call(_: int, key: str = key, barrier: threading.Barrier = barrier) -> int:
                barrier.wait(timeout=10)
                return requests.post(
                    f"{base}/v1/predict",
                    json=ROW,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                ).status_code

            with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
                statuses = Counter(pool.map(call, range(CONCURRENT)))
            assert set(statuses) <= {200, 429}, statuses
            admitted.append(statuses[200])
    return {
        "workers": 4,
        "concurrent_requests": CONCURRENT,
        "limit": f"{LIMIT}/minute",
        "admitted_per_run": admitted,
        "runs_admitting_exactly_the_limit": sum(1 for count in admitted if count == LIMIT),
    }


def overhead(settings: Settings, redis_url: str, count: int, rounds: int = 10) -> dict[str, Any]:
    """p50/p95/mean of the predict path per variant, and the limit check's added latency."""
    policy = "100000/minute;1000000/day"
    key = issue_limited_key(settings, policy)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    variants = {
        "no_limits": replace(settings, rate_limits_enabled=False),
        "memory": replace(settings, ratelimit_key_prefix=prefix),
        "redis": replace(settings, redis_url=redis_url, ratelimit_key_prefix=prefix),
    }
    clients: dict[str, FlaskClient] = {}
    for name, variant in variants.items():
        # The audit log is its own benchmark; a null sink keeps its disk writes out of these.
        app = create_app(variant, audit_sink=NullAuditSink())
        clients[name] = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}

    def call_for(client: FlaskClient) -> Callable[[], None]:
        def call() -> None:
            response = client.post("/v1/predict", json=ROW, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)

        return call

    samples: dict[str, list[float]] = {name: [] for name in variants}
    for client in clients.values():
        for _ in range(100):
            call_for(client)()
    per_round = count // rounds
    for _ in range(rounds):
        for name, client in clients.items():
            call = call_for(client)
            for _ in range(per_round):
                started = time.perf_counter()
                call()
                samples[name].append((time.perf_counter() - started) * 1000)
    for name in clients:
        get_runtime(clients[name].application).engine.dispose()
    _delete_keys(redis_url, prefix)
    results: dict[str, Any] = {name: summary(values) for name, values in samples.items()}
    base = results["no_limits"]
    for name in ("memory", "redis"):
        stats = results[name]
        stats["added_p50_ms"] = round(stats["p50_ms"] - base["p50_ms"], 3)
        stats["added_mean_ms"] = round(stats["mean_ms"] - base["mean_ms"], 3)
        stats["p50_ratio"] = round(stats["p50_ms"] / base["p50_ms"], 3)
        stats["mean_ratio"] = round(stats["mean_ms"] / base["mean_ms"], 3)
    return {"policy": policy, "requests_per_variant": per_round * rounds, "results": results}


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p95 and mean of latencies in ms."""
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def _delete_keys(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for name in client.scan_iter(f"LIMITS:LIMITER/{prefix}/*"):
        client.delete(name)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("PREDGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    with demo_environment(redis_url=args.redis_url, ratelimit_key_prefix=prefix) as (env, _):
        settings = Settings.from_env(env)
        try:
            report = {
                "exactness": exactness(env, settings, args.repetitions),
                "overhead": overhead(
                    replace(settings, redis_url=None), args.redis_url, args.requests
                ),
            }
        finally:
            _delete_keys(args.redis_url, prefix)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
