"""What verifying the caller costs per request: an API key (HMAC-SHA256 and one indexed query)
next to an OAuth2 access token (ES256 signature, denylist and client lookups), in one run.

1. GET /v1/model through the Flask test client with each credential, interleaved in rounds so
   machine noise hits both alike (null audit sink, rate limits off: only authentication differs);
2. the verification alone: ``resolve_caller`` in a fresh request context, per credential.

    .venv/bin/python -m bench.auth_cost [--count 2000] [--database-url ...]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask import Flask

from audit.writer import NullAuditSink
from auth.api_keys import issue_key
from auth.clients import create_client
from auth.tenants import assign_model, create_tenant
from config import Settings
from db.engine import create_db_engine, make_session_factory
from db.migrations import upgrade
from gateway import create_app
from gateway.caller import resolve_caller
from gateway.runtime import get_runtime
from models.artifacts import ArtifactStore
from models.registry import register_model
from tests import fixtures_models


def prepare(settings: Settings) -> tuple[str, str]:
    """A migrated database with one tenant, model, API key and OAuth client: (key, client)."""
    import joblib

    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    model_path = settings.data_dir / "house.joblib"
    joblib.dump(fixtures_models.build_estimators()["house-price"], model_path)
    with make_session_factory(engine)() as session:
        register_model(
            session,
            ArtifactStore(settings.artifacts_dir),
            name="house-price",
            artifact_path=model_path,
            registered_by="bench",
        )
        create_tenant(session, name="acme")
        assign_model(session, "acme", model_name="house-price", version=None)
        key = issue_key(session, settings.secret_key, tenant_name="acme", created_by="bench")
        client = create_client(
            session, settings.secret_key, role="partner", tenant_name="acme", created_by="bench"
        )
        session.commit()
    engine.dispose()
    return key.api_key, f"{client.client.client_id}:{client.client_secret}"


def access_token(app: Flask, client_credentials: str) -> str:
    client_id, secret = client_credentials.split(":", 1)
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.json["access_token"])  # type: ignore[index]


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 4),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 4),
        "mean_ms": round(statistics.fmean(ordered), 4),
    }


def measure(calls: dict[str, Callable[[], None]], count: int, rounds: int = 10) -> dict[str, Any]:
    """Interleaved rounds of each call; p50/p95/mean per name and the JWT/API key ratio."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(100):
            call()
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(count // rounds):
                started = time.perf_counter()
                call()
                samples[name].append((time.perf_counter() - started) * 1000)
    results: dict[str, Any] = {name: summary(values) for name, values in samples.items()}
    results["jwt_over_api_key_p50"] = round(
        results["jwt"]["p50_ms"] / results["api_key"]["p50_ms"], 2
    )
    results["jwt_minus_api_key_p50_ms"] = round(
        results["jwt"]["p50_ms"] - results["api_key"]["p50_ms"], 4
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="predgate-bench-auth-"))
    settings = Settings(
        data_dir=data_dir,
        database_url=args.database_url or f"sqlite:///{data_dir / 'predgate.db'}",
        secret_key=secrets.token_hex(32).encode(),
        log_level="WARNING",
        rate_limits_enabled=False,
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    api_key, client_credentials = prepare(settings)
    app = create_app(replace(settings), audit_sink=NullAuditSink())
    token = access_token(app, client_credentials)
    headers = {"api_key": f"Bearer {api_key}", "jwt": f"Bearer {token}"}
    client = app.test_client()

    def request_call(authorization: str) -> Callable[[], None]:
        def call() -> None:
            response = client.get("/v1/model", headers={"Authorization": authorization})
            assert response.status_code == 200, response.get_data(as_text=True)

        return call

    def verify_call(authorization: str) -> Callable[[], None]:
        def call() -> None:
            with app.test_request_context("/v1/model", headers={"Authorization": authorization}):
                resolve_caller()

        return call

    results = {
        "count": args.count,
        "database": settings.database_url.split(":", 1)[0],
        "get_model_request": measure(
            {name: request_call(value) for name, value in headers.items()}, args.count
        ),
        "verification_only": measure(
            {name: verify_call(value) for name, value in headers.items()}, args.count
        ),
    }
    get_runtime(app).engine.dispose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
