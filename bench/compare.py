"""predgate against bare baselines, all in one run with interleaved rounds (`make bench`):

    .venv/bin/python -m bench.compare [--rounds 3] [--seconds 10] [--quick]

Variants, each measured with a random forest and a linear model (the same two fitted models):
  floor                  bare Flask, constant JSON          gunicorn -w 2 gthread x 8
  floor on granian       the same app                       granian, 2 workers x 8 threads
  flask + sklearn        bare Flask, estimator.predict      gunicorn -w 2 gthread x 8
  flask + onnxruntime    bare Flask, skl2onnx + ORT         gunicorn -w 2 gthread x 8
  predgate embedded      SQLite, API key                    predgate serve --workers 1
  ... on gunicorn        the same app and data              gunicorn -w 1 gthread x 8
  predgate scale-out     PostgreSQL + Redis, API key / JWT  predgate serve --workers 2

Each round starts every server afresh, checks one request, warms it (2 s of wrk) and loads it
with `wrk -t2 -c16 --latency` per model, sampling the CPU of the server's processes, of
PostgreSQL and of Redis around the run. Writes bench/results/results.{md,json,png}. Needs
wrk and the local PostgreSQL and Redis; everything it creates is removed at the end, also on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import redis

from bench import report
from bench.apps import FEATURES, MODEL_DIR_VARIABLE
from bench.cpu import PostgresCpu, common_delta, machine_seconds, redis_seconds, tree_seconds
from bench.load import CONNECTIONS, THREADS, WRK, run_wrk
from bench.provision import (
    Credentials,
    Provisioned,
    delete_redis_keys,
    monitor_url,
    predgate_env,
    provision_predgate,
    scratch_database,
    train_models,
)
from bench.servers import (
    Server,
    granian_server,
    gunicorn_server,
    predgate_server,
    unwind_on_sigterm,
)

ROW = {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}
SETUP = [
    "floor: bare Flask answering a constant JSON; `gunicorn -w 2 -k gthread --threads 8`",
    "flask + sklearn: bare Flask, JSON row -> `estimator.predict` on a 1-row array; same gunicorn",
    "flask + onnxruntime: bare Flask, the skl2onnx model in an InferenceSession (one thread, "
    "opened in each worker); same gunicorn",
    "floor on granian: the floor's app under granian (`--workers 2 --blocking-threads 8`), the "
    "server `predgate serve` runs",
    "predgate embedded: `predgate serve --workers 1 --threads 8` (granian; each request read "
    "whole on the worker's event loop before the app runs it), SQLite, API key",
    "predgate embedded on gunicorn: the same app and data under `gunicorn -w 1 -k gthread "
    "--threads 8`",
    "predgate scale-out: `predgate serve --workers 2 --threads 8 --behind-proxy` (as compose runs "
    "it behind nginx; nginx itself not measured), PostgreSQL + Redis, API key or OAuth2 access "
    "token (client credentials, fresh per measurement)",
    "models: rf = RandomForestRegressor(n_estimators=100, max_depth=10), linear = Ridge; fitted "
    "on generated house prices (area, rooms, bathrooms, location); predgate's rate limit "
    "100000000/minute (checked, never reached)",
]
WARM_SECONDS = 2
RESULTS = Path(__file__).with_name("results")
STARTED = time.monotonic()


@dataclass(frozen=True)
class Target:
    """One (variant, model) measurement on a server: its path and a fresh credential."""

    variant: str
    model: str
    path: str
    authorization: Callable[[str], str]  # base URL -> Authorization header ("" for none)


@dataclass(frozen=True)
class Plan:
    """A server started afresh each round, and the targets measured on it."""

    name: str
    start: Callable[[Path], AbstractContextManager[Server]]  # log file -> running server
    targets: list[Target]
    backends: bool  # PostgreSQL + Redis CPU are part of this server's cost


@dataclass(frozen=True)
class Backends:
    """The shared services of the scale-out variants, sampled around each run."""

    postgres: PostgresCpu
    redis: redis.Redis


def main() -> None:
    """Set up, run every round, clean up; then write and print the results."""
    args = _arguments()
    unwind_on_sigterm()
    context: dict[str, Any] = {
        "command": " ".join(["python -m bench.compare", *sys.argv[1:]]),
        "setup": SETUP,
    }
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="predgate-bench-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        plans, backends, expected = _prepare(args, workdir, cleanup, context)
        if args.only:
            wanted = {name.strip() for name in args.only.split(",")}
            plans = [plan for plan in plans if plan.name in wanted]
        measurements, seen = _run_rounds(plans, backends, args, workdir / "logs")
        context["server_log_warnings"] = _count_warnings(workdir / "logs")
    context["predictions"] = _check_predictions(seen.predictions, expected)
    context["warm_up_failed_responses"] = seen.warm_up_failures
    context["duration_s"] = time.monotonic() - STARTED
    _write_results(args, measurements, context)


def _prepare(
    args: argparse.Namespace, workdir: Path, cleanup: ExitStack, context: dict[str, Any]
) -> tuple[list[Plan], Backends, dict[str, float]]:
    """Train the models, set up both predgate deployments, and plan the servers.

    Returns the plans, the backends to sample and scikit-learn's prediction per model.
    """
    if not Path(WRK).exists():
        raise SystemExit("wrk is needed: apt-get install wrk")
    (workdir / "logs").mkdir()
    redis_client = redis.Redis.from_url(args.redis_url)
    cleanup.callback(redis_client.close)
    redis_client.ping()

    model_dir = workdir / "models"
    model_dir.mkdir()
    models = train_models(model_dir)
    row = np.array([[ROW[name] for name in FEATURES]], dtype=np.float64)
    expected = {name: float(joblib.load(path).predict(row)[0]) for name, path in models.items()}
    _log(f"trained {', '.join(models)} in {model_dir}")

    run_id = secrets.token_hex(4)
    prefix = f"predgate-bench-{run_id}"
    cleanup.callback(_delete_keys, redis_client, prefix)
    database = f"predgate_bench_{run_id}"
    embedded_env = predgate_env(workdir / "embedded")
    scale_env = predgate_env(
        workdir / "scale-out",
        database_url=cleanup.enter_context(scratch_database(args.database_server, database)),
        redis_url=args.redis_url,
        ratelimit_key_prefix=prefix,
    )
    (embedded, registered), (scale_out, _) = _provision_both(embedded_env, scale_env, models)
    _log(f"provisioned predgate: SQLite under {workdir}, PostgreSQL database {database}")
    context["predgate_models"] = {
        name: {k: v for k, v in entry.items() if k in ("name", "version", "runtime", "onnx_note")}
        for name, entry in registered.items()
    }

    baseline_env = {**os.environ, MODEL_DIR_VARIABLE: str(model_dir)}
    paths = {model: f"/v1/predict/{model}" for model in models}

    def baseline(name: str, variant: str, app: str, paths: dict[str, str]) -> Plan:
        targets = [Target(variant, model, path, _no_auth) for model, path in paths.items()]
        return Plan(name, lambda log: gunicorn_server(app, baseline_env, log), targets, False)

    plans = [
        # The floor has no model: one target, shown with model "-".
        baseline("floor", report.FLOOR, "bench.apps:floor_app()", {"-": "/v1/predict"}),
        # The same floor under the server `predgate serve` runs: what the server alone is worth.
        Plan(
            "floor-granian",
            lambda log: granian_server("bench.apps:floor_app", baseline_env, log),
            [Target("floor on granian", "-", "/v1/predict", _no_auth)],
            backends=False,
        ),
        baseline("sklearn", "flask + sklearn", "bench.apps:sklearn_app()", paths),
        baseline("onnx", "flask + onnxruntime", "bench.apps:onnx_app()", paths),
        Plan(
            "embedded",
            lambda log: predgate_server(embedded_env, log, workers=1),
            [_api_key_target("predgate embedded, API key", embedded[m]) for m in models],
            backends=False,
        ),
        # predgate's own app under the floor's server, to show what serving with granian buys.
        Plan(
            "embedded-gunicorn",
            lambda log: gunicorn_server(
                "gateway.server:worker_app()", embedded_env, log, workers=1, threads=8
            ),
            [
                _api_key_target("predgate embedded on gunicorn, API key", embedded[m])
                for m in models
            ],
            backends=False,
        ),
        Plan(
            "scale-out",
            # As docker-compose.yml runs it: behind nginx, which reads whole requests first.
            lambda log: predgate_server(scale_env, log, workers=2, behind_proxy=True),
            [_api_key_target("predgate scale-out, API key", scale_out[m]) for m in models]
            + [_jwt_target("predgate scale-out, JWT", scale_out[m]) for m in models],
            backends=True,
        ),
    ]
    backends = Backends(PostgresCpu(monitor_url(args.database_server), database), redis_client)
    return plans, backends, expected


def _provision_both(
    embedded_env: dict[str, str], scale_env: dict[str, str], models: dict[str, Path]
) -> tuple[Provisioned, Provisioned]:
    """Both deployments at once: each predgate command spends seconds importing."""
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        embedded = pool.submit(provision_predgate, embedded_env, models, False, cancel)
        scale_out = pool.submit(provision_predgate, scale_env, models, True, cancel)
        try:
            return embedded.result(), scale_out.result()
        except BaseException:
            cancel.set()  # the other deployment stops after its current command
            raise


def _api_key_target(variant: str, credentials: Credentials) -> Target:
    return Target(
        variant, credentials.model, "/v1/predict", lambda _: f"Bearer {credentials.api_key}"
    )


def _jwt_target(variant: str, credentials: Credentials) -> Target:
    return Target(
        variant, credentials.model, "/v1/predict", lambda base: _access_token(base, credentials)
    )


def _no_auth(_: str) -> str:
    return ""


def _access_token(base_url: str, credentials: Credentials) -> str:
    """A fresh OAuth2 client-credentials token, as an Authorization header."""
    basic = base64.b64encode(f"{credentials.client_id}:{credentials.client_secret}".encode())
    request = urllib.request.Request(
        f"{base_url}/oauth/token",
        data=b"grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic.decode()}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return f"Bearer {json.load(response)['access_token']}"


@dataclass
class Observations:
    """What the rounds saw besides the measurements, per target ("variant [model]")."""

    predictions: dict[tuple[str, str], float] = field(default_factory=dict)  # the last one
    warm_up_failures: dict[str, int] = field(default_factory=dict)  # summed over rounds


def _run_rounds(
    plans: list[Plan], backends: Backends, args: argparse.Namespace, log_dir: Path
) -> tuple[list[report.Measurement], Observations]:
    """Each round starts every server in turn and measures all of its targets."""
    measurements: list[report.Measurement] = []
    seen = Observations()
    for number in range(1, args.rounds + 1):
        for plan in plans:
            with plan.start(log_dir / f"{plan.name}.log") as server:
                for target in plan.targets:
                    name = f"{target.variant} [{target.model}]"
                    url = server.base_url + target.path
                    sampled = backends if plan.backends else None
                    try:
                        authorization = target.authorization(server.base_url)
                        seen.predictions[target.variant, target.model] = _predict_once(
                            url, authorization
                        )
                        # A fresh server's start-up hiccups belong to the warm-up: counted
                        # and reported, not fatal (the measured run allows no failure).
                        warm = run_wrk(url, authorization, WARM_SECONDS, strict=False)
                        measured = measure_load(
                            server, target, authorization, args, number, sampled
                        )
                    except Exception:
                        _log(f"{name} failed; its server's log ends:\n{server.log_tail()}")
                        raise
                    failed = warm.failed_responses
                    seen.warm_up_failures[name] = seen.warm_up_failures.get(name, 0) + failed
                    measurements.append(measured)
                    _log(
                        f"round {number}/{args.rounds} {name}: "
                        f"{measured.requests_per_second:.0f} req/s, p50 {measured.p50_ms:.2f} ms"
                        + (f" (warm-up: {failed} failed responses)" if failed else "")
                    )
    return measurements, seen


def measure_load(
    server: Server,
    target: Target,
    authorization: str,
    args: argparse.Namespace,
    number: int,
    backends: Backends | None,
) -> report.Measurement:
    """One wrk run with CPU sampled right before and right after it."""
    pids = server.pids()
    window_started = time.monotonic()
    machine_before = machine_seconds()
    gateway_before = tree_seconds(pids)
    postgres_before = backends.postgres.sample() if backends else {}
    redis_before = redis_seconds(backends.redis) if backends else 0.0
    load = run_wrk(server.base_url + target.path, authorization, args.seconds)
    redis_after = redis_seconds(backends.redis) if backends else 0.0
    postgres_after = backends.postgres.sample() if backends else {}
    gateway_after = tree_seconds(pids)
    machine_after = machine_seconds()
    window = time.monotonic() - window_started
    # A restarted worker would take its CPU time with it: the run would not count.
    if server.pids() != pids or gateway_after.keys() != gateway_before.keys():
        raise RuntimeError(f"{target.variant}: server processes changed during the run")
    return report.Measurement(
        round=number,
        variant=target.variant,
        model=target.model,
        requests=load.requests,
        seconds=load.seconds,
        requests_per_second=load.requests_per_second,
        p50_ms=load.p50_ms,
        p99_ms=load.p99_ms,
        wrk_cpu_seconds=load.wrk_cpu_seconds,
        gateway_cpu_seconds=common_delta(gateway_before, gateway_after),
        postgres_cpu_seconds=common_delta(postgres_before, postgres_after) if backends else None,
        redis_cpu_seconds=redis_after - redis_before if backends else None,
        postgres_backends=backends.postgres.backends() if backends else None,
        machine_cpu_seconds=machine_after - machine_before,
        window_seconds=window,
    )


def _predict_once(url: str, authorization: str) -> float:
    """One request before the load: it must succeed, and its prediction identifies the model."""
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=json.dumps(ROW).encode(), headers=headers)
    # Generous: the first request of a fresh worker waits for it to boot and load the model.
    with urllib.request.urlopen(request, timeout=120) as response:
        return float(json.load(response)["predictions"][0])


def _check_predictions(
    predictions: dict[tuple[str, str], float], expected: dict[str, float]
) -> dict[str, Any]:
    """Every variant's answer for the benchmark row next to scikit-learn's in this process."""
    checked: dict[str, Any] = {"sklearn in the driver": expected}
    for (variant, model), value in predictions.items():
        if model not in expected:
            continue  # the floor answers a constant
        # ONNX computes in float32: a small relative difference is expected.
        agrees = abs(value - expected[model]) <= 1e-3 + 1e-4 * abs(expected[model])
        checked[f"{variant} [{model}]"] = {"prediction": value, "agrees": agrees}
        if not agrees:
            _log(f"WARNING: {variant} [{model}] predicted {value}, sklearn {expected[model]}")
    return checked


def _count_warnings(log_dir: Path) -> dict[str, int]:
    """Warnings in each server's log over all rounds (Python's and predgate's WARNING lines)."""
    pattern = re.compile(r"Warning\b|WARNING")
    return {
        log.stem: len(pattern.findall(log.read_text(errors="replace")))
        for log in sorted(log_dir.glob("*.log"))
    }


