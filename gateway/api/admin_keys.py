"""Admin API, API keys: issue (the key is shown once), list (never secrets), revoke, rotate,
set the rate limit, read usage. The same domain functions as `predgate keys`."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, Field
from spectree import Response

from auth.api_keys import ApiKey, get_key, issue_key, list_keys, revoke_key, rotate_key
from auth.api_keys import set_key_limit as set_key_policy
from auth.durations import parse_duration
from auth.tenants import get_tenant
from auth.usage import key_usage
from gateway.api.acts import actor, admin_act
from gateway.api.admin_shapes import (
    ERROR_RESPONSES,
    IssuedKeyOut,
    KeyIssue,
    KeyList,
    KeyOut,
    KeyRevoke,
    KeyRotate,
    RateLimitBody,
)
from gateway.context import RequestContext
from gateway.errors import ApiError
from gateway.pipeline import endpoint
from gateway.presenters import issued_key_json, key_json, usage_json
from ratelimit.errors import CounterStoreUnavailable

bp = Blueprint("admin_keys", __name__, url_prefix="/admin/v1/keys")
TAGS = ["admin: API keys"]
NO_STORE = {"Cache-Control": "no-store"}
ONE = Response(HTTP_200=KeyOut, **ERROR_RESPONSES)
ISSUED = Response(HTTP_201=IssuedKeyOut, **ERROR_RESPONSES)


class KeyListQuery(BaseModel):
    model_config = {"extra": "forbid"}

    tenant: str | None = Field(default=None, max_length=64)


class WindowOut(BaseModel):
    window: str
    scope: str
    policy: str
    policy_source: str
    limit: int
    window_seconds: int
    used: int
    remaining: int
    resets_in_seconds: int


class KeyUsageOut(BaseModel):
    key_id: str
    windows: list[WindowOut]


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
    """Keys, optionally of one tenant (never their secrets)."""
    found = list_keys(ctx.db(), tenant_name=query.tenant)
    return jsonify({"keys": [key_json(k) for k in found]})


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
    responses=Response(HTTP_200=KeyUsageOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def usage(ctx: RequestContext, key_id: str) -> ResponseReturnValue:
    """What the key has spent in each window that applies to it, in this gateway's counters."""
    key = get_key(ctx.db(), key_id)
    ctx.audit.tenant_id = _tenant_id_of(ctx, key)
    limiter = ctx.runtime.limiter
    if limiter is None:
        raise ApiError(
            409, "rate_limits_disabled", "Rate limits disabled", "This gateway counts nothing."
        )
    try:
        windows = key_usage(
            ctx.db(), limiter.store, key_id, default_policy=ctx.runtime.settings.default_rate_limit
        )
    except CounterStoreUnavailable:
        raise ApiError(
            503,
            "ratelimit_unavailable",
            "Rate limiting unavailable",
            "The rate-limit store cannot be read right now.",
        ) from None
    return jsonify(usage_json(key_id, windows, now=time.time()))
