"""Audit benchmarks, each variant measured in the same run:

1. the append path alone: records per second through the group-commit writer;
2. POST /v1/predict throughput under wrk, the audited app against the same app with the
   null sink, alternating rounds so machine noise hits both alike.

    .venv/bin/python -m bench.audit_throughput [--seconds 10] [--rounds 3]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench]

Needs wrk (Debian package `wrk`). Rate limits are raised out of the way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

import requests

from audit.events import AuditEvent
from audit.recorder import load_audit_config
from audit.writer import GroupCommitWriter
from bench.load import WRK, run_wrk
from bench.provision import demo_environment
from bench.servers import gunicorn_server
from db.engine import create_db_engine

ROW = {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}


def append_rate(data_dir: Path, database_url: str, seconds: float, threads: int) -> float:
    """Records per second committed by `threads` concurrent callers through one writer."""
    engine = create_db_engine(database_url)
    config = load_audit_config(data_dir, signing_key="", instance_id="bench")
    writer = GroupCommitWriter(engine, config.signer, config.policy)
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def caller(index: int) -> None:
        while time.monotonic() < deadline:
            writer.commit(
                AuditEvent(
                    event_type="predict",
                    outcome="success",
                    instance_id="bench",
                    process_id=os.getpid(),
                    http_status=200,
                    route="/v1/predict",
                )
            )
            counts[index] += 1

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    writer.close()
    engine.dispose()
    return sum(counts) / elapsed


def wrk_rate(
    env: dict[str, str], key: str, seconds: int, *, null_audit: bool, workers: int, threads: int
) -> float:
    """Requests per second of the predict path under wrk, on gunicorn gthread workers."""
    server_env = {**env, "PREDGATE_BENCH_NULL_AUDIT": "1" if null_audit else "0"}
    log = Path(env["PREDGATE_DATA_DIR"]) / "gunicorn.log"
    app = "bench.gunicorn_app:make_app()"
    with gunicorn_server(app, server_env, log, workers=workers, threads=threads) as server:
        url = f"{server.base_url}/v1/predict"
        # The first request waits for a worker to boot; then warm every worker's model.
        headers = {"Authorization": f"Bearer {key}"}
        requests.post(url, json=ROW, headers=headers, timeout=60).raise_for_status()
        run_wrk(url, f"Bearer {key}", 2)
        return run_wrk(url, f"Bearer {key}", seconds).requests_per_second


def measure(
    args: argparse.Namespace, env: dict[str, str], keys: dict[str, str]
) -> dict[str, object]:
    """Append rates, then audited and null-sink wrk rounds, on the demo environment."""
    data_dir = Path(env["PREDGATE_DATA_DIR"])
    database_url = args.database_url or f"sqlite:///{data_dir / 'predgate.db'}"

    results: dict[str, object] = {
        "database": database_url.split(":")[0],
        "gunicorn": f"{args.workers} workers x {args.threads} threads",
    }
    results["append_records_per_s"] = {
        f"{threads}_callers": round(append_rate(data_dir, database_url, 5, threads))
        for threads in (1, 8, 32)
    }
    audited, baseline = [], []
    for _ in range(args.rounds):
        shape = {"workers": args.workers, "threads": args.threads}
        audited.append(wrk_rate(env, keys["acme"], args.seconds, null_audit=False, **shape))
        baseline.append(wrk_rate(env, keys["acme"], args.seconds, null_audit=True, **shape))
    results["predict_rps_audited"] = audited
    results["predict_rps_null_sink"] = baseline
    results["audited_share_of_baseline"] = round(
        statistics.median(audited) / statistics.median(baseline), 3
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    if not Path(WRK).exists():
        raise SystemExit("wrk is needed: apt-get install wrk")
    given = {"database_url": args.database_url, "redis_url": args.redis_url}
    # Rate limits are raised out of the way by demo_environment.
    with demo_environment(**{k: v for k, v in given.items() if v}) as (env, keys):
        results = measure(args, env, keys)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
