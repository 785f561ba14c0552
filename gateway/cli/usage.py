"""How `predgate keys usage` and `predgate tenants usage` read and print usage: the rate-limit
windows (from Redis; the in-memory counters of a gateway without Redis are in its own process,
which no command can read) and the partner traffic per day from the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.context import echo_json, echo_table

# The `tenants` and `keys` groups build `--days` with all their subcommands, `list` included,
# so what only `usage` reads (audit counts, windows, presenters) is imported when it runs.
if TYPE_CHECKING:
    from audit.usage import DailyUsage, TrafficCounts
    from config import Settings
    from ratelimit.counters import Counters
    from ratelimit.usage import WindowUsage

# audit.usage.MAX_DAYS (a test checks), named here without loading the audit tables.
MAX_DAYS = 90

days_option = click.option(
    "--days",
    default=7,
    show_default=True,
    type=click.IntRange(1, MAX_DAYS),
    help="Count the last N UTC days of the audit log, today included.",
)


def cli_windows(
    settings: Settings, read: Callable[[Counters], list[WindowUsage]]
) -> tuple[list[WindowUsage] | None, dict[str, str] | None]:
    """The windows from the shared store, or why there are none to read from here."""
    from auth.usage import read_windows, windows_unavailable

    if not settings.rate_limits_enabled:
        return None, windows_unavailable("rate_limits_disabled")
    if settings.redis_url is None:
        return None, windows_unavailable("counters_in_server_memory")
    from ratelimit.counters import open_counters  # the Redis client: only when it is used

    counters = open_counters(
        settings.redis_url,
        settings.ratelimit_strategy,
        key_prefix=settings.ratelimit_key_prefix,
        redis_options=settings.redis_options(),
    )
    return read_windows(counters, read)


def echo_usage(
    subject: dict[str, Any],
    windows: list[WindowUsage] | None,
    unavailable: dict[str, str] | None,
    traffic: DailyUsage,
    *,
    as_json: bool,
) -> None:
    """Print usage as JSON, or as a windows table and a per-day table; then fail (exit 1) if
    the store was configured but did not answer."""
    now = time.time()
    if as_json:
        from gateway.presenters import usage_json

        echo_json(usage_json(subject, windows, now=now, unavailable=unavailable, traffic=traffic))
    else:
        _echo_windows(windows, unavailable, now)
        _echo_traffic(traffic)
    if unavailable is not None and unavailable["code"] == "ratelimit_unavailable":
        raise click.ClickException("the rate-limit store (PREDGATE_REDIS_URL) is unreachable")


def _echo_windows(
    windows: list[WindowUsage] | None, unavailable: dict[str, str] | None, now: float
) -> None:
    if windows is None:
        click.echo(f"rate-limit windows: not shown. {unavailable['detail'] if unavailable else ''}")
    elif not windows:
        click.echo("rate-limit windows: none (no aggregate policy: each key is counted alone)")
    else:
        echo_table(
            ["window", "policy", "from", "limit", "used", "remaining", "resets in"],
            [
                [
                    u.name,
                    u.policy,
                    u.source,
                    u.limit,
                    u.used,
                    u.remaining,
                    f"{u.seconds_until_reset(now)}s",
                ]
                for u in windows
            ],
        )
    click.echo("")


def _echo_traffic(traffic: DailyUsage) -> None:
    headers = ["requests", "predictions", "rows", "refused", "429", "5xx"]
    rows = [_counts_row(on.isoformat(), counts) for on, counts in traffic.days]
    echo_table(["day", *headers], [*rows, _counts_row("total", traffic.total())])
    if traffic.by_key:
        click.echo("")
        echo_table(
            ["key id", *headers],
            [_counts_row(key_id, counts) for key_id, counts in traffic.by_key.items()],
        )


def _counts_row(label: str, counts: TrafficCounts) -> list[Any]:
    return [
        label,
        counts.requests,
        counts.predictions,
        counts.rows,
        counts.refused,
        counts.rate_limited,
        counts.errors,
    ]
