"""`predgate db`: apply and inspect migrations."""

from __future__ import annotations

import click

from gateway.cli.context import CliContext, handle_errors, pass_cli


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@pass_cli
@handle_errors
def db_upgrade(cli: CliContext) -> None:
    """Apply every pending migration; creates the instance (data directory, server secret,
    SQLite database) when it does not exist yet."""
    from db.migrations import upgrade

    cli.create_instance()
    revision = upgrade(cli.engine)
    click.echo(f"database at revision {revision} (data directory {cli.settings.data_dir})")


@db.command("current")
@pass_cli
@handle_errors
def db_current(cli: CliContext) -> None:
    """Show the database's revision and the one this code needs."""
    from db.migrations import current_revision, head_revision

    click.echo(f"database: {current_revision(cli.engine) or 'none'}  code: {head_revision()}")
