"""`predgate`: the operator's command line. Parses arguments, calls domain functions, prints."""

from __future__ import annotations

import click

from gateway.cli import (
    audit,
    clients,
    database,
    demo,
    keys,
    registry,
    serve,
    signing_keys,
    tenants,
)
from gateway.cli.context import CliContext


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """predgate: a secured multi-tenant prediction gateway."""
    ctx.obj = CliContext()
    ctx.call_on_close(ctx.obj.close)


cli.add_command(database.db)
cli.add_command(registry.models)
cli.add_command(tenants.tenants)
cli.add_command(keys.keys)
cli.add_command(clients.clients)
cli.add_command(signing_keys.signing_keys)
cli.add_command(audit.audit)
cli.add_command(demo.demo)
cli.add_command(serve.serve)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="predgate")
