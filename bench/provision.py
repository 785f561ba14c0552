"""What the benchmark serves: the two models, predgate data directories, a scratch database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import psycopg
import redis
from psycopg import sql
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge

from bench.apps import FEATURES, ONNX_INPUT
from models.training import make_house_price_data

PREDGATE = str(Path(sys.executable).with_name("predgate"))
# High enough that no benchmark request is ever refused: the limit check still runs.
RATE_LIMIT = "100000000/minute"


@dataclass(frozen=True)
class Credentials:
    """How the benchmark tenant serving `model` authenticates."""

    model: str
    tenant: str
    api_key: str
    client_id: str | None = None
    client_secret: str | None = None


# What provision_predgate returns: credentials and `models register --json` output per model.
Provisioned = tuple[dict[str, Credentials], dict[str, Any]]


def train_models(directory: Path) -> dict[str, Path]:
    """Fit the two models on generated house prices; save <name>.joblib and <name>.onnx."""
    data = make_house_price_data()
    # Fitted on a plain array (names are given to predgate at registration) so the bare
    # scikit-learn baseline can predict a numpy row without a feature-name warning.
    rows = data[list(FEATURES)].to_numpy(dtype=np.float64)
    prices = data["price"].to_numpy()
    estimators = {
        "rf": RandomForestRegressor(n_estimators=100, max_depth=10, random_state=0),
        "linear": Ridge(alpha=1.0),
    }
    paths = {}
    for name, estimator in estimators.items():
        estimator.fit(rows, prices)
        paths[name] = directory / f"{name}.joblib"
        joblib.dump(estimator, paths[name])
        onnx = to_onnx(
            estimator, initial_types=[(ONNX_INPUT, FloatTensorType([None, len(FEATURES)]))]
        )
        (directory / f"{name}.onnx").write_bytes(onnx.SerializeToString())
    return paths


def predgate_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of predgate commands and servers for one data directory."""
    # Inherited PREDGATE_* variables would change what is measured; only ours apply.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREDGATE_")}
    env.update(
        PREDGATE_DATA_DIR=str(data_dir),
        PREDGATE_LOG_LEVEL="WARNING",
        PREDGATE_DEFAULT_RATE_LIMIT=RATE_LIMIT,
    )
    env.update({f"PREDGATE_{key.upper()}": value for key, value in settings.items()})
    return env


@contextmanager
def demo_environment(**settings: str) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """A fresh data directory with `predgate demo` applied, removed afterwards:
    (environment, {tenant: api key})."""
    data_dir = Path(tempfile.mkdtemp(prefix="predgate-bench-"))
    try:
        env = predgate_env(data_dir, **settings)
        output = predgate(env, "demo", "--json")
        yield env, {entry["tenant"]: entry["api_key"] for entry in json.loads(output)["tenants"]}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def predgate(env: Mapping[str, str], *args: str) -> str:
    """Run one `predgate` command; its stdout, or RuntimeError with its stderr."""
    done = subprocess.run(
        [PREDGATE, *args], env=dict(env), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`predgate {' '.join(args)}` exited with {done.returncode}:\n"
            f"{done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


def provision_predgate(
    env: Mapping[str, str],
    models: Mapping[str, Path],
    oauth_clients: bool,
    cancel: threading.Event | None = None,
) -> Provisioned:
    """Migrate, register each model, one tenant per model with a key (and a partner client).

    Returns the credentials per model and what `models register --json` said per model;
    stops before its next command once `cancel` is set.
    """

    def run(*args: str) -> str:
        if cancel is not None and cancel.is_set():
            raise RuntimeError("provisioning cancelled")
        return predgate(env, *args)

    run("db", "upgrade")
    credentials, registered = {}, {}
    for name, path in models.items():
        model = tenant = f"bench-{name}"
        features = ",".join(FEATURES)
        registered[name] = json.loads(
            run("models", "register", model, str(path), "--features", features, "--json")
        )
        run("tenants", "create", tenant)
        run("tenants", "assign", tenant, model)
        key = json.loads(run("keys", "issue", "--tenant", tenant, "--json"))
        client: dict[str, Any] = {}
        if oauth_clients:
            client = json.loads(
                run("clients", "create", "--role", "partner", "--tenant", tenant, "--json")
            )
        credentials[name] = Credentials(
            model=name,
            tenant=tenant,
            api_key=key["api_key"],
            client_id=client.get("client_id"),
            client_secret=client.get("client_secret"),
        )
    return credentials, registered


@contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """CREATE DATABASE name on the server, yield its URL, DROP it (even with open sessions)."""
    identifier = sql.Identifier(name)
    with psycopg.connect(_libpq(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        yield f"{server_url}/{name}"
    finally:
        with psycopg.connect(_libpq(server_url, "postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))


def monitor_url(server_url: str) -> str:
    """A libpq URL of the maintenance database, for queries the benchmark itself makes."""
    return _libpq(server_url, "postgres")


def _libpq(server_url: str, database: str) -> str:
    # SQLAlchemy's dialect prefix is not libpq's.
    return f"{server_url.replace('postgresql+psycopg://', 'postgresql://')}/{database}"


def delete_redis_keys(client: redis.Redis, prefix: str) -> int:
    """Delete every key that holds the run's unique prefix; how many there were."""
    names = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    if names:
        client.delete(*names)
    return len(names)
