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
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from audit.events import AuditEvent
from audit.recorder import load_audit_config
from audit.writer import GroupCommitWriter
from bench.harness import demo_environment, free_port
from db.engine import create_db_engine

HIGH_LIMIT = {"PREDGATE_DEFAULT_RATE_LIMIT": "100000000/minute"}


def append_rate(data_dir: Path, database_url: str, seconds: float, threads: int) -> float:
    """Records per second committed by `threads` concurrent callers through one writer."""
    engine = create_db_engine(database_url)
    config = load_audit_config(data_dir, signing_key="", instance_id="bench")
    writer = GroupCommitWriter(engine, config.signer, config.policy)
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def caller(index: int) -> None:
        while time.monotonic() < deadline:
            writer.record(
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
    port = free_port()
    server_env = {**env, "PREDGATE_BENCH_NULL_AUDIT": "1" if null_audit else "0"}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    server = subprocess.Popen(
        [
            gunicorn,
            "-w",
            str(workers),
            "-k",
            "gthread",
            "--threads",
            str(threads),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "bench.gunicorn_app:make_app()",
        ],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                requests.post(
                    f"{base}/v1/predict",
                    json={"area": 1, "rooms": 1, "bathrooms": 1, "location": 1},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                )
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        # Warm both workers (each loads the model once) before measuring.
        subprocess.run(
            ["wrk", "-t", "2", "-c", "8", "-d", "2s", "-s", "bench/predict.lua", base],
            env={**os.environ, "PREDGATE_BENCH_KEY": key},
            capture_output=True,
            check=True,
        )
        output = subprocess.run(
            ["wrk", "-t", "2", "-c", "16", "-d", f"{seconds}s", "-s", "bench/predict.lua", base],
            env={**os.environ, "PREDGATE_BENCH_KEY": key},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        if non_2xx:
            raise SystemExit(f"wrk saw {non_2xx.group(1)} failed responses:\n{output}")
        match = re.search(r"Requests/sec:\s+([\d.]+)", output)
        assert match, output
        return float(match.group(1))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    extra = dict(HIGH_LIMIT)
    if args.database_url:
        extra["PREDGATE_DATABASE_URL"] = args.database_url
    if args.redis_url:
        extra["PREDGATE_REDIS_URL"] = args.redis_url
    env, keys = demo_environment(extra)
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
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
