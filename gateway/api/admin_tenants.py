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
    parse_assignment_ref,
    set_tenant_limit,
    set_tenant_status,
)
from gateway.api.acts import admin_act
from gateway.api.admin_shapes import (
    ERROR_RESPONSES,
    ModelAssignment,
    RateLimitBody,
    TenantAssignmentOut,
    TenantCreate,
    TenantList,
    TenantOut,
)
from gateway.context import RequestContext
from gateway.pipeline import endpoint
from gateway.presenters import assignment_json, tenant_json

bp = Blueprint("admin_tenants", __name__, url_prefix="/admin/v1/tenants")
TAGS = ["admin: tenants"]
ONE = Response(HTTP_200=TenantOut, **ERROR_RESPONSES)


@bp.post("")
@endpoint(
    "tenant.create",
    scope="admin",
    body=TenantCreate,
    responses=Response(HTTP_201=TenantOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def create(ctx: RequestContext, body: TenantCreate) -> ResponseReturnValue:
    """Create an active tenant with no model."""
    with admin_act(ctx, tenant=body.name) as act:
        tenant = create_tenant(act.session, name=body.name)
        act.tenant_id, act.status = tenant.id, 201
    return jsonify(tenant_json(tenant)), 201


@bp.get("")
@endpoint(
    "admin.read",
    scope="admin",
    responses=Response(HTTP_200=TenantList, **ERROR_RESPONSES),
    tags=TAGS,
)
def list_all(ctx: RequestContext) -> ResponseReturnValue:
    """Every tenant with its status, model and rate limit."""
    return jsonify({"tenants": [tenant_json(t) for t in list_tenants(ctx.db())]})


@bp.get("/<name>")
@endpoint("admin.read", scope="admin", responses=ONE, tags=TAGS)
def show(ctx: RequestContext, name: str) -> ResponseReturnValue:
    """One tenant."""
    return jsonify(tenant_json(get_tenant(ctx.db(), name)))


@bp.post("/<name>/suspend")
@endpoint("tenant.suspend", scope="admin", responses=ONE, tags=TAGS)
def suspend(ctx: RequestContext, name: str) -> ResponseReturnValue:
    """Suspend a tenant: its credentials answer 403 from the next request."""
    with admin_act(ctx, tenant=name, status="suspended") as act:
        tenant = set_tenant_status(act.session, name, status="suspended")
        act.tenant_id = tenant.id
    return jsonify(tenant_json(tenant))


@bp.post("/<name>/resume")
@endpoint("tenant.resume", scope="admin", responses=ONE, tags=TAGS)
def resume(ctx: RequestContext, name: str) -> ResponseReturnValue:
    """Resume a suspended tenant."""
    with admin_act(ctx, tenant=name, status="active") as act:
        tenant = set_tenant_status(act.session, name, status="active")
        act.tenant_id = tenant.id
    return jsonify(tenant_json(tenant))


@bp.put("/<name>/model")
@endpoint(
    "tenant.assign",
    scope="admin",
    body=ModelAssignment,
    responses=Response(HTTP_200=TenantAssignmentOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def assign(ctx: RequestContext, name: str, body: ModelAssignment) -> ResponseReturnValue:
    """Assign a model version to the tenant: pinned (NAME, NAME@VERSION) or NAME@latest.

    NAME pins the version that is the latest now, NAME@VERSION that version: a version
    registered later is not served to the tenant until it is assigned. NAME@latest follows the
    model: each version registered from then on is served at once. The answer says what
    changes for the tenant's partners; with `"dry_run": true` it says so and changes nothing
    (the request is audited all the same, marked as a dry run).
    """
    dry_run = {"dry_run": True} if body.dry_run else {}
    with admin_act(ctx, tenant=name, model=body.model, **dry_run) as act:
        model_name, version = parse_assignment_ref(body.model)
        assigned = assign_model(
            act.session, name, model_name=model_name, version=version, dry_run=body.dry_run
        )
        act.tenant_id = assigned.tenant.id
        act.details.update(previous=assigned.previous, assigned=assigned.assigned)
    return jsonify(assignment_json(assigned))


@bp.put("/<name>/rate-limit")
@endpoint("tenant.set_limit", scope="admin", body=RateLimitBody, responses=ONE, tags=TAGS)
def set_limit(ctx: RequestContext, name: str, body: RateLimitBody) -> ResponseReturnValue:
    """Set the tenant's aggregate rate limit (null: none); the next request applies it."""
    with admin_act(ctx, tenant=name, rate_limit=body.rate_limit) as act:
        tenant = set_tenant_limit(act.session, name, policy=body.rate_limit)
        act.tenant_id = tenant.id
    return jsonify(tenant_json(tenant))
