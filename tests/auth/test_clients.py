"""OAuth clients: roles, tenants and scopes checked at creation; secrets kept only as keyed
hashes; revocation and secret rotation."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.clients import (
    ClientNotFound,
    create_client,
    get_client,
    list_clients,
    revoke_client,
    rotate_client_secret,
    verify_client_secret,
)
from auth.errors import InvalidArgument
from auth.signing_keys import (
    active_private_key,
    ensure_signing_key,
    published_keys,
    rotate_signing_key,
)
from auth.tables import OAuthClientRow, SigningKeyRow
from auth.tenants import create_tenant
from config import Settings

SECRET = b"s" * 40


@pytest.fixture
def acme(session: Session) -> str:
    create_tenant(session, name="acme")
    session.commit()
    return "acme"


def test_partner_client_defaults_to_the_full_partner_grant(session: Session, acme: str) -> None:
    issued = create_client(session, SECRET, role="partner", tenant_name=acme, created_by="t")
    assert issued.client.scopes == ("model:read", "predict", "receipts:read")
    assert issued.client.tenant_name == "acme"
    assert issued.client.client_id.startswith("pgc_")
    assert get_client(session, issued.client.client_id) == issued.client
    assert list_clients(session) == [issued.client]


@pytest.mark.parametrize(
    ("role", "tenant", "scopes"),
    [
        ("partner", None, None),  # a partner needs a tenant
        ("admin", "acme", None),  # admins and compliance have none
        ("compliance", "acme", None),
        ("partner", "acme", ["admin"]),  # scopes only narrow the role's set
        ("admin", None, ["predict"]),
        ("compliance", None, ["audit:read", "admin"]),
        ("partner", "acme", []),
        ("root", None, None),
    ],
)
def test_invalid_role_tenant_scope_combinations(
    session: Session, acme: str, role: str, tenant: str | None, scopes: list[str] | None
) -> None:
    with pytest.raises(InvalidArgument):
        create_client(session, SECRET, role=role, tenant_name=tenant, scopes=scopes, created_by="t")


def test_scopes_may_narrow(session: Session, acme: str) -> None:
    issued = create_client(
        session, SECRET, role="partner", tenant_name=acme, scopes=["model:read"], created_by="t"
    )
    assert issued.client.scopes == ("model:read",)


def test_secret_stored_only_as_keyed_hash(session: Session) -> None:
    issued = create_client(session, SECRET, role="admin", created_by="t")
    row = session.scalar(select(OAuthClientRow))
    assert row is not None
    assert issued.client_secret not in row.secret_hmac
    assert len(row.secret_hmac) == 64
    cid = issued.client.client_id
    assert verify_client_secret(session, SECRET, cid, issued.client_secret)
    assert not verify_client_secret(session, SECRET, cid, issued.client_secret + "x")
    assert not verify_client_secret(session, b"t" * 40, cid, issued.client_secret)
    assert not verify_client_secret(session, SECRET, "pgc_0000000000000000", "x")


def test_rotation_replaces_the_secret_and_revocation_stops_the_client(session: Session) -> None:
    issued = create_client(session, SECRET, role="compliance", created_by="t")
    cid = issued.client.client_id
    rotated = rotate_client_secret(session, SECRET, cid)
    assert rotated.client_secret != issued.client_secret
    assert not verify_client_secret(session, SECRET, cid, issued.client_secret)
    assert verify_client_secret(session, SECRET, cid, rotated.client_secret)
    revoked = revoke_client(session, cid)
    assert revoked.revoked_at is not None
    assert not verify_client_secret(session, SECRET, cid, rotated.client_secret)
    with pytest.raises(InvalidArgument):
        rotate_client_secret(session, SECRET, cid)


def test_unknown_client(session: Session) -> None:
    for call in (get_client, revoke_client):
        with pytest.raises(ClientNotFound):
            call(session, "pgc_ffffffffffffffff")


def test_signing_keys_encrypted_at_rest_and_rotated(session: Session, settings: Settings) -> None:
    from datetime import timedelta

    first = ensure_signing_key(session, settings.secret_key)
    assert ensure_signing_key(session, settings.secret_key) == first  # idempotent
    row = session.scalar(select(SigningKeyRow))
    assert row is not None
    assert b"PRIVATE KEY" not in row.private_encrypted
    private = active_private_key(session, settings.secret_key)
    assert private.kid == first.kid
    assert b"BEGIN PRIVATE KEY" in private.private_pem
    with pytest.raises(Exception):  # noqa: B017, PT011 (AES-GCM refuses another server secret)
        active_private_key(session, b"other-secret-" * 4)
    new, old = rotate_signing_key(session, settings.secret_key, retire_after=timedelta(minutes=16))
    assert old is not None
    assert old.kid == first.kid
    assert {k.kid for k in published_keys(session)} == {first.kid, new.kid}
    _, gone = rotate_signing_key(session, settings.secret_key, retire_after=timedelta(0))
    assert gone is not None
    assert new.kid not in {k.kid for k in published_keys(session)}
    assert first.kid in {k.kid for k in published_keys(session)}  # its 16 minutes still run
