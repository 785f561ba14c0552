"""`predgate receipts`: check a partner's receipt offline, as the partner would.

Needs neither a database nor an instance: the receipt file and the log's public key only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from audit.receipt_verifier import ReceiptInvalid, verify_receipt


@click.group()
def receipts() -> None:
    """Partner receipts: proofs of what the gateway answered."""


@receipts.command("verify")
@click.argument("receipt_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The audit log's Ed25519 public key, PEM (GET /v1/log/public-key, or "
    "`predgate audit public-key` on the gateway).",
)
@click.option(
    "--origin",
    default=None,
    help="Also require the checkpoint to name this log (its first line).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def receipts_verify(
    receipt_file: Path, public_key_file: Path, origin: str | None, as_json: bool
) -> None:
    """Check RECEIPT_FILE (the body of GET /v1/receipts/{request_id}) offline: the record
    matches its hash, the checkpoint is signed by the key, and the proof puts the record in the
    signed tree. Exits 1 when it does not verify."""
    receipt = _read_json(receipt_file)
    pem = _read_text(public_key_file, "--public-key")
    try:
        verified = verify_receipt(receipt, pem, origin=origin)
    except ReceiptInvalid as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "reason": exc.reason, "message": str(exc)}))
        else:
            click.echo(f"FAILED: {exc} ({exc.reason})")
        sys.exit(1)
    record = verified.record
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "seq": verified.seq,
                    "request_id": record["request_id"],
                    "http_status": record["http_status"],
                    "ts": record["ts"],
                    "model": record["model_name"],
                    "model_version": record["model_version"],
                    "model_sha256": record["model_sha256"],
                    "log": verified.checkpoint.origin,
                    "tree_size": verified.checkpoint.size,
                }
            )
        )
        return
    model = (
        f"{record['model_name']}@{record['model_version']} (sha256 {record['model_sha256']})"
        if record["model_name"]
        else "no model"
    )
    click.echo(
        f"OK: request {record['request_id']} answered {record['http_status']} at "
        f"{record['ts']} by {model}; record seq {verified.seq} is in the log "
        f"{verified.checkpoint.origin} of {verified.checkpoint.size} records signed by this key"
    )


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise click.ClickException(f"{what}: cannot read {path}: {reason}") from None


def _read_json(path: Path) -> dict[str, object]:
    text = _read_text(path, "RECEIPT_FILE")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{path} is not JSON ({exc.msg} at line {exc.lineno}): save the body of "
            "GET /v1/receipts/{{request_id}} as it came"
        ) from None
    if not isinstance(value, dict):
        raise click.ClickException(f"{path} is not a receipt (a JSON object)")
    return value
