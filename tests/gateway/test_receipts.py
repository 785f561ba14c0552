"""Partner receipts over HTTP: the Audit-Record header, GET /v1/receipts/{request_id}, the
log's checkpoint, consistency proofs and public key, checked with the partner-side verifier
alone (audit/receipt_verifier.py), and tenant isolation."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.receipt_verifier import (
    ReceiptInvalid,
    node_hash,
    note_key_id,
    record_hash,
    verify_log_growth,
    verify_receipt,
)
from config import Settings
from gateway.runtime import get_runtime
from tests.conftest import HOUSE, IRIS, World, bearer
from tests.gateway.admin_support import record_for
from tests.oauth_support import token_headers

VERIFIER = Path(__file__).resolve().parents[2] / "audit" / "receipt_verifier.py"
HEADER = re.compile(r'^seq=(\d+), hash="([0-9a-f]{64})"$')


def public_pem(app: Flask) -> str:
    return get_runtime(app).audit_config.signer.public_pem()


def get_receipt(client: FlaskClient, key: str, request_id: str) -> Any:
    return client.get(f"/v1/receipts/{request_id}", headers=bearer(key))


def predict(client: FlaskClient, key: str, body: dict[str, Any] = HOUSE) -> Any:
    response = client.post("/v1/predict", json=body, headers=bearer(key))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_an_answer_names_its_record_and_its_receipt_verifies(
    app: Flask, client: FlaskClient, world: World, session: Session
) -> None:
    canary = {**HOUSE, "area": 873421.625}
    answer = predict(client, world.acme_key, canary)
    seq, hash_ = HEADER.match(answer.headers["Audit-Record"]).groups()  # type: ignore[union-attr]
    stored = record_for(session, answer)
    assert (int(seq), hash_) == (stored["seq"], stored["hash"])

    response = get_receipt(client, world.acme_key, answer.headers["X-Request-ID"])
    assert response.status_code == 200
    receipt = response.get_json()
    verified = verify_receipt(receipt, public_pem(app))
    assert verified.seq == int(seq)
    record = receipt["record"]
    assert record["hash"] == hash_
    assert record["http_status"] == 200
    assert record["model_name"] == "house-price"
    assert record["model_version"] == world.house_price.version
    assert record["model_sha256"] == world.house_price.artifact_sha256
    assert record["principal_id"] == world.acme_key_id
    # Digests, never the features; no secret either.
    text_body = response.get_data(as_text=True)
    assert "873421" not in text_body
    assert world.acme_key.rsplit("_", 1)[1] not in text_body
    # The receipt's own request is recorded too (event receipt.read), and names its record.
    assert record_for(session, response)["event_type"] == "receipt.read"
    assert HEADER.match(response.headers["Audit-Record"])


def test_refused_answers_carry_their_record_too(client: FlaskClient, world: World) -> None:
    refused = client.post("/v1/predict", json={"area": "big"}, headers=bearer(world.acme_key))
    assert refused.status_code == 422
    receipt = get_receipt(client, world.acme_key, refused.headers["X-Request-ID"]).get_json()
    assert receipt["record"]["http_status"] == 422
    assert receipt["record"]["seq"] == int(HEADER.match(refused.headers["Audit-Record"])[1])  # type: ignore[index]


def test_another_tenants_request_is_answered_like_an_unknown_one(
    client: FlaskClient, world: World, session: Session, settings: Settings
) -> None:
    acme_request = predict(client, world.acme_key).headers["X-Request-ID"]
    foreign = get_receipt(client, world.globex_key, acme_request)
    unknown = get_receipt(client, world.globex_key, "0" * 32)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.content_type == "application/problem+json"

    def without_id(response: Any) -> dict[str, Any]:
        return {k: v for k, v in response.get_json().items() if k != "request_id"}

    assert without_id(foreign) == without_id(unknown)
    assert foreign.get_json()["code"] == "receipt_not_found"
    assert "Audit-Record" in foreign.headers  # its own record, not acme's
    # An admin's act on acme is not acme's request either.
    admin = token_headers(client, session, settings, role="admin")
    act = client.post("/admin/v1/tenants/acme/suspend", headers=admin)
    resumed = client.post("/admin/v1/tenants/acme/resume", headers=admin)
    assert act.status_code in (200, 204)
    assert resumed.status_code in (200, 204)
    assert get_receipt(client, world.acme_key, act.headers["X-Request-ID"]).status_code == 404
    # The act's answer names its own record too (committed with the change).
    named = HEADER.match(act.headers["Audit-Record"])
    assert named is not None
    stored = record_for(session, act)
    assert (int(named[1]), named[2]) == (stored["seq"], stored["hash"])
    # And the same request id from the right tenant works.
    assert get_receipt(client, world.acme_key, acme_request).status_code == 200


def test_an_oauth_partner_gets_receipts_and_needs_the_scope(
    app: Flask, client: FlaskClient, world: World, session: Session, settings: Settings
) -> None:
    headers = token_headers(client, session, settings, role="partner", tenant="globex")
    answer = client.post("/v1/predict", json=IRIS, headers=headers)
    assert answer.status_code == 200
    receipt = client.get(f"/v1/receipts/{answer.headers['X-Request-ID']}", headers=headers)
    assert receipt.status_code == 200
    assert verify_receipt(receipt.get_json(), public_pem(app)).record["auth_method"] == "jwt"
    narrow = token_headers(
        client, session, settings, role="partner", tenant="globex", scopes=["predict"]
    )
    refused = client.get(f"/v1/receipts/{answer.headers['X-Request-ID']}", headers=narrow)
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "insufficient_scope"


def test_a_tampered_or_foreign_receipt_fails_verification(
    app: Flask, client: FlaskClient, world: World
) -> None:
    predict(client, world.acme_key)
    answer = predict(client, world.acme_key)
    predict(client, world.acme_key)
    receipt = get_receipt(client, world.acme_key, answer.headers["X-Request-ID"]).get_json()
    pem = public_pem(app)
    verify_receipt(receipt, pem)

    altered = {**receipt, "record": {**receipt["record"], "http_status": 503}}
    with pytest.raises(ReceiptInvalid) as raised:
        verify_receipt(altered, pem)
    assert raised.value.reason == "record_altered"

    # Altered and rehashed: the hash is no longer the one in the signed tree.
    rehashed_record = {**altered["record"]}
    rehashed_record["hash"] = record_hash(rehashed_record)
    with pytest.raises(ReceiptInvalid) as raised:
        verify_receipt({**receipt, "record": rehashed_record}, pem)
    assert raised.value.reason == "proof_invalid"

    # The record claimed at another place in the log.
    with pytest.raises(ReceiptInvalid) as raised:
        verify_receipt({**receipt, "leaf_index": receipt["leaf_index"] - 1}, pem)
    assert raised.value.reason == "proof_invalid"

    # A checkpoint with its root replaced (signature no longer matches).
    lines = receipt["checkpoint"].split("\n")
    lines[2] = base64.b64encode(b"\x00" * 32).decode()
    with pytest.raises(ReceiptInvalid) as raised:
        verify_receipt({**receipt, "checkpoint": "\n".join(lines)}, pem)
    assert raised.value.reason == "checkpoint_signature_invalid"

    # Another log's key.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ReceiptInvalid) as raised:
        verify_receipt(receipt, other)
    assert raised.value.reason == "checkpoint_signature_invalid"


def test_the_log_grows_by_appending_only_and_a_fork_is_caught(
    app: Flask, client: FlaskClient, world: World
) -> None:
    predict(client, world.acme_key)
    first = client.get("/v1/log/checkpoint", headers=bearer(world.acme_key)).get_json()
    for _ in range(6):
        answer = predict(client, world.globex_key, IRIS)
    # A receipt for a record no head covers yet signs a newer head.
    later = get_receipt(client, world.globex_key, answer.headers["X-Request-ID"]).get_json()
    assert later["tree_size"] > first["tree_size"]
    newest = client.get("/v1/log/checkpoint", headers=bearer(world.acme_key)).get_json()
    assert newest["tree_size"] == later["tree_size"]
    proof = client.get(
        f"/v1/log/consistency?from={first['tree_size']}&to={newest['tree_size']}",
        headers=bearer(world.acme_key),
    )
    assert proof.status_code == 200
    pem = public_pem(app)
    grown = verify_log_growth(
        first["checkpoint"], newest["checkpoint"], proof.get_json()["proof"], pem
    )
    assert grown.size == newest["tree_size"]

    # The operator's key signs a second history of the same length (a fork): caught.
    signer = get_runtime(app).audit_config.signer
    origin = newest["checkpoint"].split("\n")[0]
    forged_root = node_hash(b"\x00" * 32, b"\x01" * 32)
    body = f"{origin}\n{newest['tree_size']}\n{base64.b64encode(forged_root).decode()}\n"
    raw = signer.public_key.public_bytes(*_raw_format())
    blob = note_key_id(origin, raw) + signer.private_key.sign(body.encode())
    forged = f"{body}\n\u2014 {origin} {base64.b64encode(blob).decode()}\n"
    with pytest.raises(ReceiptInvalid) as raised:
        verify_log_growth(first["checkpoint"], forged, proof.get_json()["proof"], pem)
    assert raised.value.reason == "consistency_invalid"


def _raw_format() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return Encoding.Raw, PublicFormat.Raw


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("from=0&to=1", "from", "greater_than_equal"),
        ("from=5&to=2", "from", "invalid_range"),
        ("from=1&to=999999", "to", "beyond_newest_head"),
        ("from=1", "to", "missing"),
        ("from=x&to=2", "from", "int_parsing"),
    ],
)
def test_consistency_refuses_sizes_it_cannot_prove(
    client: FlaskClient, world: World, query: str, field: str, reason: str
) -> None:
    predict(client, world.acme_key)
    client.get("/v1/log/checkpoint", headers=bearer(world.acme_key))
    response = client.get(f"/v1/log/consistency?{query}", headers=bearer(world.acme_key))
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert response.get_json()["errors"] == [{"field": field, "reason": reason}]


def test_heads_follow_checkpoints_without_any_receipt_asked(
    make_app: Any, settings: Settings, world: World, session: Session
) -> None:
    app = make_app(replace(settings, audit_checkpoint_records=3))
    client = app.test_client()
    for _ in range(7):
        predict(client, world.acme_key)
    get_runtime(app).audit_sink.close()  # the writer's last act: a checkpoint and its head
    session.rollback()
    sizes = session.execute(text("SELECT tree_size FROM audit_tree_heads ORDER BY 1")).scalars()
    checkpoints = session.execute(
        text("SELECT seq FROM audit_checkpoints WHERE kind = 'checkpoint' ORDER BY 1")
    ).scalars()
    # Every checkpoint is covered by a tree head (the first record is checkpointed at once,
    # then every third, then the last at close). The tree thread signs after the writer has
    # moved on, so a head may cover records appended since, and two checkpoints close together
    # may share one head.
    heads, marks = list(sizes), list(checkpoints)
    assert len(marks) == 3
    assert heads == sorted(set(heads))
    assert all(any(mark <= head for head in heads) for mark in marks)
    assert heads[-1] == marks[-1] == 7


def test_the_public_key_endpoint_names_the_log(
    app: Flask, client: FlaskClient, world: World
) -> None:
    predict(client, world.acme_key)
    head = client.get("/v1/log/checkpoint", headers=bearer(world.acme_key)).get_json()
    key = client.get("/v1/log/public-key", headers=bearer(world.acme_key)).get_json()
    assert key["public_key"] == public_pem(app)
    assert key["origin"] == head["checkpoint"].split("\n")[0]
    assert key["key_id"] == head["key_id"]


def test_receipts_switched_off_send_no_header_and_no_receipt(
    make_app: Any, settings: Settings, world: World
) -> None:
    client = make_app(replace(settings, receipts_enabled=False)).test_client()
    answer = predict(client, world.acme_key)
    assert "Audit-Record" not in answer.headers
    refused = get_receipt(client, world.acme_key, answer.headers["X-Request-ID"])
    assert refused.status_code == 404
    assert refused.get_json()["code"] == "receipts_disabled"


def test_the_verifier_runs_alone_from_a_copy_of_its_file(
    app: Flask, client: FlaskClient, world: World, tmp_path: Path
) -> None:
    answer = predict(client, world.acme_key)
    receipt = get_receipt(client, world.acme_key, answer.headers["X-Request-ID"]).get_json()
    (tmp_path / "receipt.json").write_text(json.dumps(receipt))
    (tmp_path / "audit.pem").write_text(public_pem(app))
    (tmp_path / "receipt_verifier.py").write_bytes(VERIFIER.read_bytes())
    script = (
        "import json, sys; sys.path.insert(0, '.');"
        "from receipt_verifier import verify_receipt;"
        "v = verify_receipt(json.load(open('receipt.json')), open('audit.pem').read());"
        "own = [m for m in sys.modules if m.split('.')[0] in "
        "('audit', 'gateway', 'auth', 'models', 'config', 'db', 'sqlalchemy', 'flask')];"
        "print(v.seq, v.checkpoint.size, own)"
    )
    # -I: no PYTHONPATH, no working directory on the path: only the copied file and the
    # interpreter's packages (cryptography) are importable.
    run = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    seq, size, own = run.stdout.split(" ", 2)
    assert int(seq) == receipt["record"]["seq"]
    assert int(size) == receipt["tree_size"]
    assert own.strip() == "[]"
