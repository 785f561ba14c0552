"""Admin API, API keys: issue (the key is shown once), list (never secrets), revoke, rotate,
set the rate limit, read usage. The same domain functions as `predgate keys`."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from limits.errors import StorageError
from pydantic import BaseModel, Field
from spectree import Response

from auth.api_keys import ApiKey, get_key, issue_key, list_keys, revoke_key, rotate_key
from auth.api_keys import set_key_limit as set_key_policy
from auth.durations import parse_duration
from auth.tenants import get_tenant
from auth.usage import key_usage
from gateway.admin_acts import admin_act
from gateway.api.admin_shapes import (
    ERROR_RESPONSES,
    IssuedKeyOut,
    KeyIssue,
    KeyList,
    KeyOut,
    KeyRevoke,
    KeyRotate,
    RateLimitBody,
    actor,
    key_json,
    parse_optional_body,
)
from gateway.audit_notes import note_audit
from gateway.bodies import parse_json_body
from gateway.caller import require_scope
from gateway.errors import ApiError
from gateway.extensions import documented
from gateway.query_args import parse_query_args
from gateway.rate_limits import EXTENSION_KEY as RATE_LIMITS_KEY
from gateway.rate_limits import get_rate_limits
from gateway.runtime import db_session, get_runtime
from gateway.schemas import Problem

bp = Blueprint("admin_keys", __name__, url_prefix="/admin/v1/keys")
TAGS = ["admin: API keys"]
NO_STORE = {"Cache-Control": "no-store"}


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


def _tenant_id_of(key: ApiKey) -> int:
    return get_tenant(db_session(), key.tenant_name).id


def _issued(issued_json: dict[str, Any], status: int) -> ResponseReturnValue:
    return jsonify(issued_json), status, NO_STORE


@bp.post("")
@documented(
    json=KeyIssue,
    resp=Response(HTTP_201=IssuedKeyOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def issue() -> ResponseReturnValue:
    """Issue a key for a tenant; the response is the only time the full key is shown."""
    with admin_act("key.issue") as act:
        body = parse_json_body(KeyIssue)
        act.details.update(body.model_dump())
        issued = issue_key(
            act.session,
            get_runtime().settings.secret_key,
            tenant_name=body.tenant,
            created_by=actor(),
            label=body.label,
            expires_in=parse_duration(body.expires_in) if body.expires_in else None,
            rate_limit=body.rate_limit,
        )
        act.details["key_id"] = issued.key.key_id
        act.tenant_id, act.status = _tenant_id_of(issued.key), 201
    return _issued({**key_json(issued.key), "api_key": issued.api_key}, 201)


@bp.get("")
@documented(
    query=KeyListQuery,
    resp=Response(HTTP_200=KeyList, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def list_all() -> ResponseReturnValue:
    """Keys, optionally of one tenant (never their secrets)."""
    query = parse_query_args(KeyListQuery)
    note_audit(event_type="admin.read")
    found = list_keys(db_session(), tenant_name=query.tenant)
    return jsonify({"keys": [key_json(k) for k in found]})


@bp.post("/<key_id>/revoke")
@documented(
    json=KeyRevoke,
    resp=Response(HTTP_200=KeyOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def revoke(key_id: str) -> ResponseReturnValue:
    """Revoke a key; the next request that presents it is refused."""
    with admin_act("key.revoke", key_id=key_id) as act:
        body = parse_optional_body(KeyRevoke)
        act.details["reason"] = body.reason
        revoked = revoke_key(act.session, key_id, reason=body.reason)
        act.tenant_id = _tenant_id_of(revoked)
    return jsonify(key_json(revoked))


@bp.post("/<key_id>/rotate")
@documented(
    json=KeyRotate,
    resp=Response(HTTP_201=IssuedKeyOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def rotate(key_id: str) -> ResponseReturnValue:
    """Issue a successor (shown once); the old key works until the grace period ends."""
    with admin_act("key.rotate", key_id=key_id) as act:
        body = parse_optional_body(KeyRotate)
        act.details["grace"] = body.grace
        grace = parse_duration(body.grace)
        issued = rotate_key(
            act.session, get_runtime().settings.secret_key, key_id, created_by=actor(), grace=grace
        )
        act.details["new_key_id"] = issued.key.key_id
        act.tenant_id, act.status = _tenant_id_of(issued.key), 201
    return _issued({**key_json(issued.key), "api_key": issued.api_key}, 201)


@bp.put("/<key_id>/rate-limit")
@documented(
    json=RateLimitBody,
    resp=Response(HTTP_200=KeyOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def set_limit(key_id: str) -> ResponseReturnValue:
    """Set the key's own rate limit (null: inherit); its rotation lineage shares it."""
    with admin_act("key.set_limit", key_id=key_id) as act:
        body = parse_json_body(RateLimitBody)
        act.details["rate_limit"] = body.rate_limit
        updated = set_key_policy(act.session, key_id, policy=body.rate_limit)
        act.tenant_id = _tenant_id_of(updated)
    return jsonify(key_json(updated))


@bp.get("/<key_id>/usage")
@documented(
    resp=Response(HTTP_200=KeyUsageOut, HTTP_503=Problem, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
def usage(key_id: str) -> ResponseReturnValue:
    """What the key has spent in each window that applies to it, in this gateway's counters."""
    session = db_session()
    key = get_key(session, key_id)
    note_audit(event_type="key.usage", tenant_id=_tenant_id_of(key))
    if RATE_LIMITS_KEY not in current_app.extensions:
        raise ApiError(
            409, "rate_limits_disabled", "Rate limits disabled", "This gateway counts nothing."
        )
    settings = get_runtime().settings
    try:
        windows = key_usage(
            session,
            get_rate_limits().limiter.limiter,
            key_id,
            default_policy=settings.default_rate_limit,
            key_prefix=settings.ratelimit_key_prefix,
        )
    except StorageError:
        raise ApiError(
            503,
            "ratelimit_unavailable",
            "Rate limiting unavailable",
            "The rate-limit store cannot be read right now.",
        ) from None
    now = time.time()
    return jsonify({"key_id": key_id, "windows": [u.to_dict(now) for u in windows]})
