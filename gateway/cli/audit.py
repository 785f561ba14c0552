"""`predgate audit`: query, export, verify and prune the audit log. Every read of the log is
itself recorded in it."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from audit.chain import lock_head, write_checkpoint
from audit.events import EVENT_TYPES, OUTCOMES
from audit.query import (
    NEWEST,
    OLDEST,
    AuditFilter,
    InvalidQuery,
    RecordPage,
    check_time_range,
    page_records,
    seq_range,
)
from audit.recorder import verify_database
from audit.signing import key_id_of, load_public_key
from auth.tenants import get_tenant, list_tenants
from gateway.cli.context import (
    AuditReadError,
    CliContext,
    echo_json,
    echo_table,
    handle_errors,
    pass_cli,
)
from gateway.cli.progress import progress_bar
from gateway.presenters import audit_records_json

# Exports, pruning and verification load `cryptography`: they are imported by the commands
# that use them, so that `audit query` does not pay for it (bench/cli_start.py).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from sqlalchemy.orm import Session

    from audit.verify import VerificationReport

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
@click.option("--tenant", help="Only records of this tenant (by name).")
@_time_option("--since")
@_time_option("--until")
@click.option(
    "--event-type", type=click.Choice(sorted(EVENT_TYPES)), help="Only records of this event."
)
@click.option("--outcome", type=click.Choice(sorted(OUTCOMES)), help="Only this outcome.")
@click.option("--status", type=int, help="Only records answered with this HTTP status.")
@click.option("--principal", help="Only records of this principal (key or client id).")
@click.option("--request-id", help="Only the record of this request id.")
@click.option(
    "--order",
    type=click.Choice([NEWEST, OLDEST]),
    help="newest first (the default) or oldest first; a --cursor keeps its walk's order.",
)
@click.option("--cursor", help="Continue where the previous page stopped (it prints the cursor).")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="At most this many records; says how many more there are when it cuts.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the records as CSV.")
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
    order: str | None,
    cursor: str | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Find audit records, newest first, a page at a time."""
    _check_range(since, until)
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
            "order": order,
            "limit": limit,
        }.items()
        if v is not None
    }
    with cli.act("audit.read", filters=filters) as act:
        tenant_id = get_tenant(act.session, tenant).id if tenant else None
        audit_filter = AuditFilter(
            tenant_id=tenant_id,
            since=since,
            until=until,
            event_type=event_type,
            outcome=outcome,
            http_status=status,
            principal_id=principal,
            request_id=request_id,
            limit=limit,
        )
        try:
            page = page_records(
                act.session, audit_filter, order=order, cursor=cursor, count_remaining=True
            )
        except InvalidQuery as exc:
            raise AuditReadError(exc.code, f"--{exc.field}: {exc}") from None
        act.tenant_id = tenant_id
        act.details["returned"] = len(page.records)
        if cursor is not None:  # recorded once it proved to be one: a refused one holds anything
            act.details["cursor"] = cursor
        records = audit_records_json(page.records, list_tenants(act.session))
    _echo_records(records, as_json=as_json, as_csv=as_csv)
    _echo_more(page)


def _echo_records(records: list[dict[str, Any]], *, as_json: bool, as_csv: bool) -> None:
    if as_json:
        echo_json(records)
    elif as_csv:
        fields = list(records[0]) if records else ["seq"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields)
        writer.writeheader()
        # A cell holds text: details as the JSON it is stored as.
        writer.writerows(
            {**r, "details": json.dumps(r["details"]) if r["details"] is not None else None}
            for r in records
        )
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
                    _tenant_cell(r),
                    r["principal_id"],
                    r["route"],
                ]
                for r in records
            ],
        )


def _tenant_cell(record: dict[str, Any]) -> str | None:
    if record["tenant_id"] is None:
        return None
    return f"{record['tenant'] or '?'} ({record['tenant_id']})"


def _echo_more(page: RecordPage) -> None:
    # On stderr: stdout stays the records alone (a table, JSON or CSV to pipe on).
    if page.next_cursor is not None:
        click.echo(f"{page.remaining} more: use --cursor {page.next_cursor}", err=True)


def _check_range(since: datetime | None, until: datetime | None) -> None:
    try:
        check_time_range(since, until)
    except InvalidQuery:
        raise click.ClickException("--until must be later than --since") from None


