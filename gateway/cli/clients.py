"""`predgate clients`: OAuth2 clients (client credentials) for partners, admins and compliance.

The JSON presenters are imported where JSON is printed: they load every resource's tables, and
`clients list` needs only the clients' (bench/cli_start.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from auth.clients import (
    IssuedClient,
    OAuthClient,
    create_client,
    list_clients,
    revoke_client,
    rotate_client_secret,
)
from auth.principal import ROLE_SCOPES
from auth.tenants import get_tenant
from gateway.cli.context import CliContext, echo_json, echo_table, handle_errors, pass_cli
from gateway.cli.paging import echo_next_cursor, page_options
from gateway.pages import cut_page

if TYPE_CHECKING:
    from audit.acts import OperatorAct


@click.group()
def clients() -> None:
    """OAuth2 clients: they get access tokens at POST /oauth/token."""


def _echo_issued(issued: IssuedClient, as_json: bool) -> None:
    if as_json:
        from gateway.presenters import issued_client_json

        echo_json(issued_client_json(issued.client, issued.client_secret))
        return
    click.echo(f"client id:     {issued.client.client_id}  (role {issued.client.role})")
    click.echo(f"client secret: {issued.client_secret}")
    click.echo("This is the only time the secret is shown; store it now.", err=True)


def _note_tenant(act: OperatorAct, client: OAuthClient) -> None:
    if client.tenant_name is not None:
        act.tenant_id = get_tenant(act.session, client.tenant_name).id


@clients.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(sorted(ROLE_SCOPES)),
    help="What the client may do: its scopes are the role's (or fewer, with --scopes).",
)
@click.option("--tenant", help="The tenant of a partner client (required for partners only).")
@click.option("--scopes", help="Comma-separated; by default all of the role's scopes.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
@handle_errors
def clients_create(
    cli: CliContext, role: str, tenant: str | None, scopes: str | None, as_json: bool
) -> None:
    """Create a client and print its id and secret once."""
    wanted = [s.strip() for s in scopes.split(",")] if scopes is not None else None
    with cli.act("client.create", role=role, tenant=tenant, scopes=wanted) as act:
        issued = create_client(
            act.session,
            cli.settings.secret_key,
            role=role,
            tenant_name=tenant,
            scopes=wanted,
            created_by=cli.actor,
        )
        act.details["client_id"] = issued.client.client_id
        act.details["scopes"] = list(issued.client.scopes)
        _note_tenant(act, issued.client)
    _echo_issued(issued, as_json)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@page_options("clients")
@pass_cli
@handle_errors
def clients_list(cli: CliContext, as_json: bool, limit: int, after: str | None) -> None:
    """List clients in creation order (never their secrets), --limit at a time."""
    with cli.session() as session:
        fetched = list_clients(session, after=after, limit=limit + 1)
    page = cut_page("clients", fetched, limit, lambda c: c.client_id)
    found = page.items
    echo_next_cursor(page, "clients list")
    if as_json:
        from gateway.presenters import client_json

        echo_json([client_json(c) for c in found])
        return
    echo_table(
        ["client id", "role", "tenant", "scopes", "created", "revoked"],
        [
            [c.client_id, c.role, c.tenant_name, " ".join(c.scopes), c.created_at, c.revoked_at]
            for c in found
        ],
    )


@clients.command("revoke")
@click.argument("client_id")
@pass_cli
@handle_errors
def clients_revoke(cli: CliContext, client_id: str) -> None:
    """Revoke CLIENT_ID: no new tokens, and its tokens are refused from the next request."""
    with cli.act("client.revoke", client_id=client_id) as act:
        revoked = revoke_client(act.session, client_id)
        _note_tenant(act, revoked)
    click.echo(f"client {client_id} revoked")


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
@handle_errors
def clients_rotate_secret(cli: CliContext, client_id: str, as_json: bool) -> None:
    """Give CLIENT_ID a new secret (printed once); the old secret stops working now."""
    with cli.act("client.rotate_secret", client_id=client_id) as act:
        issued = rotate_client_secret(act.session, cli.settings.secret_key, client_id)
        _note_tenant(act, issued.client)
    _echo_issued(issued, as_json)
