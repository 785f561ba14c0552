"""`predgate`: the operator's command line. Parses arguments, calls domain functions, prints.

Each command group lives in its own module, imported only when that command runs (or when
`--help` lists it): starting a command must not pay for the model stack it does not use."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

# Command name -> "module:attribute" of the click command.
COMMANDS = {
    "audit": "gateway.cli.audit:audit",
    "clients": "gateway.cli.clients:clients",
    "db": "gateway.cli.database:db",
    "demo": "gateway.cli.demo:demo",
    "keys": "gateway.cli.keys:keys",
    "models": "gateway.cli.registry:models",
    "receipts": "gateway.cli.receipts:receipts",
    "serve": "gateway.cli.serve:serve",
    "signing-keys": "gateway.cli.signing_keys:signing_keys",
    "tenants": "gateway.cli.tenants:tenants",
}


# What `predgate --help` lists beside each command, so listing them imports none of them (a
# test checks each matches its command's own short help).
SHORT_HELP = {
    "audit": "The tamper-evident audit log.",
    "clients": "OAuth2 clients: they get access tokens at POST /oauth/token.",
    "db": "Database migrations.",
    "demo": "Set up demo models, tenants and keys (safe to re-run).",
    "keys": "Partner API keys.",
    "models": "The model registry.",
    "receipts": "Partner receipts: proofs of what the gateway answered.",
    "serve": "Serve the HTTP API (granian worker processes).",
    "signing-keys": "Keys that sign OAuth2 access tokens.",
    "tenants": "Partner tenants.",
}


class LazyGroup(click.Group):
    """A group whose commands are imported from their modules when first asked for."""

    # Set by `main`, whose process runs one command: what the command imports lives as long
    # as the process does (see _import_for_good).
    one_command_per_process = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SHORT_HELP[name]) for name in self.list_commands(ctx)])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        if self.one_command_per_process:
            with _import_for_good():
                command = getattr(importlib.import_module(module), attribute)
        else:
            command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@contextmanager
def _import_for_good() -> Iterator[None]:
    """Imports that last until the process ends: ~10^5 objects and no garbage. The cyclic
    collector is off while they are made, then leaves them out of its walks (frozen) rather
    than walking them again at every full collection: a tenth of a quick command's CPU."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="predgate",  # the installed distribution's version, read when asked for
    prog_name="predgate",
    message="%(prog)s %(version)s",
    help="Print predgate's version and exit.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PREDGATE_DATA_DIR",
    show_envvar=True,
    help="The instance's data directory (server secret, SQLite database, model artifacts, "
    "audit signing key). Default: ./var. Only `db upgrade` and `demo` create an instance; "
    "every other command refuses a directory that holds none.",
)
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """predgate: a secured multi-tenant prediction gateway."""
    from gateway.cli.context import CliContext  # not for --help and --version

    ctx.obj = CliContext(data_dir=data_dir)
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    """Console-script entry point."""
    cli.one_command_per_process = True
    cli(prog_name="predgate")
