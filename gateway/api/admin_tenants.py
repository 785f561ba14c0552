"""Admin API, tenants: create, list, show, suspend, resume, assign a model, set the rate limit,
read usage.

The same domain functions as `predgate tenants`; every change is audited with its principal.
"""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response

from audit.usage import tenant_daily_usage
from auth.tenants import (
    assign_model,
    create_tenant,
    get_tenant,
    list_tenants,
    parse_assignment_ref,
    set_tenant_limit,
    set_tenant_status,
)
from auth.usage import read_windows, tenant_usage
from db.base import utcnow
from gateway.api.acts import admin_act
from gateway.api.admin_shapes import (
    ERROR_RESPONSES,
    ModelAssignment,
    RateLimitBody,
    TenantAssignmentOut,
    TenantCreate,
    TenantList,
    TenantListQuery,
    TenantOut,
    TenantUsageOut,
    UsageQuery,
)
from gateway.context import RequestContext
from gateway.pages import cut_page
from gateway.pipeline import endpoint
from gateway.presenters import assignment_json, tenant_json, usage_json

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
    query=TenantListQuery,
    responses=Response(HTTP_200=TenantList, **ERROR_RESPONSES),
    tags=TAGS,
)
def list_all(ctx: RequestContext, query: TenantListQuery) -> ResponseReturnValue:
    """Tenants by name with their status, model and rate limit, a page at a time."""
    found = list_tenants(ctx.db(), after=query.after(), limit=query.limit + 1)
    page = cut_page(query.kind, found, query.limit, lambda t: t.name)
    return jsonify(
        {"tenants": [tenant_json(t) for t in page.items], "next_cursor": page.next_cursor}
    )


@bp.get("/<name>")
@endpoint("admin.read", scope="admin", responses=ONE, tags=TAGS)
def show(ctx: RequestContext, name: str) -> ResponseReturnValue:
    """One tenant."""
    return jsonify(tenant_json(get_tenant(ctx.db(), name)))


@bp.get("/<name>/usage")
@endpoint(
    "tenant.usage",
    scope="admin",
    query=UsageQuery,
    responses=Response(HTTP_200=TenantUsageOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def usage(ctx: RequestContext, name: str, query: UsageQuery) -> ResponseReturnValue:
    """The tenant's aggregate rate-limit windows in this gateway's counters (none without a
    tenant policy), and its partner requests per UTC day and status over the last `days` days,
    in total and per key, from the audit log."""
    tenant = get_tenant(ctx.db(), name)
    ctx.audit.tenant_id = tenant.id
    store = ctx.runtime.limiter.store if ctx.runtime.limiter is not None else None
    default = ctx.runtime.settings.default_rate_limit
    windows, unavailable = read_windows(
        store, lambda counters: tenant_usage(ctx.db(), counters, name, default_policy=default)
    )
    traffic = tenant_daily_usage(ctx.db(), tenant_id=tenant.id, days=query.days, now=utcnow())
    subject = {"tenant": tenant.name, "rate_limit": tenant.rate_limit}
    shown = usage_json(subject, windows, now=time.time(), unavailable=unavailable, traffic=traffic)
    return jsonify(shown)


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
