"""Admin API, tenants: create, list, show, suspend, resume, assign a model, set the rate limit.

The same domain functions as `predgate tenants`; every change is audited with its principal.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response

from auth.tenants import (
    assign_model,
    create_tenant,
    get_tenant,
    list_tenants,
    set_tenant_limit,
    set_tenant_status,
)
from gateway.admin_acts import admin_act
from gateway.api.admin_shapes import (
    ERROR_RESPONSES,
    ModelAssignment,
    RateLimitBody,
    TenantCreate,
    TenantList,
    TenantOut,
    tenant_json,
)
from gateway.audit_notes import note_audit
from gateway.bodies import parse_json_body
from gateway.caller import require_scope
from gateway.extensions import documented
from gateway.runtime import db_session
from models.registry import parse_model_ref

bp = Blueprint("admin_tenants", __name__, url_prefix="/admin/v1/tenants")
TAGS = ["admin: tenants"]


@bp.post("")
@documented(
    json=TenantCreate,
    resp=Response(HTTP_201=TenantOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def create() -> ResponseReturnValue:
    """Create an active tenant with no model."""
    with admin_act("tenant.create") as act:
        body = parse_json_body(TenantCreate)
        act.details["tenant"] = body.name
        tenant = create_tenant(act.session, name=body.name)
        act.tenant_id, act.status = tenant.id, 201
    return jsonify(tenant_json(tenant)), 201


@bp.get("")
@documented(resp=Response(HTTP_200=TenantList, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def list_all() -> ResponseReturnValue:
    """Every tenant with its status, model and rate limit."""
    note_audit(event_type="admin.read")
    return jsonify({"tenants": [tenant_json(t) for t in list_tenants(db_session())]})


@bp.get("/<name>")
@documented(resp=Response(HTTP_200=TenantOut, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def show(name: str) -> ResponseReturnValue:
    """One tenant."""
    note_audit(event_type="admin.read")
    return jsonify(tenant_json(get_tenant(db_session(), name)))


@bp.post("/<name>/suspend")
@documented(resp=Response(HTTP_200=TenantOut, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def suspend(name: str) -> ResponseReturnValue:
    """Suspend a tenant: its credentials answer 403 from the next request."""
    with admin_act("tenant.suspend", tenant=name, status="suspended") as act:
        tenant = set_tenant_status(act.session, name, status="suspended")
        act.tenant_id = tenant.id
    return jsonify(tenant_json(tenant))


@bp.post("/<name>/resume")
@documented(resp=Response(HTTP_200=TenantOut, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def resume(name: str) -> ResponseReturnValue:
    """Resume a suspended tenant."""
    with admin_act("tenant.resume", tenant=name, status="active") as act:
        tenant = set_tenant_status(act.session, name, status="active")
        act.tenant_id = tenant.id
    return jsonify(tenant_json(tenant))


@bp.put("/<name>/model")
@documented(
    json=ModelAssignment,
    resp=Response(HTTP_200=TenantOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def assign(name: str) -> ResponseReturnValue:
    """Route the tenant's predictions to NAME (latest version) or NAME@VERSION (pinned)."""
    with admin_act("tenant.assign", tenant=name) as act:
        body = parse_json_body(ModelAssignment)
        act.details["model"] = body.model
        model_name, version = parse_model_ref(body.model)
        tenant = assign_model(act.session, name, model_name=model_name, version=version)
        act.tenant_id = tenant.id
    return jsonify(tenant_json(tenant))


@bp.put("/<name>/rate-limit")
@documented(
    json=RateLimitBody,
    resp=Response(HTTP_200=TenantOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def set_limit(name: str) -> ResponseReturnValue:
    """Set the tenant's aggregate rate limit (null: none); the next request applies it."""
    with admin_act("tenant.set_limit", tenant=name) as act:
        body = parse_json_body(RateLimitBody)
        act.details["rate_limit"] = body.rate_limit
        tenant = set_tenant_limit(act.session, name, policy=body.rate_limit)
        act.tenant_id = tenant.id
    return jsonify(tenant_json(tenant))
