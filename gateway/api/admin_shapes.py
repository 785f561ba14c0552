"""Admin API bodies: strict request models (an unknown or privileged field is refused with 422,
never ignored), and the documented shapes of what gateway.presenters answers."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit.usage import MAX_DAYS
from gateway.pages import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, model_position
from gateway.schemas import Problem

ERROR_RESPONSES: dict[str, Any] = {
    f"HTTP_{status}": Problem for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}


class StrictBody(BaseModel):
    """A request body that refuses fields it does not declare and values of the wrong type."""

    model_config = ConfigDict(extra="forbid", strict=True)


class PageQuery(BaseModel):
    """`?limit=&cursor=` of an admin list: a page at a time, in a stable order."""

    model_config = ConfigDict(extra="forbid")
    kind: ClassVar[str]

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page.")
    cursor: str | None = Field(
        default=None, max_length=400, description="The `next_cursor` of the previous page."
    )

    @field_validator("cursor")
    @classmethod
    def _of_this_list(cls, cursor: str | None) -> str | None:
        if cursor is not None:
            decode_cursor(cls.kind, cursor)  # InvalidCursor is a ValueError: a 422
        return cursor

    def after(self) -> str | None:
        """The public id of the last item of the previous page."""
        return decode_cursor(self.kind, self.cursor) if self.cursor else None


class TenantListQuery(PageQuery):
    kind = "tenants"


class KeyListQuery(PageQuery):
    kind = "keys"

    tenant: str | None = Field(default=None, max_length=64)


class ClientListQuery(PageQuery):
    kind = "clients"


class ModelListQuery(PageQuery):
    kind = "models"

    @field_validator("cursor")
    @classmethod
    def _names_a_version(cls, cursor: str | None) -> str | None:
        if cursor is not None:
            model_position(decode_cursor(cls.kind, cursor))
        return cursor

    def after_version(self) -> tuple[str, int] | None:
        """The (name, version) of the last version of the previous page."""
        after = self.after()
        return model_position(after) if after is not None else None


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=7, ge=1, le=MAX_DAYS, description="The last N UTC days, today too.")


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
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


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
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


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
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


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


class WindowsUnavailable(BaseModel):
    code: str = Field(description="rate_limits_disabled or ratelimit_unavailable")
    detail: str


class TrafficOut(BaseModel):
    requests: int
    predictions: int = Field(description="Answered predict requests.")
    rows: int = Field(description="Rows those predictions scored.")
    refused: int = Field(description="4xx other than 429.")
    rate_limited: int = Field(description="429 answers.")
    errors: int = Field(description="5xx answers.")
    by_status: dict[str, int]


class DayTrafficOut(TrafficOut):
    day: str = Field(description="A UTC day, YYYY-MM-DD.")


class KeyTrafficOut(TrafficOut):
    key_id: str


class UsageOut(BaseModel):
    windows: list[WindowOut] | None = Field(description="Rate-limit windows as they stand now.")
    windows_unavailable: WindowsUnavailable | None
    days: int
    since: str = Field(description="The start of the first day counted (UTC midnight).")
    daily: list[DayTrafficOut] = Field(description="Partner requests per day, from the audit log.")
    total: TrafficOut


class KeyUsageOut(UsageOut):
    key_id: str
    tenant: str


class TenantUsageOut(UsageOut):
    tenant: str
    rate_limit: str | None
    by_key: list[KeyTrafficOut] = Field(description="Per key over the period.")
