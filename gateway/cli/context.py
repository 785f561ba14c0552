"""What every command shares: settings, engine and sessions, built on first use; and the
one place where domain errors become a clean message and a non-zero exit."""

from __future__ import annotations

import getpass
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import cached_property, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from config.secrets import SECRET_FILE_NAME
from config.settings import PREFIX, resolve_data_dir

# The database, the audit stack and the model store are imported where they are first used:
# `predgate --help` and `--version` must not pay for them (bench/cli_start.py).
if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from audit.acts import OperatorAct
    from audit.recorder import AuditConfig
    from config import Settings
    from models.artifacts import ArtifactStore

DATA_DIR_VARIABLE = f"{PREFIX}DATA_DIR"
SECRET_VARIABLE = f"{PREFIX}SECRET_KEY"


class AuditReadError(Exception):
    """A refused audit command (bad export, refused prune); carries a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


P = ParamSpec("P")
R = TypeVar("R")


class CliContext:
    """Lazily built resources for one command invocation.

    `data_dir` is `--data-dir` (or PREDGATE_DATA_DIR, which click reads for it); without either
    the instance is ./var. Settings refuse a data directory that holds no instance unless the
    command called `create_instance()` first (`db upgrade`, `demo`).
    """

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir_given = data_dir is not None
        self.environ: dict[str, str] = dict(os.environ)
        if data_dir is not None:
            self.environ[DATA_DIR_VARIABLE] = str(data_dir)
        self.creates_instance = False

    def create_instance(self) -> None:
        """This command may create the instance (data directory, server secret) it runs on."""
        self.creates_instance = True

    @cached_property
    def settings(self) -> Settings:
        from config import Settings

        if not self.creates_instance:
            refuse_missing_instance(self.environ, explicit=self.data_dir_given)
        return Settings.from_env(self.environ)

    @cached_property
    def engine(self) -> Engine:
        from db.engine import create_db_engine

        return create_db_engine(self.settings.database_url)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        from models.artifacts import ArtifactStore

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
        from audit.recorder import load_audit_config

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
        from db.engine import make_session_factory
        from db.migrations import ensure_at_head

        ensure_at_head(self.engine)
        with make_session_factory(self.engine)() as session, session.begin():
            yield session

    def act(self, event_type: str, **details: Any) -> AbstractContextManager[OperatorAct]:
        """An audited administrative act: the change and its audit record commit together;
        a refused act is recorded as a failure in its own transaction."""
        from audit.acts import operator_act
        from auth.errors import AuthError
        from models.errors import ModelError
        from ratelimit.errors import RateLimitError

        return operator_act(
            self.session,
            self.audit_config,
            event_type=event_type,
            operator=self.actor,
            refusals=(AuthError, ModelError, RateLimitError, AuditReadError),
            **details,
        )


def refuse_missing_instance(environ: Mapping[str, str], *, explicit: bool) -> None:
    """Refuse, naming the path and the command that creates one, a data directory that holds
    no instance: reading settings there would silently make a new one (a new server secret)."""
    if environ.get(SECRET_VARIABLE, "").strip():
        return  # the secret is given, so the instance is its database (and is checked there)
    data_dir = resolve_data_dir(environ)
    if (data_dir / SECRET_FILE_NAME).is_file():
        return
    where = "" if explicit else " (the default: neither --data-dir nor PREDGATE_DATA_DIR is set)"
    quoted = shlex.quote(str(data_dir))
    raise click.ClickException(
        f"no predgate instance in {data_dir}{where}; create one with "
        f"`predgate --data-dir {quoted} db upgrade` or `predgate --data-dir {quoted} demo`"
    )


def _expected_errors() -> tuple[type[Exception], ...]:
    # Imported when a command fails, by which time the modules that raise them are loaded.
    from auth.errors import AuthError
    from config.settings import SettingsError
    from db.migrations import DatabaseNotMigrated
    from models.errors import ModelError
    from ratelimit.errors import RateLimitError

    return (
        AuthError,
        ModelError,
        RateLimitError,
        SettingsError,
        DatabaseNotMigrated,
        AuditReadError,
    )


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into `error: ...` on stderr and exit status 1."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, _expected_errors()):
                raise click.ClickException(str(exc)) from None
            raise

    return wrapper


def echo_json(value: Any) -> None:
    """Print a value as indented JSON, datetimes as ISO 8601."""
    click.echo(json.dumps(value, indent=2, default=_json_default))


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def echo_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Print rows as a table (rich): aligned columns, never wrapped, no colour when piped."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for header in headers:
        table.add_column(header.upper(), no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(Text(_cell(value)) for value in row))  # Text: no markup in cells
    # A terminal keeps its width; a pipe gets whole lines, however wide the table is.
    wide = None if sys.stdout.isatty() else 10_000
    console = Console(file=sys.stdout, highlight=False, width=wide)
    with console.capture() as captured:
        console.print(table, crop=False)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


@contextmanager
def progress_steps(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A `progress(message)` callback for training and compilation, drawn on stderr: on a
    terminal a spinner on the current step and the time each took; elsewhere one line a step."""
    if not enabled:
        yield lambda _message: None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column

    console = Console(file=sys.stderr, highlight=False)
    if not console.is_terminal:
        yield lambda message: console.print(f"... {escape(message)}", soft_wrap=True)
        return
    columns = (
        SpinnerColumn(finished_text="[green]done"),
        TimeElapsedColumn(),
        # A long message is cut at the terminal's edge, never squeezing the other columns out.
        TextColumn(
            "{task.description}",
            table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
        ),
    )
    with Progress(*columns, console=console, expand=True) as bar:
        tasks: list[Any] = []

        def step(message: str) -> None:
            if tasks:
                bar.update(tasks[-1], completed=1)
            tasks.append(bar.add_task(escape(message), total=1))

        yield step
        if tasks:
            bar.update(tasks[-1], completed=1)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


pass_cli = click.make_pass_decorator(CliContext)
