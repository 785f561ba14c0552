"""Admin API bodies: strict request models (an unknown or privileged field is refused with 422,
never ignored) and the JSON shapes of tenants, keys and models (never a secret's hash)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from flask import request
from pydantic import BaseModel, ConfigDict, Field

from auth.api_keys import ApiKey
from auth.tenants import Tenant
from db.base import utcnow
from gateway.bodies import parse_json_body
from gateway.caller import resolve_caller
from gateway.schemas import Problem
from models.registry import ModelVersion

ERROR_RESPONSES: dict[str, Any] = {
    f"HTTP_{status}": Problem for status in (400, 401, 403, 404, 409, 413, 415, 422)
}


class StrictBody(BaseModel):
    """A request body that refuses fields it does not declare and values of the wrong type."""

    model_config = ConfigDict(extra="forbid", strict=True)


class TenantCreate(StrictBody):
    name: str = Field(max_length=64, description="1-64 lowercase letters, digits, '-' or '_'.")


class ModelAssignment(StrictBody):
    model: str = Field(
        max_length=120, description="NAME (follows the latest version) or NAME@VERSION (pinned)."
    )


class RateLimitBody(StrictBody):
    rate_limit: str | None = Field(
        max_length=200, description="A policy such as 100/minute;5000/day; null for the default."
    )


class KeyIssue(StrictBody):
    tenant: str = Field(max_length=64)
    label: str = Field(default="", max_length=200)
    expires_in: str | None = Field(default=None, max_length=16, description="e.g. 90d, 24h")
    rate_limit: str | None = Field(default=None, max_length=200)


class KeyRevoke(StrictBody):
    reason: str = Field(default="", max_length=200)


class KeyRotate(StrictBody):
    grace: str = Field(default="24h", max_length=16, description="How long the old key works.")


class TenantOut(BaseModel):
    tenant: str
    status: str
    model: str | None
    created_at: str
    rate_limit: str | None


class TenantList(BaseModel):
    tenants: list[TenantOut]


class KeyOut(BaseModel):
    key_id: str
    tenant: str
    label: str
    state: str
    created_at: str
    created_by: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    replaced_by: str | None
    rate_limit: str | None


class IssuedKeyOut(KeyOut):
    api_key: str = Field(description="The full key, shown this once only.")


class KeyList(BaseModel):
    keys: list[KeyOut]


class ModelVersionOut(BaseModel):
    name: str
    version: int
    task: str
    features: list[str]
    classes: list[Any] | None
    artifact_sha256: str
    artifact_size: int
    runtime: str
    registered_by: str
    registered_at: str


class ModelList(BaseModel):
    models: list[ModelVersionOut]


def parse_optional_body(model: type[StrictBody]) -> Any:
    """An optional JSON body: absent means every field's default."""
    if not request.content_length and not request.get_data(cache=True):
        return model()
    return parse_json_body(model)


def iso(value: datetime | None) -> str | None:
    """ISO 8601, or None."""
    return value.isoformat() if value is not None else None


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    """A tenant as the admin API shows it."""
    return {
        "tenant": tenant.name,
        "status": tenant.status,
        "model": tenant.model_ref,
        "created_at": iso(tenant.created_at),
        "rate_limit": tenant.rate_limit,
    }


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key's public description: never its secret or hash."""
    return {
        "key_id": key.key_id,
        "tenant": key.tenant_name,
        "label": key.label,
        "state": key.state(utcnow()),
        "created_at": iso(key.created_at),
        "created_by": key.created_by,
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
        "replaced_by": key.replaced_by,
        "rate_limit": key.rate_limit,
    }


def model_json(meta: ModelVersion) -> dict[str, Any]:
    """A model version as the admin API shows it."""
    summary = asdict(meta)
    summary["features"] = list(meta.features)
    summary["classes"] = list(meta.classes) if meta.classes is not None else None
    summary["registered_at"] = iso(meta.registered_at)
    return summary


def actor() -> str:
    """Who is acting, as recorded on what the request creates (`http:<type>:<id>`)."""
    principal = resolve_caller()
    return f"http:{principal.principal_type}:{principal.principal_id}"
