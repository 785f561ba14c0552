"""Key and client lifecycle: one successor per key (the lineage is a chain), a second
revocation refused with the first one's time and reason kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from auth.api_keys import get_key, issue_key, revoke_key, rotate_key
from auth.clients import create_client, revoke_client
from auth.errors import ClientAlreadyRevoked, KeyAlreadyRevoked, KeyAlreadyRotated
from auth.tenants import create_tenant

SECRET = b"s" * 40


@pytest.fixture
def key_id(session: Session) -> str:
    create_tenant(session, name="acme")
    return issue_key(session, SECRET, tenant_name="acme", created_by="t").key.key_id


def test_a_rotated_key_cannot_be_rotated_again(session: Session, key_id: str) -> None:
    successor = rotate_key(session, SECRET, key_id, created_by="t", grace=timedelta(hours=1))
    before = get_key(session, key_id)
    with pytest.raises(KeyAlreadyRotated) as refused:
        rotate_key(session, SECRET, key_id, created_by="t")
    assert refused.value.status == 409
    assert successor.key.key_id in str(refused.value)  # names the key to rotate instead
    assert get_key(session, key_id) == before  # replaced_by and expiry unchanged
    # The lineage goes on from its newest key.
    third = rotate_key(session, SECRET, successor.key.key_id, created_by="t")
    assert third.key.lineage_id == before.lineage_id
    assert get_key(session, successor.key.key_id).replaced_by == third.key.key_id


def test_a_second_revocation_is_refused_and_keeps_the_first(session: Session, key_id: str) -> None:
    first = revoke_key(session, key_id, reason="leaked")
    with pytest.raises(KeyAlreadyRevoked) as refused:
        revoke_key(session, key_id)
    assert (refused.value.status, refused.value.code) == (409, "key_already_revoked")
    again = get_key(session, key_id)
    assert (again.revoked_at, again.revoked_reason) == (first.revoked_at, "leaked")


def test_a_client_is_revoked_once(session: Session) -> None:
    client_id = create_client(session, SECRET, role="compliance", created_by="t").client.client_id
    first = revoke_client(session, client_id)
    with pytest.raises(ClientAlreadyRevoked) as refused:
        revoke_client(session, client_id)
    assert (refused.value.status, refused.value.code) == (409, "client_already_revoked")
    assert first.revoked_at is not None
