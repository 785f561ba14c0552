"""Every HTTP request yields exactly one complete audit record, committed before the answer."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.events import RECORD_FIELDS
from audit.query import AuditFilter, query_records
from audit.writer import AuditUnavailable
from gateway.runtime import get_runtime
from tests.conftest import HOUSE, World, bearer

ALWAYS_SET = (
    "seq",
    "event_id",
    "ts",
    "duration_ms",
    "request_id",
    "event_type",
    "outcome",
    "http_status",
    "http_method",
    "instance_id",
    "process_id",
    "prev_hash",
    "hash",
)


def record_for(session: Session, response) -> dict[str, Any]:
    """The one record carrying the response's X-Request-ID."""
    session.rollback()  # see what the app committed
    found = query_records(session, AuditFilter(request_id=response.headers["X-Request-ID"]))
    assert len(found) == 1, found
    return found[0]


def assert_complete(record: dict[str, Any]) -> None:
    assert set(record) == set(RECORD_FIELDS)
    for name in ALWAYS_SET:
        assert record[name] is not None, name
    assert record["ts"].endswith("Z")
    assert len(record["ts"].split(".")[1]) == 7  # microseconds + Z


def test_prediction_record_has_every_field(client: FlaskClient, world: World, session) -> None:
    response = client.post(
        "/v1/predict", json=HOUSE, headers={**bearer(world.acme_key), "User-Agent": "pytest/1"}
    )
    record = record_for(session, response)
    assert_complete(record)
    assert record["event_type"] == "predict"
    assert record["outcome"] == "success"
    assert record["reason_code"] is None
    assert record["http_status"] == 200
    assert record["route"] == "/v1/predict"
    assert record["principal_type"] == "api_key"
    assert record["principal_id"] == world.acme_key_id
    assert record["auth_method"] == "api_key"
    assert record["source_ip"] == "127.0.0.1"
    assert record["user_agent"] == "pytest/1"
    assert record["model_name"] == "house-price"
    assert record["model_version"] == 1
    assert record["model_sha256"] == world.house_price.artifact_sha256
    assert record["rows"] == 1
    assert len(record["request_digest"]) == 64
    assert len(record["response_digest"]) == 64
    tenant = session.execute(text("SELECT id FROM tenants WHERE name = 'acme'")).scalar_one()
    assert record["tenant_id"] == tenant


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "event_type", "reason"),
    [
        ("POST", "/v1/predict", HOUSE, {}, 401, "authn.failure", "missing_credentials"),
        (
            "POST",
            "/v1/predict",
            HOUSE,
            {"X-API-Key": "nope"},
            401,
            "authn.failure",
            "malformed_credentials",
        ),
        ("GET", "/v1/nothing", None, {}, 404, "http.request", "not_found"),
        ("GET", "/v1/predict", None, {}, 405, "http.request", "method_not_allowed"),
        (
            "POST",
            "/v1/predict",
            {"instances": [HOUSE] * 3000},
            {},
            413,
            "predict",
            "payload_too_large",
        ),
        ("GET", "/openapi.json", None, {}, 200, "docs.read", None),
    ],
)
def test_each_outcome_is_audited_once(
    client: FlaskClient,
    world: World,
    session,
    method,
    path,
    body,
    headers,
    status,
    event_type,
    reason,
) -> None:
    response = client.open(path, method=method, json=body, headers=headers)
    assert response.status_code == status
    record = record_for(session, response)
    assert_complete(record)
    assert (record["event_type"], record["http_status"], record["reason_code"]) == (
        event_type,
        status,
        reason,
    )
    assert record["outcome"] == ("success" if status < 400 else "failure")
    if status == 404:
        assert record["route"] is None  # the raw URL is never recorded


def test_authenticated_failures_name_the_key_and_tenant(
    client: FlaskClient, world: World, session
) -> None:
    invalid = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key[:-2] + "xx"))
    record = record_for(session, invalid)
    assert (record["reason_code"], record["principal_id"], record["tenant_id"]) == (
        "invalid_key",
        world.acme_key_id,
        None,
    )
    validation = client.post("/v1/predict", json={"area": 1}, headers=bearer(world.acme_key))
    record = record_for(session, validation)
    assert (record["event_type"], record["outcome"], record["reason_code"]) == (
        "predict",
        "failure",
        "validation_error",
    )
    assert record["tenant_id"] is not None
    assert record["model_name"] is None  # refused before any model ran


def test_server_error_is_audited(client: FlaskClient, world: World, session, monkeypatch) -> None:
    import gateway.api.predictions as predictions

    monkeypatch.setattr(predictions, "predict_records", lambda *a, **k: 1 / 0)
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    record = record_for(session, response)
    assert (record["http_status"], record["outcome"], record["reason_code"]) == (
        500,
        "error",
        "internal_error",
    )


def test_no_audit_no_answer(client: FlaskClient, world: World, app, monkeypatch) -> None:
    from gateway.runtime import get_runtime

    def refuse(_event):
        raise AuditUnavailable("store down")

    monkeypatch.setattr(get_runtime(app).audit_sink, "commit", refuse)
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert response.status_code == 503
    assert response.get_json()["code"] == "audit_unavailable"
    assert "predictions" not in response.get_data(as_text=True)


