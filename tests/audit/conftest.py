"""Audit fixtures: a signer, a checkpoint policy, and a filled chain."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from audit.chain import CheckpointPolicy, append_events
from audit.events import AuditEvent
from audit.recorder import AuditConfig, load_audit_config


@pytest.fixture
def audit_config(tmp_path: Path) -> AuditConfig:
    config = load_audit_config(tmp_path / "audit-keys", signing_key="", instance_id="test")
    # Small cadence so short chains carry several checkpoints.
    return AuditConfig(config.signer, CheckpointPolicy(every_records=5), "test")


def make_event(number: int, **overrides: object) -> AuditEvent:
    fields: dict[str, object] = {
        "event_type": "predict",
        "outcome": "success",
        "instance_id": "test",
        "process_id": os.getpid(),
        "request_id": f"req-{number}",
        "http_status": 200,
        "http_method": "POST",
        "route": "/v1/predict",
        "tenant_id": 1,
        "principal_type": "api_key",
        "principal_id": "0123456789abcdef",
        "auth_method": "api_key",
        "rows": 1,
    }
    fields.update(overrides)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def fill_chain(session: Session, config: AuditConfig, count: int, *, batch: int = 3) -> None:
    """Append `count` events in small batches (several transactions, several checkpoints)."""
    for start in range(0, count, batch):
        events = [make_event(n) for n in range(start, min(count, start + batch))]
        append_events(session, events, signer=config.signer, policy=config.policy)
        session.commit()
