"""`predgate serve`: run the gateway (granian)."""

from __future__ import annotations

import click

from gateway.cli.context import CliContext, handle_errors, pass_cli


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on (0.0.0.0: every interface).",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="The TCP port to listen on.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes; more than one needs PREDGATE_REDIS_URL.",
)
# Requests waiting for their audit commit free the CPU for others; enough threads keep it
# busy and let the audit writer commit larger groups (measured: bench/audit_throughput.py).
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Threads per worker running requests.",
)
@click.option(
    "--behind-proxy",
    is_flag=True,
    help="A proxy in front reads whole requests before it forwards them (the shipped nginx "
    "does): skip predgate's own request buffering, for about a fifth less CPU per request. "
    "Never when clients reach predgate directly: a client sending its body slowly would hold "
    "a thread.",
)
@pass_cli
@handle_errors
def serve(
    cli: CliContext, host: str, port: int, workers: int, threads: int, behind_proxy: bool
) -> None:
    """Serve the HTTP API (granian: worker processes, each running the app on threads)."""
    if workers > 1 and cli.settings.redis_url is None:
        # Each worker process would keep its own counters and admit the whole limit again.
        raise click.ClickException(
            f"--workers {workers} needs PREDGATE_REDIS_URL: without Redis, rate-limit counters "
            f"live in each worker's memory, so {workers} workers would admit up to {workers} "
            "times every limit. Set PREDGATE_REDIS_URL, or serve one worker with more --threads."
        )
    from db.migrations import ensure_at_head
    from gateway.server import serve as serve_gateway

    ensure_at_head(cli.engine)  # refuse an un-migrated database before forking anything
    cli.engine.dispose()
    serve_gateway(
        cli.settings,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        behind_proxy=behind_proxy,
    )
