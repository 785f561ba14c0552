"""`predgate signing-keys`: the ES256 keys that sign access tokens."""

from __future__ import annotations

from datetime import timedelta

import click

from auth.signing_keys import SigningKey, list_signing_keys, rotate_signing_key
from config.settings import TOKEN_LEEWAY_SECONDS
from db.base import utcnow
from gateway.cli.context import CliContext, echo_json, echo_table, handle_errors, pass_cli


@click.group("signing-keys")
def signing_keys() -> None:
    """Keys that sign OAuth2 access tokens (public halves at /.well-known/jwks.json)."""


def _key_json(key: SigningKey) -> dict[str, object]:
    return {
        "kid": key.kid,
        "algorithm": key.algorithm,
        "state": key.state(utcnow()),
        "created_at": key.created_at,
        "retired_at": key.retired_at,
        "published_until": key.publish_until,
    }


@signing_keys.command("rotate")
@pass_cli
@handle_errors
def signing_keys_rotate(cli: CliContext) -> None:
    """A new key signs from now on; the old one stays published until its tokens expire."""
    outlives = timedelta(seconds=cli.settings.token_lifetime_seconds + TOKEN_LEEWAY_SECONDS)
    with cli.act("signing_key.rotate") as act:
        new, old = rotate_signing_key(act.session, cli.settings.secret_key, retire_after=outlives)
        act.details.update(kid=new.kid, retired_kid=old.kid if old else None)
    click.echo(f"signing key {new.kid} signs from now on")
    if old is not None:
        click.echo(f"key {old.kid} stays published until {old.publish_until:%Y-%m-%d %H:%M:%SZ}")


@signing_keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
@handle_errors
def signing_keys_list(cli: CliContext, as_json: bool) -> None:
    """List signing keys (public information only)."""
    with cli.session() as session:
        found = [_key_json(k) for k in list_signing_keys(session)]
    if as_json:
        echo_json(found)
        return
    headers = ["kid", "algorithm", "state", "created_at", "retired_at", "published_until"]
    echo_table(headers, [[row[h] for h in headers] for row in found])
