"""Admin API bodies: strict request models (an unknown or privileged field is refused with 422,
never ignored), and the documented shapes of what gateway.presenters answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas import Problem

ERROR_RESPONSES: dict[str, Any] = {
    f"HTTP_{status}": Problem for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}


class StrictBody(BaseModel):
    """A request body that refuses fields it does not declare and values of the wrong type."""

    model_config = ConfigDict(extra="forbid", strict=True)


class TenantCreate(StrictBody):
    name: str = Field(max_length=64, description="1-64 lowercase letters, digits, '-' or '_'.")


class ModelAssignment(StrictBody):
    model: str = Field(
        max_length=120,
        description="NAME (pinned to its latest version now), NAME@VERSION (pinned) or "
        "NAME@latest (each new version is served as soon as it is registered).",
    )
    dry_run: bool = Field(default=False, description="Say what would change; change nothing.")


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
    model: str | None = Field(description="NAME@VERSION (pinned) or NAME@latest; null: none.")
    created_at: str
    rate_limit: str | None


class TenantAssignmentOut(TenantOut):
    previous: str | None = Field(description="The model reference before; null: none.")
    changes: list[str] = Field(description="What changes for partners, one line each.")
    dry_run: bool


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
