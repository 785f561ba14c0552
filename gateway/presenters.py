"""How tenants, keys, clients and model versions are shown: one JSON shape per resource, used by
the admin API and by `predgate ... --json` alike. Never a secret or its hash."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from db.base import utcnow

# Only named in annotations: `predgate audit query` shows records through this module and
# should not load every resource's tables and the model registry to do it.
if TYPE_CHECKING:
    from audit.usage import DailyUsage
    from auth.api_keys import ApiKey
    from auth.clients import OAuthClient
    from auth.tenants import Assignment, Tenant
    from models.registry import ModelVersion
    from ratelimit.usage import WindowUsage


def iso(value: datetime | None) -> str | None:
    """ISO 8601, or None."""
    return value.isoformat() if value is not None else None


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    """A tenant: status, model assignment and rate limit."""
    return {
        "tenant": tenant.name,
        "status": tenant.status,
        "model": tenant.model_ref,
        "created_at": iso(tenant.created_at),
        "rate_limit": tenant.rate_limit,
    }


def assignment_json(assignment: Assignment) -> dict[str, Any]:
    """A tenant just assigned a model (or not, in a dry run), with what that changes."""
    return {
        **tenant_json(assignment.tenant),
        "previous": assignment.previous,
        "changes": list(assignment.changes),
        "dry_run": assignment.dry_run,
    }


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key's public description."""
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


def issued_key_json(key: ApiKey, api_key: str) -> dict[str, Any]:
    """A newly issued key, with the full key: the only time it is shown."""
    return {**key_json(key), "api_key": api_key}


def client_json(client: OAuthClient) -> dict[str, Any]:
    """An OAuth client's public description."""
    return {
        "client_id": client.client_id,
        "role": client.role,
        "tenant": client.tenant_name,
        "scopes": list(client.scopes),
        "created_at": iso(client.created_at),
        "created_by": client.created_by,
        "revoked_at": iso(client.revoked_at),
    }


def issued_client_json(client: OAuthClient, secret: str) -> dict[str, Any]:
    """A client with its new secret: the only time it is shown."""
    return {**client_json(client), "client_secret": secret}


def model_json(meta: ModelVersion) -> dict[str, Any]:
    """A registered model version."""
    summary = asdict(meta)
    summary["features"] = list(meta.features)
    summary["specs"] = [spec.to_json() for spec in meta.specs]
    summary["classes"] = list(meta.classes) if meta.classes is not None else None
    summary["registered_at"] = iso(meta.registered_at)
    return summary


def assigned_model_json(meta: ModelVersion) -> dict[str, Any]:
    """What a partner is told about the model its tenant is served."""
    from models.features import feature_schema  # loaded with the model stack anyway

    return {
        "name": meta.name,
        "version": meta.version,
        "task": meta.task,
        "features": list(meta.features),
        "feature_schema": [spec.to_json() for spec in meta.specs],
        "request_schema": feature_schema(meta.specs).request_schema(),
        "classes": list(meta.classes) if meta.classes is not None else None,
        "runtime": meta.runtime,
    }


def usage_json(
    subject: dict[str, Any],
    windows: list[WindowUsage] | None,
    *,
    now: float,
    unavailable: dict[str, str] | None = None,
    traffic: DailyUsage | None = None,
) -> dict[str, Any]:
    """A key's or tenant's usage: each rate-limit window as it stands (null, with the reason
    in `windows_unavailable`, when the counters cannot be read here), and the partner traffic
    the audit log counted per day."""
    shown = {
        **subject,
        "windows": [w.to_dict(now) for w in windows] if windows is not None else None,
        "windows_unavailable": unavailable,
    }
    return {**shown, **traffic.to_dict()} if traffic is not None else shown


def audit_records_json(
    records: Iterable[Mapping[str, Any]], tenants: Iterable[Tenant]
) -> list[dict[str, Any]]:
    """Audit records as a compliance officer reads them (`/audit/v1`, `predgate audit query`):
    the tenant's name beside its id, `details` as an object rather than the stored JSON text."""
    names = {tenant.id: tenant.name for tenant in tenants}
    shown = []
    for record in records:
        entry: dict[str, Any] = {}
        for name, value in record.items():
            entry[name] = _details(value) if name == "details" else value
            if name == "tenant_id":
                entry["tenant"] = names.get(value) if value is not None else None
        shown.append(entry)
    return shown


def _details(stored: str | None) -> Any:
    if not stored:
        return None
    try:
        return json.loads(stored)
    except ValueError:
        # A record altered in the database may hold anything; show it, verification names it.
        return stored
