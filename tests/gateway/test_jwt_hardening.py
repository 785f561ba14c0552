"""The negative-token corpus: every malformed, forged, stale or revoked access token is refused
with 401 problem+json, its own reason code, and one audit record saying so."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from auth.clients import revoke_client
from auth.signing_keys import active_private_key, ensure_signing_key, rotate_signing_key
from config import Settings
from db.engine import make_session_factory
from tests.conftest import World, bearer
from tests.gateway.test_audit_http import record_for
from tests.oauth_support import (
    b64url,
    forge_token,
    issue_client,
    request_token,
    token_claims,
    unsigned_token,
)

# Token checks happen before any database work: one backend suffices.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@pytest.fixture
def partner(session: Session, settings: Settings, world: World, client: FlaskClient) -> str:
    """An acme partner client that already got one token (so a signing key exists)."""
    issued = issue_client(session, settings, role="partner", tenant="acme")
    request_token(client, issued)
    return issued.client.client_id


def assert_refused(
    client: FlaskClient, session: Session, token: str, reason: str, *, status: int = 401
) -> dict[str, Any]:
    response = client.get("/v1/model", headers=bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json is not None
    assert response.json["code"] == reason
    record = record_for(session, response)
    assert record["reason_code"] == reason
    assert record["outcome"] == "failure"
    assert record["http_status"] == status
    assert record["event_type"] == "authn.failure"
    assert record["tenant_id"] is None or reason == "client_revoked"
    return record


def details_of(record: dict[str, Any]) -> dict[str, Any]:
    details = record["details"]
    return dict(json.loads(details) if isinstance(details, str) else details)


def _claims(settings: Settings, partner: str, **changes: Any) -> dict[str, Any]:
    tenant = changes.pop("tenant", "acme")
    return token_claims(settings, partner, tenant, **changes)


HEADER_CASES = [
    pytest.param({"kid": "no-such-key"}, "token_kid_unknown", id="unknown-kid"),
    pytest.param({"kid": "../../etc/passwd"}, "token_kid_malformed", id="path-kid"),
    # PyJWT refuses a non-string kid while parsing, before any key is chosen.
    pytest.param({"kid": 7}, "token_malformed", id="numeric-kid"),
    pytest.param({"kid": None}, "token_kid_malformed", id="missing-kid"),
    pytest.param({"jku": "https://evil.example/jwks"}, "token_key_header", id="jku"),
    pytest.param({"x5u": "https://evil.example/cert"}, "token_key_header", id="x5u"),
    pytest.param({"jwk": {"kty": "EC"}}, "token_key_header", id="jwk"),
    pytest.param({"typ": ""}, "token_typ_invalid", id="typ-missing"),
    pytest.param({"typ": "JWT"}, "token_typ_invalid", id="typ-jwt"),
]


@pytest.mark.parametrize(("header", "reason"), HEADER_CASES)
def test_bad_headers_are_refused(
    client: FlaskClient, session: Session, settings: Settings, partner: str, header, reason
) -> None:
    token = forge_token(session, settings, _claims(settings, partner), header=header)
    record = assert_refused(client, session, token, reason)
    assert record["auth_method"] == "jwt"
    assert record["principal_id"] is None  # an unverified token names nobody


CLAIM_CASES = [
    pytest.param({"exp": None}, "token_exp_missing", id="exp-missing"),
    pytest.param({"exp": int(time.time()) - 3600}, "token_expired", id="exp-past"),
    pytest.param({"nbf": int(time.time()) + 3600}, "token_not_yet_valid", id="nbf-future"),
    pytest.param({"iss": "https://evil.example"}, "token_issuer_invalid", id="wrong-iss"),
    pytest.param({"aud": "someone-else"}, "token_audience_invalid", id="wrong-aud"),
    pytest.param({"jti": None}, "token_jti_missing", id="jti-missing"),
    pytest.param({"iat": None}, "token_iat_missing", id="iat-missing"),
    # Signed by the real key, but living a day: past the issued lifetime, however it is stamped.
    pytest.param(
        {"exp": int(time.time()) + 86400}, "token_lifetime_too_long", id="exp-minus-iat-too-long"
    ),
    pytest.param(
        {"iat": int(time.time()) + 86000, "exp": int(time.time()) + 86400},
        "token_not_yet_valid",
        id="late-iat-far-exp",
    ),
    pytest.param({"tenant": "globex"}, "token_claims_invalid", id="tenant-claim-mismatch"),
    pytest.param({"sub": "pgc_0000000000000000"}, "token_claims_invalid", id="sub-not-client"),
]


@pytest.mark.parametrize(("changes", "reason"), CLAIM_CASES)
def test_bad_claims_are_refused(
    client: FlaskClient, session: Session, settings: Settings, partner: str, changes, reason
) -> None:
    token = forge_token(session, settings, _claims(settings, partner, **changes))
    assert_refused(client, session, token, reason)


def test_alg_none_is_refused(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    kid = active_private_key(session, settings.secret_key).kid
    token = unsigned_token({"alg": "none", "typ": "at+jwt", "kid": kid}, _claims(settings, partner))
    assert_refused(client, session, token, "token_alg_none")


def test_hs256_signed_with_the_public_key_is_refused(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    public_pem = client.get("/.well-known/jwks.json").json  # the attacker knows the public key
    assert public_pem is not None
    signing = active_private_key(session, settings.secret_key)
    private = serialization.load_pem_private_key(signing.private_pem, None)
    pem = private.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": signing.kid}
    unsigned = unsigned_token(header, _claims(settings, partner)).rsplit(".", 1)[0]
    mac = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    assert_refused(client, session, f"{unsigned}.{b64url(mac)}", "token_alg_not_allowed")


def test_signature_by_another_key_is_refused(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = forge_token(session, settings, _claims(settings, partner), key=stranger)
    assert_refused(client, session, token, "token_signature_invalid")


def test_tampered_payload_is_refused(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    token = forge_token(session, settings, _claims(settings, partner))
    head, _body, signature = token.split(".")
    other = forge_token(session, settings, _claims(settings, partner, scope="admin"))
    assert_refused(
        client, session, f"{head}.{other.split('.')[1]}.{signature}", "token_signature_invalid"
    )


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "eyJ.eyJ.", "x" * 200])
def test_garbage_is_malformed(
    client: FlaskClient, session: Session, partner: str, garbage: str
) -> None:
    assert_refused(client, session, garbage, "token_malformed")


def test_token_over_8kb_is_refused(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    token = forge_token(session, settings, _claims(settings, partner, pad="x" * 9000))
    assert_refused(client, session, token, "token_too_large")


def test_revoked_jti_is_refused_on_the_next_request(
    client: FlaskClient, session: Session, settings: Settings, world: World
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    token = str(request_token(client, issued)["access_token"])
    assert client.get("/v1/model", headers=bearer(token)).status_code == 200
    revoked = client.post(
        "/oauth/revoke",
        data={"token": token},
        auth=(issued.client.client_id, issued.client_secret),
    )
    assert revoked.status_code == 200
    record = record_for(session, revoked)
    assert record["event_type"] == "token.revoke"
    assert record["outcome"] == "success"
    assert details_of(record)["revoked"] is True
    record = assert_refused(client, session, token, "token_revoked")
    assert record["principal_type"] == "client"
    assert record["principal_id"] == issued.client.client_id


def test_token_of_a_revoked_client_is_refused(
    client: FlaskClient, session: Session, settings: Settings, world: World
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    token = str(request_token(client, issued)["access_token"])
    assert client.get("/v1/model", headers=bearer(token)).status_code == 200
    revoke_client(session, issued.client.client_id)
    session.commit()
    record = assert_refused(client, session, token, "client_revoked")
    assert record["principal_id"] == issued.client.client_id
    assert record["tenant_id"] is not None


def test_token_in_the_query_string_is_refused(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    token = forge_token(session, settings, _claims(settings, partner))
    for name in ("access_token", "token"):
        response = client.get(f"/v1/model?{name}={token}")
        assert response.status_code == 400
        assert response.json is not None
        assert response.json["code"] == "credentials_in_query"
        record = record_for(session, response)
        assert record["reason_code"] == "credentials_in_query"
        assert token not in str(record)


def test_jwt_in_x_api_key_is_not_a_token(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    token = forge_token(session, settings, _claims(settings, partner))
    response = client.get("/v1/model", headers={"X-API-Key": token})
    assert response.status_code == 401
    assert response.json is not None
    assert response.json["code"] == "malformed_credentials"


def test_a_well_formed_forged_token_is_accepted_only_with_the_real_key(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    # The control case: the corpus above differs from a valid token in one respect each.
    token = forge_token(session, settings, _claims(settings, partner))
    response = client.get("/v1/model", headers=bearer(token))
    assert response.status_code == 200
    record = record_for(session, response)
    assert record["auth_method"] == "jwt"
    assert record["principal_id"] == partner


def test_scope_claim_beyond_the_clients_grant_is_ignored(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    token = forge_token(session, settings, _claims(settings, partner, scope="predict admin"))
    response = client.get("/admin/v1/tenants", headers=bearer(token))
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["code"] == "insufficient_scope"


def test_key_retired_past_its_publication_no_longer_verifies(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    token = forge_token(session, settings, _claims(settings, partner))
    assert client.get("/v1/model", headers=bearer(token)).status_code == 200
    rotate_signing_key(session, settings.secret_key, retire_after=timedelta(0))
    session.commit()
    assert_refused(client, session, token, "token_kid_unknown")


def test_a_key_rotated_in_by_another_replica_is_found_at_once(
    client: FlaskClient, session: Session, settings: Settings, partner: str
) -> None:
    first = forge_token(session, settings, _claims(settings, partner))
    assert client.get("/v1/model", headers=bearer(first)).status_code == 200
    rotate_signing_key(session, settings.secret_key, retire_after=timedelta(minutes=16))
    session.commit()
    fresh = forge_token(session, settings, _claims(settings, partner))
    assert client.get("/v1/model", headers=bearer(fresh)).status_code == 200


def test_racing_workers_create_one_signing_key(engine, settings: Settings) -> None:
    barrier = threading.Barrier(4)
    kids: list[str] = []

    def create() -> None:
        with make_session_factory(engine)() as own:
            barrier.wait(timeout=10)
            kids.append(ensure_signing_key(own, settings.secret_key).kid)
            own.commit()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(kids) == 4
    assert len(set(kids)) == 1
