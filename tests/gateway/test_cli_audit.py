"""Administrative acts and reads of the log are audited; export, verify and prune from the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import text

from tests.conftest import HOUSE, bearer


def _records(predgate, *args: str) -> list[dict]:
    query = ("audit", "query", "--json", "--order", "oldest", "--limit", "1000", *args)
    return json.loads(predgate(*query).stdout)


def test_admin_acts_are_audited_with_actor_and_changes(predgate, model_files) -> None:
    predgate("tenants", "create", "acme")
    predgate("models", "register", "house-price", str(model_files["house-price"]))
    predgate("tenants", "assign", "acme", "house-price")
    issued = json.loads(predgate("keys", "issue", "--tenant", "acme", "--json").stdout)
    predgate("keys", "rotate", issued["key_id"], "--grace", "1h")
    predgate("keys", "revoke", issued["key_id"], "--reason", "test")
    predgate("tenants", "suspend", "acme")
    predgate("tenants", "resume", "acme")
    failed = predgate("tenants", "create", "acme", ok=False)
    assert failed.exit_code == 1

    records = _records(predgate)
    kinds = [(r["event_type"], r["outcome"]) for r in records]
    assert kinds == [
        ("tenant.create", "success"),
        ("model.register", "success"),
        ("tenant.assign", "success"),
        ("key.issue", "success"),
        ("key.rotate", "success"),
        ("key.revoke", "success"),
        ("tenant.suspend", "success"),
        ("tenant.resume", "success"),
        ("tenant.create", "failure"),
    ]
    assert all(r["principal_type"] == "operator" for r in records)
    assert all(r["principal_id"].startswith("cli:") for r in records)
    assert records[-1]["reason_code"] == "tenant_exists"
    issue = records[3]["details"]
    assert issue["key_id"] == issued["key_id"]
    assert issued["api_key"] not in json.dumps(records)
    registered = records[1]["details"]
    assert registered["version"] == 1
    assert len(registered["sha256"]) == 64


def test_reads_of_the_log_are_audited(predgate, tmp_path: Path) -> None:
    predgate("audit", "query", "--json")
    predgate("audit", "verify")
    predgate(
        "audit",
        "export",
        "--since",
        "2000-01-01",
        "--until",
        "2100-01-01",
        "--out",
        str(tmp_path / "x.jsonl"),
    )
    kinds = [r["event_type"] for r in _records(predgate)]
    assert kinds == ["audit.read", "audit.verify", "audit.export"]


def _export(predgate, path: Path, fmt: str = "jsonl") -> Path:
    predgate(
        "audit",
        "export",
        "--since",
        "2000-01-01",
        "--until",
        "2100-01-01",
        "--format",
        fmt,
        "--out",
        str(path),
    )
    return path


def test_export_verifies_offline_and_tampering_is_named(
    predgate, client: FlaskClient, world, tmp_path: Path
) -> None:
    for _ in range(5):
        client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    predgate("audit", "checkpoint")
    export = _export(predgate, tmp_path / "log.jsonl")
    public_key = tmp_path / "audit.pem"
    public_key.write_text(predgate("audit", "public-key").stdout)
    trusting = ("--public-key", str(public_key))
    ok = predgate("audit", "verify", "--file", str(export), *trusting)
    assert ok.stdout.startswith("OK:")

    lines = export.read_text().splitlines()
    record = json.loads(lines[3])
    record["http_status"] = 201
    lines[3] = json.dumps(record)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    result = predgate("audit", "verify", "--file", str(tampered), *trusting, ok=False)
    assert result.exit_code == 1
    assert f"seq {record['seq']}: modified" in result.stdout


def test_csv_export_has_header_and_rows(predgate, client: FlaskClient, world, tmp_path) -> None:
    client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    rows = _export(predgate, tmp_path / "log.csv", "csv").read_text().splitlines()
    assert rows[0].startswith("seq,event_id,ts,")
    assert len(rows) >= 2


def test_verify_fails_with_nonzero_exit_on_tampered_database(predgate, session) -> None:
    predgate("tenants", "create", "acme")
    predgate("tenants", "create", "globex")
    session.execute(text("UPDATE audit_records SET principal_id = 'cli:mallory' WHERE seq = 1"))
    session.commit()
    result = predgate("audit", "verify", ok=False)
    assert result.exit_code == 1
    assert "seq 1: modified" in result.stdout


def test_prune_needs_a_covering_export_and_leaves_a_verifiable_chain(
    predgate, tmp_path: Path, session
) -> None:
    predgate("tenants", "create", "acme")
    predgate("tenants", "create", "globex")
    predgate("audit", "checkpoint")
    empty = tmp_path / "empty.jsonl"
    predgate(
        "audit", "export", "--since", "2000-01-01", "--until", "2000-01-02", "--out", str(empty)
    )
    refused = predgate("audit", "prune", "--before", "2100-01-01", "--export", str(empty), ok=False)
    assert refused.exit_code == 1
    assert "cover" in refused.output

    cut = datetime.now(UTC).isoformat()
    export = tmp_path / "all.jsonl"
    predgate(
        "audit",
        "export",
        "--since",
        "2000-01-01",
        "--until",
        datetime.now(UTC).isoformat(),
        "--out",
        str(export),
    )
    before = session.execute(text("SELECT count(*) FROM audit_records")).scalar_one()
    pruned = predgate("audit", "prune", "--before", cut, "--export", str(export))
    assert "removed" in pruned.stdout
    session.rollback()
    remaining = session.execute(text("SELECT min(seq), count(*) FROM audit_records")).one()
    # The prune's own record (and the failed one after the export) remain after the anchor.
    assert remaining[1] < before
    verified = predgate("audit", "verify")
    assert verified.stdout.startswith("OK:")
    assert [r["event_type"] for r in _records(predgate)][-2:] == ["audit.prune", "audit.verify"]