@audit.command("export")
@_time_option("--since", required=True)
@_time_option("--until", required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="JSONL carries the checkpoints that verify it offline; CSV is for spreadsheets.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write, in a directory that exists.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@pass_cli
@handle_errors
def audit_export(
    cli: CliContext, since: datetime, until: datetime, fmt: str, out: Path, force: bool
) -> None:
    """Export a time range; JSONL carries the checkpoints to verify it offline."""
    from audit.export import ExportError, iter_csv, iter_jsonl, write_export

    _check_range(since, until)
    _check_out(out, force=force)
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
        with progress_bar("exporting", _records_in(act.session, since, until)) as update:
            try:
                count, sha256 = write_export(lines, out, progress=update)
            except ExportError as exc:
                raise AuditReadError("export_failed", str(exc)) from None
        act.details.update(lines=count, sha256=sha256)
    click.echo(f"exported {count} lines to {out} (sha256 {sha256})")


def _check_out(out: Path, *, force: bool) -> None:
    if not out.parent.is_dir():
        raise click.ClickException(f"--out: the directory {out.parent} does not exist")
    if out.is_dir():
        raise click.ClickException(f"--out: {out} is a directory")
    if out.exists() and not force:
        raise click.ClickException(f"--out: {out} exists; pass --force to overwrite it")


def _records_in(session: Session, since: datetime | None, until: datetime | None) -> int | None:
    # The bar's total: records are numbered without gaps, so a seq range counts them.
    found = seq_range(session, since=since, until=until)
    return found[1] - found[0] + 1 if found is not None else 0


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
    help="PEM public key(s) to trust; required with --file; default: this instance's signing key.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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
    """Recompute the chain, checkpoints and signed tree heads; exit non-zero on any failure."""
    from audit.export import ExportError, verify_export

    _check_range(since, until)
    if public_key_files:
        keys = {}
        for path in public_key_files:
            key = _read_public_key(path)
            keys[key_id_of(key)] = key
    elif export_file is not None:
        # Offline there is no instance to take the key from, and none may be created here.
        raise click.ClickException(
            "verifying an export offline needs --public-key PEM_FILE, the key that signed its "
            "checkpoints (`predgate audit public-key` prints an instance's)"
        )
    else:
        keys = cli.audit_config.public_keys()
    if export_file is not None:
        try:
            with progress_bar("verifying", _lines_in(export_file)) as update:
                report = verify_export(export_file, keys, progress=update)
        except ExportError as exc:
            raise AuditReadError("invalid_export", str(exc)) from None
        _print_report(report, as_json)
        if not report.ok:
            sys.exit(1)
        return
    with cli.act(
        "audit.verify", since=since and since.isoformat(), until=until and until.isoformat()
    ) as act:
        with progress_bar("verifying", _records_in(act.session, since, until)) as update:
            report = verify_database(act.session, keys, since=since, until=until, progress=update)
        act.details.update(
            ok=report.ok,
            records=report.records_checked,
            findings=len(report.findings),
            uncovered_tail=report.uncovered_tail,
        )
    _print_report(report, as_json)
    if not report.ok:
        sys.exit(1)


def _read_public_key(path: Path) -> Ed25519PublicKey:
    # One line for the operator, and never the file's content: it may be a private key.
    try:
        return load_public_key(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise click.ClickException(
            f"--public-key: {path} is not an Ed25519 public key in PEM form "
            "(`predgate audit public-key` prints one)"
        ) from None


def _lines_in(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return None  # verifying says what is wrong with the file


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
    from audit.export import ExportError
    from audit.prune import PruneRefused, prune_records

    try:
        content = export_file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"--export: cannot read {export_file}: {exc.strerror}") from None
    sha = hashlib.sha256(content).hexdigest()
    with cli.act("audit.prune", before=before.isoformat(), export_sha256=sha) as act:
        try:
            with progress_bar("verifying the export", content.count(b"\n")) as update:
                result = prune_records(
                    act.session,
                    cli.audit_config,
                    before=before,
                    export_path=export_file,
                    public_keys=cli.audit_config.public_keys(),
                    progress=update,
                    origin=cli.settings.log_origin or None,
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
