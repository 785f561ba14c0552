"""Admin API, API keys: issue (the key is shown once), list (never secrets), revoke, rotate,
set the rate limit, read usage. The same domain functions as `predgate keys`."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response

from audit.usage import key_daily_usage
from auth.api_keys import ApiKey, get_key, issue_key, list_keys, revoke_key, rotate_key
from auth.api_keys import set_key_limit as set_key_policy
from auth.durations import parse_duration
from auth.tenants import get_tenant
from auth.usage import key_usage, read_windows
from db.base import utcnow
from gateway.api.acts import actor, admin_act
from gateway.api.admin_shapes import (
    ERROR_RESPONSES,
    IssuedKeyOut,
    KeyIssue,
    KeyList,
    KeyListQuery,
    KeyOut,
    KeyRevoke,
    KeyRotate,
    KeyUsageOut,
    RateLimitBody,
    UsageQuery,
)
from gateway.context import RequestContext
from gateway.pages import cut_page
from gateway.pipeline import endpoint
from gateway.presenters import issued_key_json, key_json, usage_json

bp = Blueprint("admin_keys", __name__, url_prefix="/admin/v1/keys")
TAGS = ["admin: API keys"]
NO_STORE = {"Cache-Control": "no-store"}
ONE = Response(HTTP_200=KeyOut, **ERROR_RESPONSES)
ISSUED = Response(HTTP_201=IssuedKeyOut, **ERROR_RESPONSES)


def _tenant_id_of(ctx: RequestContext, key: ApiKey) -> int:
    return get_tenant(ctx.db(), key.tenant_name).id


@bp.post("")
@endpoint("key.issue", scope="admin", body=KeyIssue, responses=ISSUED, tags=TAGS)
def issue(ctx: RequestContext, body: KeyIssue) -> ResponseReturnValue:
    """Issue a key for a tenant; the response is the only time the full key is shown."""
    with admin_act(ctx, **body.model_dump()) as act:
        issued = issue_key(
            act.session,
            ctx.runtime.settings.secret_key,
            tenant_name=body.tenant,
            created_by=actor(ctx),
            label=body.label,
            expires_in=parse_duration(body.expires_in) if body.expires_in else None,
            rate_limit=body.rate_limit,
        )
        act.details["key_id"] = issued.key.key_id
        act.tenant_id, act.status = _tenant_id_of(ctx, issued.key), 201
    return jsonify(issued_key_json(issued.key, issued.api_key)), 201, NO_STORE


@bp.get("")
@endpoint(
    "admin.read",
    scope="admin",
    query=KeyListQuery,
    responses=Response(HTTP_200=KeyList, **ERROR_RESPONSES),
    tags=TAGS,
)
def list_all(ctx: RequestContext, query: KeyListQuery) -> ResponseReturnValue:
    """Keys in issue order, optionally of one tenant (never their secrets), a page at a time."""
    found = list_keys(
        ctx.db(), tenant_name=query.tenant, after=query.after(), limit=query.limit + 1
    )
    page = cut_page(query.kind, found, query.limit, lambda k: k.key_id)
    return jsonify({"keys": [key_json(k) for k in page.items], "next_cursor": page.next_cursor})


@bp.post("/<key_id>/revoke")
@endpoint("key.revoke", scope="admin", body=KeyRevoke, optional_body=True, responses=ONE, tags=TAGS)
def revoke(ctx: RequestContext, key_id: str, body: KeyRevoke) -> ResponseReturnValue:
    """Revoke a key; the next request that presents it is refused."""
    with admin_act(ctx, key_id=key_id, reason=body.reason) as act:
        revoked = revoke_key(act.session, key_id, reason=body.reason)
        act.tenant_id = _tenant_id_of(ctx, revoked)
    return jsonify(key_json(revoked))


@bp.post("/<key_id>/rotate")
@endpoint(
    "key.rotate", scope="admin", body=KeyRotate, optional_body=True, responses=ISSUED, tags=TAGS
)
def rotate(ctx: RequestContext, key_id: str, body: KeyRotate) -> ResponseReturnValue:
    """Issue a successor (shown once); the old key works until the grace period ends."""
    with admin_act(ctx, key_id=key_id, grace=body.grace) as act:
        issued = rotate_key(
            act.session,
            ctx.runtime.settings.secret_key,
            key_id,
            created_by=actor(ctx),
            grace=parse_duration(body.grace),
        )
        act.details["new_key_id"] = issued.key.key_id
        act.tenant_id, act.status = _tenant_id_of(ctx, issued.key), 201
    return jsonify(issued_key_json(issued.key, issued.api_key)), 201, NO_STORE


@bp.put("/<key_id>/rate-limit")
@endpoint("key.set_limit", scope="admin", body=RateLimitBody, responses=ONE, tags=TAGS)
def set_limit(ctx: RequestContext, key_id: str, body: RateLimitBody) -> ResponseReturnValue:
    """Set the key's own rate limit (null: inherit); its rotation lineage shares it."""
    with admin_act(ctx, key_id=key_id, rate_limit=body.rate_limit) as act:
        updated = set_key_policy(act.session, key_id, policy=body.rate_limit)
        act.tenant_id = _tenant_id_of(ctx, updated)
    return jsonify(key_json(updated))


@bp.get("/<key_id>/usage")
@endpoint(
    "key.usage",
    scope="admin",
    query=UsageQuery,
    responses=Response(HTTP_200=KeyUsageOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def usage(ctx: RequestContext, key_id: str, query: UsageQuery) -> ResponseReturnValue:
    """What the key has spent in each window that applies to it, in this gateway's counters,
    and its partner requests per UTC day and status over the last `days` days (audit log)."""
    key = get_key(ctx.db(), key_id)
    ctx.audit.tenant_id = _tenant_id_of(ctx, key)
    store = ctx.runtime.limiter.store if ctx.runtime.limiter is not None else None
    default = ctx.runtime.settings.default_rate_limit
    windows, unavailable = read_windows(
        store, lambda counters: key_usage(ctx.db(), counters, key_id, default_policy=default)
    )
    traffic = key_daily_usage(ctx.db(), key_id=key_id, days=query.days, now=utcnow())
    subject = {"key_id": key_id, "tenant": key.tenant_name}
    shown = usage_json(subject, windows, now=time.time(), unavailable=unavailable, traffic=traffic)
    return jsonify(shown)
