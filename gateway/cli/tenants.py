"""`predgate tenants`: create, list, assign, suspend, resume, set-limit."""

from __future__ import annotations

import click

from auth.tenants import (
    assign_model,
    create_tenant,
    list_tenants,
    set_tenant_limit,
    set_tenant_status,
)
from gateway.cli.context import CliContext, echo_json, echo_table, handle_errors, pass_cli
from gateway.cli.keys import policy_argument
from gateway.presenters import tenant_json
from models.registry import parse_model_ref


@click.group()
def tenants() -> None:
    """Partner tenants."""


@tenants.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_cli
@handle_errors
def tenants_create(cli: CliContext, name: str, as_json: bool) -> None:
    """Create a tenant."""
    with cli.act("tenant.create", tenant=name) as act:
        tenant = create_tenant(act.session, name=name)
        act.tenant_id = tenant.id
    if as_json:
        echo_json(tenant_json(tenant))
    else:
        click.echo(f"created tenant {tenant.name}")


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_cli
@handle_errors
def tenants_list(cli: CliContext, as_json: bool) -> None:
    """List tenants with their status and model."""
    with cli.session() as session:
        rows = list_tenants(session)
    if as_json:
        echo_json([tenant_json(t) for t in rows])
        return
    echo_table(
        ["tenant", "status", "model", "created", "rate limit"],
        [[t.name, t.status, t.model_ref, t.created_at, t.rate_limit] for t in rows],
    )


@tenants.command("assign")
@click.argument("tenant")
@click.argument("model_ref", metavar="MODEL[@VERSION]")
@pass_cli
@handle_errors
def tenants_assign(cli: CliContext, tenant: str, model_ref: str) -> None:
    """Route TENANT's predictions to MODEL (latest version) or MODEL@VERSION (pinned)."""
    name, version = parse_model_ref(model_ref)
    with cli.act("tenant.assign", tenant=tenant, model=model_ref) as act:
        updated = assign_model(act.session, tenant, model_name=name, version=version)
        act.tenant_id = updated.id
    click.echo(f"tenant {updated.name} -> {updated.model_ref}")


@tenants.command("suspend")
@click.argument("tenant")
@pass_cli
@handle_errors
def tenants_suspend(cli: CliContext, tenant: str) -> None:
    """Suspend a tenant: its credentials answer 403 from the next request."""
    with cli.act("tenant.suspend", tenant=tenant, status="suspended") as act:
        act.tenant_id = set_tenant_status(act.session, tenant, status="suspended").id
    click.echo(f"tenant {tenant} suspended")


@tenants.command("resume")
@click.argument("tenant")
@pass_cli
@handle_errors
def tenants_resume(cli: CliContext, tenant: str) -> None:
    """Resume a suspended tenant."""
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
    with cli.act("tenant.set_limit", tenant=tenant, rate_limit=policy) as act:
        updated = set_tenant_limit(act.session, tenant, policy=policy_argument(policy))
        act.tenant_id = updated.id
    shown = updated.rate_limit or "none (each key: its own policy, else the default)"
    click.echo(f"tenant {tenant} rate limit: {shown}")
