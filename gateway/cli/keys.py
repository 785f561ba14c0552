"""`predgate keys`: issue, list, revoke and rotate API keys; set and read their rate limits.

What only some subcommands use (usage counts, JSON presenters) is imported by them: `keys list`
need not load the audit and client tables (bench/cli_start.py)."""

from __future__ import annotations

import contextlib

import click

from auth.api_keys import (
    IssuedKey,
    get_key,
    issue_key,
    list_keys,
    refuse_revoked,
    revoke_key,
    rotate_key,
    set_key_limit,
)
from auth.durations import parse_duration
from auth.errors import KeyNotFound
from auth.tenants import get_tenant
from db.base import utcnow
from gateway.cli.context import CliContext, echo_json, echo_table, handle_errors, pass_cli
from gateway.cli.paging import echo_next_cursor, page_options
from gateway.cli.usage import cli_windows, days_option, echo_usage
from gateway.pages import cut_page
from ratelimit.policy import POLICY_EXAMPLE


@click.group()
def keys() -> None:
    """Partner API keys."""


def policy_argument(policy: str) -> str | None:
    """A POLICY argument: `default` clears the override, anything else is a policy."""
    return None if policy.strip().lower() == "default" else policy


def _echo_issued(issued: IssuedKey, as_json: bool) -> None:
    if as_json:
        from gateway.presenters import issued_key_json

        echo_json(issued_key_json(issued.key, issued.api_key))
        return
    click.echo(f"key id:  {issued.key.key_id}  (tenant {issued.key.tenant_name})")
    click.echo(f"api key: {issued.api_key}")
    click.echo("This is the only time the key is shown; store it now.", err=True)


@keys.command("issue")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option("--label", default="", help="A note to tell keys apart in listings.")
@click.option("--expires-in", help="Lifetime such as 90d, 24h or 30m; none by default.")
@click.option(
    "--rate-limit",
    help=f"The key's own policy, e.g. {POLICY_EXAMPLE}; by default the tenant's or the default.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
@handle_errors
def keys_issue(
    cli: CliContext,
    tenant: str,
    label: str,
    expires_in: str | None,
    rate_limit: str | None,
    as_json: bool,
) -> None:
    """Issue a key for TENANT and print it once."""
    lifetime = parse_duration(expires_in) if expires_in else None
    with cli.act(
        "key.issue", tenant=tenant, label=label, expires_in=expires_in, rate_limit=rate_limit
    ) as act:
        issued = issue_key(
            act.session,
            cli.settings.secret_key,
            tenant_name=tenant,
            created_by=cli.actor,
            label=label,
            expires_in=lifetime,
            rate_limit=rate_limit,
        )
        act.details["key_id"] = issued.key.key_id
        act.tenant_id = get_tenant(act.session, tenant).id
    _echo_issued(issued, as_json)


@keys.command("list")
@click.option("--tenant", help="Only this tenant's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@page_options("keys")
@pass_cli
@handle_errors
def keys_list(
    cli: CliContext, tenant: str | None, as_json: bool, limit: int, after: str | None
) -> None:
    """List keys in issue order (never their secrets), --limit at a time."""
    with cli.session() as session:
        fetched = list_keys(session, tenant_name=tenant, after=after, limit=limit + 1)
    page = cut_page("keys", fetched, limit, lambda k: k.key_id)
    found = page.items
    echo_next_cursor(page, "keys list")
    if as_json:
        from gateway.presenters import key_json

        echo_json([key_json(k) for k in found])
        return
    now = utcnow()
    echo_table(
        [
            "key id",
            "tenant",
            "label",
            "state",
            "created",
            "expires",
            "last used",
            "revoked",
            "rate limit",
        ],
        [
            [
                k.key_id,
                k.tenant_name,
                k.label or None,
                k.state(now),
                k.created_at,
                k.expires_at,
                k.last_used_at,
                k.revoked_at,
                k.rate_limit,
            ]
            for k in found
        ],
    )


@keys.command("revoke")
@click.argument("key_id")
@click.option("--reason", default="", help="Why, recorded with the revocation.")
@pass_cli
@handle_errors
def keys_revoke(cli: CliContext, key_id: str, reason: str) -> None:
    """Revoke KEY_ID; the next request with it is refused."""
    # A second revocation is refused before the act: it changes nothing, so it records nothing.
    # An unknown id is left to the act, which records the refusal.
    with cli.session() as session, contextlib.suppress(KeyNotFound):
        refuse_revoked(get_key(session, key_id))
    with cli.act("key.revoke", key_id=key_id, reason=reason) as act:
        revoked = revoke_key(act.session, key_id, reason=reason)
        act.tenant_id = get_tenant(act.session, revoked.tenant_name).id
    click.echo(f"key {key_id} revoked")


@keys.command("rotate")
@click.argument("key_id")
@click.option("--grace", default="24h", show_default=True, help="How long the old key still works.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
@handle_errors
def keys_rotate(cli: CliContext, key_id: str, grace: str, as_json: bool) -> None:
    """Issue a successor to KEY_ID, which keeps working until the grace period ends."""
    grace_period = parse_duration(grace)
    with cli.act("key.rotate", key_id=key_id, grace=grace) as act:
        issued = rotate_key(
            act.session, cli.settings.secret_key, key_id, created_by=cli.actor, grace=grace_period
        )
        act.details["new_key_id"] = issued.key.key_id
        act.tenant_id = get_tenant(act.session, issued.key.tenant_name).id
    _echo_issued(issued, as_json)
    if not as_json:
        click.echo(f"key {key_id} stops working at the end of the {grace} grace period")


@keys.command("set-limit")
@click.argument("key_id")
@click.argument("policy")
@pass_cli
@handle_errors
def keys_set_limit(cli: CliContext, key_id: str, policy: str) -> None:
    """Set KEY_ID's rate limit to POLICY (e.g. 100/minute;5000/day), or `default` to inherit.

    The key's rotation successors and predecessors share it; the next request applies it.
    """
    with cli.act("key.set_limit", key_id=key_id, rate_limit=policy) as act:
        updated = set_key_limit(act.session, key_id, policy=policy_argument(policy))
        act.tenant_id = get_tenant(act.session, updated.tenant_name).id
    shown = updated.rate_limit or "inherited (the tenant's policy, else the default)"
    click.echo(f"key {key_id} rate limit: {shown}")


@keys.command("usage")
@click.argument("key_id")
@days_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
@handle_errors
def keys_usage(cli: CliContext, key_id: str, days: int, as_json: bool) -> None:
    """Show KEY_ID's rate-limit windows (key and tenant; from Redis only: without it the
    counters live in the gateway's memory) and its requests per day and status."""
    from audit.usage import key_daily_usage
    from auth.usage import key_usage

    default = cli.settings.default_rate_limit
    with cli.act("key.usage", key_id=key_id) as act:
        key = get_key(act.session, key_id)
        act.tenant_id = get_tenant(act.session, key.tenant_name).id
        windows, unavailable = cli_windows(
            cli.settings,
            lambda counters: key_usage(act.session, counters, key_id, default_policy=default),
        )
        traffic = key_daily_usage(act.session, key_id=key_id, days=days, now=utcnow())
    subject = {"key_id": key_id, "tenant": key.tenant_name}
    echo_usage(subject, windows, unavailable, traffic, as_json=as_json)
