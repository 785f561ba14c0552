"""Administrative acts by an operator (the `predgate` commands): the change and its audit record
commit in one transaction; a refused act changes nothing and is recorded as a failure with its
reason code, in a transaction of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from audit.recorder import AuditConfig, admin_event, record_event


@dataclass
class OperatorAct:
    """What an administrative command changes: filled in by the command, recorded with it."""

    details: dict[str, Any]
    tenant_id: int | None = None
    session: Session = field(init=False)


@contextmanager
def operator_act(
    transaction: Callable[[], AbstractContextManager[Session]],
    config: AuditConfig,
    *,
    event_type: str,
    operator: str,
    refusals: tuple[type[Exception], ...],
    **details: Any,
) -> Iterator[OperatorAct]:
    """Run an act in `transaction()` and record it there; an exception of `refusals` (each
    carries a `code`) is recorded as a failure before it propagates."""
    act = OperatorAct(details=dict(details))

    def record(session: Session, outcome: str, reason: str | None) -> None:
        event = admin_event(
            config,
            event_type=event_type,
            principal_type="operator",
            principal_id=operator,
            auth_method="local",
            outcome=outcome,
            reason_code=reason,
            tenant_id=act.tenant_id,
            details=act.details,
        )
        record_event(session, config, event)

    try:
        with transaction() as session:
            act.session = session
            yield act
            record(session, "success", None)
    except refusals as exc:
        with transaction() as session:
            record(session, "failure", str(getattr(exc, "code", type(exc).__name__)))
        raise
