"""Compliance API: filtered pages with a cursor, streamed CSV and NDJSON exports (the NDJSON
verifies offline), verification, checkpoints and the public key; every read audited."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.events import RECORD_FIELDS
from audit.export import verify_export
from audit.signing import key_id_of, load_public_key
from config import Settings
from gateway.runtime import get_runtime
from tests.conftest import HOUSE, World, bearer
from tests.gateway.admin_support import assert_client_record, record_for
from tests.oauth_support import token_headers

RANGE = {"since": "2000-01-01", "until": "2100-01-01"}


@pytest.fixture
def auditor(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="compliance")


@pytest.fixture
def traffic(client: FlaskClient, world: World) -> World:
    """A few audited requests of both tenants."""
    for key in (world.acme_key, world.globex_key, world.acme_key):
        client.get("/v1/model", headers=bearer(key))
    client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    return world


def test_records_filtered_and_audited(
    client: FlaskClient, auditor, session: Session, traffic: World
) -> None:
    response = client.get(
        "/audit/v1/records?tenant=acme&event_type=model.read&limit=10", headers=auditor
    )
    assert response.status_code == 200
    found = response.json["records"]
    assert len(found) == 2
    assert {r["principal_id"] for r in found} == {traffic.acme_key_id}
    assert set(found[0]) == {*RECORD_FIELDS, "tenant"}
    assert {r["tenant"] for r in found} == {"acme"}
    assert response.json["next_cursor"] is None
    record = record_for(session, response)
    assert_client_record(record, "audit.read", 200)
    assert record["route"] == "/audit/v1/records"
    assert record["details"]["filters"] == {"tenant": "acme", "event_type": "model.read"}
    assert record["details"]["returned"] == 2
    acme = session.execute(text("SELECT id FROM tenants WHERE name = 'acme'")).scalar_one()
    assert record["tenant_id"] == acme


def test_cursor_walks_every_record_once(client: FlaskClient, auditor, session, traffic) -> None:
    seen: list[int] = []
    cursor: int | None = None
    for _ in range(50):
        query = "limit=3&order=oldest" + (f"&cursor={cursor}" if cursor is not None else "")
        page = client.get(f"/audit/v1/records?{query}", headers=auditor).json
        assert len(page["records"]) <= 3
        seen += [r["seq"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert cursor is None
    assert seen == list(range(1, len(seen) + 1))  # in order, no gap, no duplicate
    session.rollback()
    total = session.execute(text("SELECT max(seq) FROM audit_records")).scalar_one()
    assert total == len(seen) + 1  # the last page's own audit.read record came after it


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("cursor=-1", "cursor"),
        ("event_type=bogus", "event_type"),
        ("outcome=maybe", "outcome"),
        ("status=abc", "status"),
        ("since=yesterday", "since"),
        ("tenant_id=1", "tenant_id"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_bad_queries(client: FlaskClient, auditor, session, world, query, field) -> None:
    response = client.get(f"/audit/v1/records?{query}", headers=auditor)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert field in [e["field"] for e in response.json["errors"]]
    assert "bogus" not in response.get_data(as_text=True)
    record = record_for(session, response)
    assert (record["outcome"], record["reason_code"]) == ("failure", "validation_error")


def test_unknown_tenant_is_404(client: FlaskClient, auditor, world) -> None:
    response = client.get("/audit/v1/records?tenant=nobody", headers=auditor)
    assert response.status_code == 404
    assert response.json["code"] == "tenant_not_found"


def test_csv_export_streams(client: FlaskClient, auditor, session: Session, traffic) -> None:
    response = client.get(
        "/audit/v1/records", query_string=RANGE, headers={**auditor, "Accept": "text/csv"}
    )
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == list(RECORD_FIELDS)
    exported = {row[RECORD_FIELDS.index("request_id")]: row for row in rows[1:]}
    own = exported[response.headers["X-Request-ID"]]  # committed before the stream started
    assert own[RECORD_FIELDS.index("event_type")] == "audit.export"
    record = record_for(session, response)
    assert_client_record(record, "audit.export", 200)
    assert record["details"]["format"] == "csv"
    assert record["response_digest"] is None


def test_ndjson_export_verifies_offline(
    app: Flask, client: FlaskClient, auditor, traffic, tmp_path: Path
) -> None:
    response = client.get(
        "/audit/v1/records",
        query_string=RANGE,
        headers={**auditor, "Accept": "application/x-ndjson"},
    )
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    path = tmp_path / "export.jsonl"
    path.write_bytes(response.get_data())
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries[0]["type"] == "header"
    assert any(e.get("request_id") == response.headers["X-Request-ID"] for e in entries)
    report = verify_export(path, get_runtime(app).audit_config.public_keys())
    assert report.ok, report.to_dict()
    assert report.records_checked == sum(1 for e in entries if e["type"] == "record") > 5


@pytest.mark.parametrize(
    "query",
    [{}, {"since": "2000-01-01"}, {**RANGE, "tenant": "acme"}, {**RANGE, "cursor": "3"}],
)
def test_export_takes_exactly_a_time_range(client, auditor, session, world, query) -> None:
    response = client.get(
        "/audit/v1/records", query_string=query, headers={**auditor, "Accept": "text/csv"}
    )
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    record = record_for(session, response)
    assert (record["event_type"], record["outcome"]) == ("audit.export", "failure")


def test_verify_checkpoints_and_public_key(
    app: Flask, client: FlaskClient, auditor, session, traffic
) -> None:
    verified = client.get("/audit/v1/verify", headers=auditor)
    assert verified.status_code == 200
    assert verified.json["ok"] is True
    assert verified.json["records_checked"] >= 5
    record = record_for(session, verified)
    assert_client_record(record, "audit.verify", 200)
    assert record["details"]["ok"] is True

    checkpoints = client.get("/audit/v1/checkpoints", headers=auditor)
    assert checkpoints.status_code == 200
    assert isinstance(checkpoints.json["checkpoints"], list)
    assert record_for(session, checkpoints)["event_type"] == "audit.read"

    published = client.get("/audit/v1/public-key", headers=auditor)
    key = load_public_key(published.json["public_key"])
    assert key_id_of(key) == published.json["key_id"]
    assert published.json["key_id"] == get_runtime(app).audit_config.signer.key_id
    assert record_for(session, published)["details"] == {"resource": "public_key"}


def _audit_rules(app: Flask) -> list[Any]:
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/audit/")]


def test_no_route_changes_the_audit_log(app: Flask, client: FlaskClient, auditor, world) -> None:
    admin = token_headers(client, *_session_settings(app), role="admin")
    for rule in _audit_rules(app):
        assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule
        for method in ("DELETE", "PUT", "PATCH", "POST"):
            for headers in (auditor, admin):
                response = client.open(rule.rule, method=method, headers=headers)
                assert response.status_code == 405, (rule.rule, method)
    changing = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "audit" in rule.rule and rule.methods - {"GET", "HEAD", "OPTIONS"}
    ]
    assert changing == []


def _session_settings(app: Flask) -> tuple[Session, Settings]:
    runtime = get_runtime(app)
    return runtime.sessions(), runtime.settings


def test_abandoned_stream_releases_its_session(
    app: Flask, client: FlaskClient, auditor, traffic
) -> None:
    pool = get_runtime(app).engine.pool
    client.get("/healthz")  # the writer's connection is open from here on
    baseline = pool.checkedout()
    response = client.get(
        "/audit/v1/records",
        query_string=RANGE,
        headers={**auditor, "Accept": "text/csv"},
        buffered=False,
    )
    chunks = iter(response.response)
    assert next(chunks).startswith(b"seq,")
    assert next(chunks)
    assert pool.checkedout() == baseline + 1  # the stream's own session
    response.close()  # the client goes away mid-stream
    assert pool.checkedout() == baseline
