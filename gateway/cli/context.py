"""What every command shares: settings, engine and sessions, built on first use; and the
one place where domain errors become a clean message and a non-zero exit."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import cached_property, wraps
from typing import Any, ParamSpec, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from audit.acts import OperatorAct, operator_act
from audit.recorder import AuditConfig, load_audit_config
from auth.errors import AuthError
from config import Settings, SettingsError
from db.engine import create_db_engine, make_session_factory
from db.migrations import DatabaseNotMigrated, ensure_at_head
from models.artifacts import ArtifactStore
from models.errors import ModelError
from ratelimit.errors import RateLimitError


class AuditReadError(Exception):
    """A refused audit command (bad export, refused prune); carries a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


P = ParamSpec("P")
R = TypeVar("R")


class CliContext:
    """Lazily built resources for one command invocation."""

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env()

    @cached_property
    def engine(self) -> Engine:
        return create_db_engine(self.settings.database_url)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.settings.artifacts_dir)

    def close(self) -> None:
        """Release database connections opened by the command."""
        if "engine" in self.__dict__:
            self.engine.dispose()

    @property
    def actor(self) -> str:
        """Who is acting, as recorded on what the command changes."""
        return f"cli:{getpass.getuser()}"

    @cached_property
    def audit_config(self) -> AuditConfig:
        return load_audit_config(
            self.settings.data_dir,
            signing_key=self.settings.audit_signing_key,
            instance_id=self.settings.instance_id,
            checkpoint_records=self.settings.audit_checkpoint_records,
            checkpoint_seconds=self.settings.audit_checkpoint_seconds,
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session on a migrated database, committed when the block succeeds."""
        ensure_at_head(self.engine)
        with make_session_factory(self.engine)() as session, session.begin():
            yield session

    def act(self, event_type: str, **details: Any) -> AbstractContextManager[OperatorAct]:
        """An audited administrative act: the change and its audit record commit together;
        a refused act is recorded as a failure in its own transaction."""
        return operator_act(
            self.session,
            self.audit_config,
            event_type=event_type,
            operator=self.actor,
            refusals=(AuthError, ModelError, RateLimitError, AuditReadError),
            **details,
        )


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into `error: ...` on stderr and exit status 1."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (
            AuthError,
            ModelError,
            RateLimitError,
            SettingsError,
            DatabaseNotMigrated,
            AuditReadError,
        ) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def echo_json(value: Any) -> None:
    """Print a value as indented JSON, datetimes as ISO 8601."""
    click.echo(json.dumps(value, indent=2, default=_json_default))


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def echo_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Print rows as an aligned text table."""
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text_rows)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in text_rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


pass_cli = click.make_pass_decorator(CliContext)
