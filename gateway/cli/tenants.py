"""`predgate tenants`: create, list, assign, suspend, resume, set-limit, usage.

What only some subcommands use (usage counts, JSON presenters, the key commands) is imported
by them: `tenants list` need not load the audit tables (bench/cli_start.py)."""

from __future__ import annotations

import click

from auth.tenants import (
    assign_model,
    create_tenant,
    get_tenant,
    list_tenants,
    parse_assignment_ref,
    set_tenant_limit,
    set_tenant_status,
)
from db.base import utcnow
from gateway.cli.context import CliContext, echo_json, echo_table, handle_errors, pass_cli
from gateway.cli.paging import echo_next_cursor, page_options
from gateway.cli.usage import cli_windows, days_option, echo_usage
from gateway.pages import cut_page


@click.group()
def tenants() -> None:
    """Partner tenants."""


@tenants.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
@handle_errors
def tenants_create(cli: CliContext, name: str, as_json: bool) -> None:
    """Create a tenant called NAME."""
    with cli.act("tenant.create", tenant=name) as act:
        tenant = create_tenant(act.session, name=name)
        act.tenant_id = tenant.id
    if as_json:
        from gateway.presenters import tenant_json

        echo_json(tenant_json(tenant))
    else:
        click.echo(f"created tenant {tenant.name}")


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@page_options("tenants")
@pass_cli
@handle_errors
def tenants_list(cli: CliContext, as_json: bool, limit: int, after: str | None) -> None:
    """List tenants by name with their status and model, --limit at a time."""
    with cli.session() as session:
        fetched = list_tenants(session, after=after, limit=limit + 1)
    page = cut_page("tenants", fetched, limit, lambda t: t.name)
    rows = page.items
    echo_next_cursor(page, "tenants list")
    if as_json:
        from gateway.presenters import tenant_json

        echo_json([tenant_json(t) for t in rows])
        return
    echo_table(
        ["tenant", "status", "model", "created", "rate limit"],
        [[t.name, t.status, t.model_ref, t.created_at, t.rate_limit] for t in rows],
    )


@tenants.command("usage")
@click.argument("tenant")
@days_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
@handle_errors
def tenants_usage(cli: CliContext, tenant: str, days: int, as_json: bool) -> None:
    """Show TENANT's aggregate rate-limit windows (from Redis only: without it the counters
    live in the gateway's memory) and its requests per day and status, in total and per key."""
    from audit.usage import tenant_daily_usage
    from auth.usage import tenant_usage

    default = cli.settings.default_rate_limit
    with cli.act("tenant.usage", tenant=tenant) as act:
        found = get_tenant(act.session, tenant)
        act.tenant_id = found.id
        windows, unavailable = cli_windows(
            cli.settings,
            lambda counters: tenant_usage(act.session, counters, tenant, default_policy=default),
        )
        traffic = tenant_daily_usage(act.session, tenant_id=found.id, days=days, now=utcnow())
    subject = {"tenant": found.name, "rate_limit": found.rate_limit}
    echo_usage(subject, windows, unavailable, traffic, as_json=as_json)


@tenants.command("assign")
@click.argument("tenant")
@click.argument("model_ref", metavar="MODEL[@VERSION|@latest]")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@pass_cli
@handle_errors
def tenants_assign(cli: CliContext, tenant: str, model_ref: str, dry_run: bool) -> None:
    """Route TENANT's predictions to a version of MODEL and print what that changes.

    MODEL pins TENANT to the version of MODEL that is the latest now, MODEL@VERSION to that
    version: a version registered later is not served to TENANT until it is assigned.
    MODEL@latest follows MODEL: each version registered from then on is served at once.
    A dry run is audited as such.
    """
    name, version = parse_assignment_ref(model_ref)
    dry = {"dry_run": True} if dry_run else {}
    with cli.act("tenant.assign", tenant=tenant, model=model_ref, **dry) as act:
        assigned = assign_model(
            act.session, tenant, model_name=name, version=version, dry_run=dry_run
        )
        act.tenant_id = assigned.tenant.id
        act.details.update(previous=assigned.previous, assigned=assigned.assigned)
    click.echo(f"tenant {tenant}: {assigned.previous or 'none'} -> {assigned.assigned}")
    for change in assigned.changes:
        click.echo(f"  {change}")
    if dry_run:
        click.echo("dry run: nothing changed")


@tenants.command("suspend")
@click.argument("tenant")
@pass_cli
@handle_errors
def tenants_suspend(cli: CliContext, tenant: str) -> None:
    """Suspend TENANT: its credentials answer 403 from the next request."""
    with cli.act("tenant.suspend", tenant=tenant, status="suspended") as act:
        act.tenant_id = set_tenant_status(act.session, tenant, status="suspended").id
    click.echo(f"tenant {tenant} suspended")


@tenants.command("resume")
@click.argument("tenant")
@pass_cli
@handle_errors
def tenants_resume(cli: CliContext, tenant: str) -> None:
    """Resume TENANT after a suspension."""
    with cli.act("tenant.resume", tenant=tenant, status="active") as act:
        act.tenant_id = set_tenant_status(act.session, tenant, status="active").id
    click.echo(f"tenant {tenant} resumed")


@tenants.command("set-limit")
@click.argument("tenant")
@click.argument("policy")
@pass_cli
@handle_errors
def tenants_set_limit(cli: CliContext, tenant: str, policy: str) -> None:
    """Set TENANT's rate limit to POLICY (e.g. 1000/minute;50000/day), or `default` to clear.

    It caps all the tenant's keys together and is the policy of each key without its own;
    the next request applies it.
    """
    from gateway.cli.keys import policy_argument  # the key commands' modules: only here

    with cli.act("tenant.set_limit", tenant=tenant, rate_limit=policy) as act:
        updated = set_tenant_limit(act.session, tenant, policy=policy_argument(policy))
        act.tenant_id = updated.id
    shown = updated.rate_limit or "none (each key: its own policy, else the default)"
    click.echo(f"tenant {tenant} rate limit: {shown}")
