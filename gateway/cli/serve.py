"""`predgate serve`: run the gateway under gunicorn."""

from __future__ import annotations

import click

from db.migrations import ensure_at_head
from gateway.cli.context import CliContext, handle_errors, pass_cli
from gateway.server import GatewayServer, gunicorn_options


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@pass_cli
@handle_errors
def serve(cli: CliContext, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the HTTP API (gunicorn, gthread workers)."""
    ensure_at_head(cli.engine)  # refuse an un-migrated database before forking anything
    cli.engine.dispose()
    click.echo(f"predgate serving on http://{host}:{port} ({workers} workers x {threads} threads)")
    GatewayServer(cli.settings, gunicorn_options(host, port, workers, threads)).run()