def _write_results(
    args: argparse.Namespace, measurements: list[report.Measurement], context: dict[str, Any]
) -> None:
    rows = report.summarise(measurements)
    nproc = os.cpu_count() or 1
    context.update(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=_git_commit(),
        nproc=nproc,
        cpu_model=_cpu_model(),
        python=platform.python_version(),
        rounds=args.rounds,
        seconds=args.seconds,
        wrk=f"wrk -t{THREADS} -c{CONNECTIONS} -d{args.seconds}s --latency -s bench/predict.lua",
    )
    context["notes"] = report.notes(rows, context)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    page = report.markdown(rows, context)
    (output / "results.md").write_text(page)
    report.write_json(output / "results.json", measurements, context)
    report.write_chart(output / "results.png", rows)
    print(page)
    _log(f"wrote {output}/results.md, results.json, results.png")


def _delete_keys(client: redis.Redis, prefix: str) -> None:
    _log(f"deleted {delete_redis_keys(client, prefix)} Redis keys with prefix {prefix}")


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=RESULTS.parent
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="default 3")
    parser.add_argument("--seconds", type=int, default=10, help="per measurement, default 10")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 3 s")
    parser.add_argument(
        "--database-server",
        default="postgresql+psycopg://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database (a scratch one is created and dropped)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated servers to run (floor, floor-granian, sklearn, onnx, embedded, "
        "embedded-gunicorn, scale-out); "
        "the report's ratios need the floor",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    return args


def _log(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:4.0f}s] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
