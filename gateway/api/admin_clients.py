"""Admin API, OAuth clients: create (the secret is shown once), list, revoke, rotate the secret.
The same domain functions as `predgate clients`."""

from __future__ import annotations

from typing import Literal

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
from gateway.api.acts import actor, admin_act
from gateway.api.admin_shapes import ERROR_RESPONSES, ClientListQuery, StrictBody
from gateway.context import RequestContext
from gateway.pages import cut_page
from gateway.pipeline import endpoint
from gateway.presenters import client_json, issued_client_json

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
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


def _tenant_id_of(ctx: RequestContext, client: OAuthClient) -> int | None:
    return get_tenant(ctx.db(), client.tenant_name).id if client.tenant_name else None


@bp.post("")
@endpoint(
    "client.create",
    scope="admin",
    body=ClientCreate,
    responses=Response(HTTP_201=IssuedClientOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def create(ctx: RequestContext, body: ClientCreate) -> ResponseReturnValue:
    """Create a client with a role; the response is the only time its secret is shown."""
    with admin_act(ctx, **body.model_dump()) as act:
        issued = create_client(
            act.session,
            ctx.runtime.settings.secret_key,
            role=body.role,
            tenant_name=body.tenant,
            scopes=body.scopes,
            created_by=actor(ctx),
        )
        act.details["client_id"] = issued.client.client_id
        act.tenant_id, act.status = _tenant_id_of(ctx, issued.client), 201
    return jsonify(issued_client_json(issued.client, issued.client_secret)), 201, NO_STORE


@bp.get("")
@endpoint(
    "admin.read",
    scope="admin",
    query=ClientListQuery,
    responses=Response(HTTP_200=ClientList, **ERROR_RESPONSES),
    tags=TAGS,
)
def list_all(ctx: RequestContext, query: ClientListQuery) -> ResponseReturnValue:
    """Clients in creation order (never a secret), a page at a time."""
    found = list_clients(ctx.db(), after=query.after(), limit=query.limit + 1)
    page = cut_page(query.kind, found, query.limit, lambda c: c.client_id)
    return jsonify(
        {"clients": [client_json(c) for c in page.items], "next_cursor": page.next_cursor}
    )


@bp.post("/<client_id>/revoke")
@endpoint(
    "client.revoke",
    scope="admin",
    responses=Response(HTTP_200=ClientOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def revoke(ctx: RequestContext, client_id: str) -> ResponseReturnValue:
    """Revoke a client: no new tokens, and its tokens are refused from the next request."""
    with admin_act(ctx, client_id=client_id) as act:
        revoked = revoke_client(act.session, client_id)
        act.tenant_id = _tenant_id_of(ctx, revoked)
    return jsonify(client_json(revoked))


@bp.post("/<client_id>/rotate-secret")
@endpoint(
    "client.rotate_secret",
    scope="admin",
    responses=Response(HTTP_200=IssuedClientOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def rotate_secret(ctx: RequestContext, client_id: str) -> ResponseReturnValue:
    """Replace the client's secret (shown once); the old one stops working at once."""
    with admin_act(ctx, client_id=client_id) as act:
        issued = rotate_client_secret(act.session, ctx.runtime.settings.secret_key, client_id)
        act.tenant_id = _tenant_id_of(ctx, issued.client)
    return jsonify(issued_client_json(issued.client, issued.client_secret)), 200, NO_STORE
