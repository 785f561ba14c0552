"""`predgate audit`: query, export, verify and prune the audit log. Every read of the log is
itself recorded in it."""

from __future__ import annotations

import csv
import hashlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from audit.chain import lock_head, write_checkpoint
from audit.events import EVENT_TYPES, OUTCOMES
from audit.export import ExportError, iter_csv, iter_jsonl, verify_export, write_export
from audit.prune import PruneRefused, prune_records
from audit.query import AuditFilter, query_records
from audit.recorder import verify_database
from audit.signing import key_id_of, load_public_key
from audit.verify import VerificationReport
from auth.tenants import get_tenant
from gateway.cli.context import (
    AuditReadError,
    CliContext,
    echo_json,
    echo_table,
    handle_errors,
    pass_cli,
)

FC = TypeVar("FC", bound=Callable[..., Any])


def parse_time(value: str | None) -> datetime | None:
    """ISO 8601 date or date-time; UTC when no offset is given."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _time_option(name: str, required: bool = False) -> Callable[[FC], FC]:
    return click.option(
        name,
        required=required,
        callback=lambda _c, _p, v: parse_time(v),
        help="ISO 8601, e.g. 2026-11-25 or 2026-11-25T13:00:00Z (UTC by default).",
    )


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("query")
@click.option("--tenant")
@_time_option("--since")
@_time_option("--until")
@click.option("--event-type", type=click.Choice(sorted(EVENT_TYPES)))
@click.option("--outcome", type=click.Choice(sorted(OUTCOMES)))
@click.option("--status", type=int)
@click.option("--principal")
@click.option("--request-id")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@pass_cli
@handle_errors
def audit_query(
    cli: CliContext,
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    event_type: str | None,
    outcome: str | None,
    status: int | None,
    principal: str | None,
    request_id: str | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Find audit records."""
    filters = {
        k: v
        for k, v in {
            "tenant": tenant,
            "since": since and since.isoformat(),
            "until": until and until.isoformat(),
            "event_type": event_type,
            "outcome": outcome,
            "status": status,
            "principal": principal,
            "request_id": request_id,
            "limit": limit,
        }.items()
        if v is not None
    }
    with cli.act("audit.read", filters=filters) as act:
        tenant_id = get_tenant(act.session, tenant).id if tenant else None
        records = query_records(
            act.session,
            AuditFilter(
                tenant_id=tenant_id,
                since=since,
                until=until,
                event_type=event_type,
                outcome=outcome,
                http_status=status,
                principal_id=principal,
                request_id=request_id,
                limit=limit,
            ),
        )
        act.tenant_id = tenant_id
        act.details["returned"] = len(records)
    if as_json:
        echo_json(records)
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(records[0]) if records else ["seq"])
        writer.writeheader()
        writer.writerows(records)
    else:
        echo_table(
            ["seq", "ts", "event", "outcome", "status", "reason", "tenant", "principal", "route"],
            [
                [
                    r["seq"],
                    r["ts"],
                    r["event_type"],
                    r["outcome"],
                    r["http_status"],
                    r["reason_code"],
                    r["tenant_id"],
                    r["principal_id"],
                    r["route"],
                ]
                for r in records
            ],
        )


@audit.command("export")
@_time_option("--since", required=True)
@_time_option("--until", required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@pass_cli
@handle_errors
def audit_export(cli: CliContext, since: datetime, until: datetime, fmt: str, out: Path) -> None:
    """Export a time range; JSONL carries the checkpoints to verify it offline."""
    with cli.act(
        "audit.export", since=since.isoformat(), until=until.isoformat(), format=fmt
    ) as act:
        lines = (
            iter_jsonl(
                act.session, since=since, until=until, public_keys=cli.audit_config.public_keys()
            )
            if fmt == "jsonl"
            else iter_csv(act.session, since=since, until=until)
        )
        count, sha256 = write_export(lines, out)
        act.details.update(lines=count, sha256=sha256)
    click.echo(f"exported {count} lines to {out} (sha256 {sha256})")


@audit.command("verify")
@_time_option("--since")
@_time_option("--until")
@click.option(
    "--file",
    "export_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify a JSONL export offline instead of the database.",
)
@click.option(
    "--public-key",
    "public_key_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM public key(s) to trust; default: this instance's signing key.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
@handle_errors
def audit_verify(
    cli: CliContext,
    since: datetime | None,
    until: datetime | None,
    export_file: Path | None,
    public_key_files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Recompute the chain and checkpoints; exit non-zero on any failure."""
    if public_key_files:
        keys = {}
        for path in public_key_files:
            key = load_public_key(path.read_text())
            keys[key_id_of(key)] = key
    else:
        keys = cli.audit_config.public_keys()
    if export_file is not None:
        try:
            report = verify_export(export_file, keys)
        except ExportError as exc:
            raise AuditReadError("invalid_export", str(exc)) from None
        _print_report(report, as_json)
        if not report.ok:
            sys.exit(1)
        return
    with cli.act(
        "audit.verify", since=since and since.isoformat(), until=until and until.isoformat()
    ) as act:
        report = verify_database(act.session, keys, since=since, until=until)
        act.details.update(
            ok=report.ok,
            records=report.records_checked,
            findings=len(report.findings),
            uncovered_tail=report.uncovered_tail,
        )
    _print_report(report, as_json)
    if not report.ok:
        sys.exit(1)


def _print_report(report: VerificationReport, as_json: bool) -> None:
    if as_json:
        echo_json(report.to_dict())
        return
    for line in report.summary():
        click.echo(line)


@audit.command("prune")
@_time_option("--before", required=True)
@click.option(
    "--export",
    "export_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSONL export that holds every record to be removed.",
)
@pass_cli
@handle_errors
def audit_prune(cli: CliContext, before: datetime, export_file: Path) -> None:
    """Remove records older than --before that a verified export covers."""
    sha = hashlib.sha256(export_file.read_bytes()).hexdigest()
    with cli.act("audit.prune", before=before.isoformat(), export_sha256=sha) as act:
        try:
            result = prune_records(
                act.session,
                cli.audit_config,
                before=before,
                export_path=export_file,
                public_keys=cli.audit_config.public_keys(),
            )
        except (PruneRefused, ExportError) as exc:
            raise AuditReadError("prune_refused", str(exc)) from None
        act.details.update(deleted=result.deleted, anchor_seq=result.anchor_seq)
    if result.anchor_seq is None:
        click.echo("nothing to prune")
    else:
        click.echo(
            f"removed {result.deleted} records up to seq {result.anchor_seq}; "
            "a signed anchor keeps the rest verifiable"
        )


@audit.command("checkpoint")
@pass_cli
@handle_errors
def audit_checkpoint(cli: CliContext) -> None:
    """Sign the chain's head now."""
    with cli.act("audit.checkpoint") as act:
        head = lock_head(act.session)
        write_checkpoint(act.session, head, signer=cli.audit_config.signer, kind="checkpoint")
        act.details.update(seq=head.seq)
    click.echo(f"checkpoint signed at seq {head.seq} (key {cli.audit_config.signer.key_id})")


@audit.command("public-key")
@pass_cli
@handle_errors
def audit_public_key(cli: CliContext) -> None:
    """Print the public key that verifies this instance's checkpoints (PEM)."""
    click.echo(cli.audit_config.signer.public_pem(), nl=False)
