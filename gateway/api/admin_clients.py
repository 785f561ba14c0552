"""Admin API, OAuth clients: create (the secret is shown once), list, revoke, rotate the secret.
The same domain functions as `predgate clients`."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, Field
from spectree import Response

from auth.clients import (
    OAuthClient,
    create_client,
    list_clients,
    revoke_client,
    rotate_client_secret,
)
from auth.tenants import get_tenant
from gateway.admin_acts import admin_act
from gateway.api.admin_shapes import ERROR_RESPONSES, StrictBody, actor, iso
from gateway.audit_notes import note_audit
from gateway.bodies import parse_json_body
from gateway.caller import require_scope
from gateway.extensions import documented
from gateway.runtime import db_session, get_runtime

bp = Blueprint("admin_clients", __name__, url_prefix="/admin/v1/clients")
TAGS = ["admin: OAuth clients"]
NO_STORE = {"Cache-Control": "no-store"}


class ClientCreate(StrictBody):
    role: Literal["partner", "admin", "compliance"]
    tenant: str | None = Field(default=None, max_length=64, description="Partners only.")
    scopes: list[str] | None = Field(default=None, max_length=8, description="Default: the role's.")


class ClientOut(BaseModel):
    client_id: str
    role: str
    tenant: str | None
    scopes: list[str]
    created_at: str
    created_by: str
    revoked_at: str | None


class IssuedClientOut(ClientOut):
    client_secret: str = Field(description="Shown this once only.")


class ClientList(BaseModel):
    clients: list[ClientOut]


def client_json(client: OAuthClient) -> dict[str, Any]:
    """A client's public description: never its secret or hash."""
    return {
        "client_id": client.client_id,
        "role": client.role,
        "tenant": client.tenant_name,
        "scopes": list(client.scopes),
        "created_at": iso(client.created_at),
        "created_by": client.created_by,
        "revoked_at": iso(client.revoked_at),
    }


def _tenant_id_of(client: OAuthClient) -> int | None:
    return get_tenant(db_session(), client.tenant_name).id if client.tenant_name else None


@bp.post("")
@documented(
    json=ClientCreate,
    resp=Response(HTTP_201=IssuedClientOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def create() -> ResponseReturnValue:
    """Create a client with a role; the response is the only time its secret is shown."""
    with admin_act("client.create") as act:
        body = parse_json_body(ClientCreate)
        act.details.update(body.model_dump())
        issued = create_client(
            act.session,
            get_runtime().settings.secret_key,
            role=body.role,
            tenant_name=body.tenant,
            scopes=body.scopes,
            created_by=actor(),
        )
        act.details["client_id"] = issued.client.client_id
        act.tenant_id, act.status = _tenant_id_of(issued.client), 201
    answer = {**client_json(issued.client), "client_secret": issued.client_secret}
    return jsonify(answer), 201, NO_STORE


@bp.get("")
@documented(resp=Response(HTTP_200=ClientList, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def list_all() -> ResponseReturnValue:
    """Every client (never a secret)."""
    note_audit(event_type="admin.read")
    return jsonify({"clients": [client_json(c) for c in list_clients(db_session())]})


@bp.post("/<client_id>/revoke")
@documented(resp=Response(HTTP_200=ClientOut, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def revoke(client_id: str) -> ResponseReturnValue:
    """Revoke a client: no new tokens, and its tokens are refused from the next request."""
    with admin_act("client.revoke", client_id=client_id) as act:
        revoked = revoke_client(act.session, client_id)
        act.tenant_id = _tenant_id_of(revoked)
    return jsonify(client_json(revoked))


@bp.post("/<client_id>/rotate-secret")
@documented(resp=Response(HTTP_200=IssuedClientOut, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def rotate_secret(client_id: str) -> ResponseReturnValue:
    """Replace the client's secret (shown once); the old one stops working at once."""
    with admin_act("client.rotate_secret", client_id=client_id) as act:
        issued = rotate_client_secret(act.session, get_runtime().settings.secret_key, client_id)
        act.tenant_id = _tenant_id_of(issued.client)
    answer = {**client_json(issued.client), "client_secret": issued.client_secret}
    return jsonify(answer), 200, NO_STORE