def test_store_failure_answers_503_and_counts(settings, world: World, tmp_path, make_app) -> None:
    from audit.recorder import load_audit_config
    from audit.writer import GroupCommitWriter
    from db.engine import create_db_engine

    # The audit store is a database that cannot be written (its folder does not exist).
    unwritable = create_db_engine(f"sqlite:///{tmp_path / 'missing' / 'audit.db'}")
    config = load_audit_config(settings.data_dir, signing_key="", instance_id="test")
    writer = GroupCommitWriter(unwritable, config.signer, config.policy)
    client = make_app(settings, audit_sink=writer).test_client()
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert response.status_code == 503
    assert response.get_json()["code"] == "audit_unavailable"
    assert "predictions" not in response.get_data(as_text=True)
    assert writer.failures == 1
    writer.close()
    unwritable.dispose()


def test_probes_are_not_audited_unless_configured(
    settings, world: World, session, client: FlaskClient, make_app
) -> None:
    from dataclasses import replace

    response = client.get("/healthz")
    assert response.status_code == 200
    assert query_records(session, AuditFilter(request_id=response.headers["X-Request-ID"])) == []

    app = make_app(replace(settings, audit_health_checks=True))
    probed = app.test_client().get("/readyz")
    # Recorded without the probe waiting for it: liveness never depends on the database.
    get_runtime(app).audit_sink.close()
    session.rollback()
    record = record_for(session, probed)
    assert (record["event_type"], record["http_status"]) == ("health.check", probed.status_code)


def test_forwarded_for_is_trusted_only_from_configured_proxies(
    settings, world: World, session, client: FlaskClient, make_app
) -> None:
    from dataclasses import replace

    spoofed = client.get("/openapi.json", headers={"X-Forwarded-For": "203.0.113.9"})
    assert record_for(session, spoofed)["source_ip"] == "127.0.0.1"
    proxied_app = make_app(replace(settings, trusted_proxies=("127.0.0.0/8",)))
    proxied = proxied_app.test_client().get(
        "/openapi.json", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    )
    # One trusted hop (the default): the entry the proxy appended is the client.
    assert record_for(session, proxied)["source_ip"] == "203.0.113.9"
    two_hops = make_app(
        replace(settings, trusted_proxies=("127.0.0.0/8",), trusted_proxy_hops=2)
    ).test_client()
    chained = two_hops.get(
        "/openapi.json", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 127.0.0.2"}
    )
    assert record_for(session, chained)["source_ip"] == "203.0.113.9"


CANARY_FEATURE = 314159.265358


def test_canaries_never_reach_the_audit_log_or_logs(
    client: FlaskClient, world: World, session, caplog, tmp_path
) -> None:
    """A key's secret and feature values appear only as digests; the user agent only truncated
    and with control characters escaped."""
    caplog.set_level(logging.DEBUG)
    secret = world.acme_key[21:]
    agent_canary = "canary-agent-7f3e9b"
    user_agent = "probe/1.0 \x1b[31m" + "x" * 300 + agent_canary
    body = {**HOUSE, "area": CANARY_FEATURE}
    headers = {**bearer(world.acme_key), "User-Agent": user_agent}
    assert client.post("/v1/predict", json=body, headers=headers).status_code == 200
    client.post("/v1/predict", json={**body, "pool": CANARY_FEATURE}, headers=headers)
    client.post("/v1/predict", json=body, headers={"X-API-Key": world.acme_key[:-1] + "Q"})
    session.rollback()
    records = query_records(session, AuditFilter(limit=1000))
    dumped = json.dumps(records)
    for canary in (secret, str(CANARY_FEATURE), agent_canary, "\x1b"):
        assert canary not in dumped
        assert canary not in caplog.text
    assert any(
        r["user_agent"] and r["user_agent"].startswith("probe/1.0 \\x1b[31m") for r in records
    )


def test_suspended_tenant_is_audited_as_authz_denied(
    client: FlaskClient, world: World, session
) -> None:
    from auth.tenants import set_tenant_status

    set_tenant_status(session, "acme", status="suspended")
    session.commit()
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert response.status_code == 403
    record = record_for(session, response)
    assert_complete(record)
    assert (record["event_type"], record["outcome"], record["reason_code"]) == (
        "authz.denied",
        "failure",
        "tenant_suspended",
    )
    assert record["principal_id"] == world.acme_key_id
    assert record["tenant_id"] is not None


@pytest.mark.parametrize(
    ("method", "path", "status", "reason"),
    [
        ("POST", "/v1/predict", 413, "payload_too_large"),  # read by the route: refused
    ],
)
def test_chunked_body_over_the_limit_is_never_read_past_it(
    client: FlaskClient, world: World, session, method, path, status, reason
) -> None:
    import io

    big = json.dumps({"instances": [HOUSE] * 3000}).encode()
    response = client.open(
        path,
        method=method,
        input_stream=io.BytesIO(big),
        headers={**bearer(world.acme_key), "Content-Type": "application/json"},
        # No Content-Length: as gunicorn presents a chunked request.
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == status
    record = record_for(session, response)
    assert (record["http_status"], record["reason_code"], record["request_digest"]) == (
        status,
        reason,
        None,
    )
