"""Exports: JSONL that carries the checkpoints to verify it offline, and CSV for spreadsheets.
Both stream line by line, so memory stays bounded whatever the range."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from audit.events import RECORD_FIELDS, canonical_json, format_ts
from audit.query import iter_records, list_checkpoints, seq_range
from audit.signing import public_pem
from audit.verify import PROGRESS_EVERY, ChainStart, Progress, VerificationReport, verify_records

EXPORT_FORMAT = "predgate-audit-export/1"
ENTRY_TYPES = frozenset({"header", "record", "checkpoint"})


class ExportError(ValueError):
    """An export file cannot be read as a predgate audit export."""


def iter_jsonl(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    public_keys: Mapping[str, Ed25519PublicKey],
) -> Iterator[str]:
    """Lines of a JSONL export: a header, the records, then the checkpoints they need."""
    found = seq_range(session, since=since, until=until)
    first, last = found if found is not None else (None, None)
    header = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "since": format_ts(since) if since else None,
        "until": format_ts(until) if until else None,
        "first_seq": first,
        "last_seq": last,
        "exported_at": format_ts(datetime.now(UTC)),
        "public_keys": {key_id: public_pem(key) for key_id, key in public_keys.items()},
    }
    yield canonical_json(header) + "\n"
    if first is None:
        return
    for record in iter_records(session, first_seq=first, last_seq=last):
        yield canonical_json({"type": "record", **record}) + "\n"
    for checkpoint in list_checkpoints(session, first_seq=first, last_seq=last):
        yield canonical_json({"type": "checkpoint", **checkpoint}) + "\n"


def iter_csv(session: Session, *, since: datetime | None, until: datetime | None) -> Iterator[str]:
    """Lines of a CSV export: one header row, then one row per record."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush(row: list[Any]) -> str:
        writer.writerow(row)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield flush(list(RECORD_FIELDS))
    found = seq_range(session, since=since, until=until)
    if found is None:
        return
    for record in iter_records(session, first_seq=found[0], last_seq=found[1]):
        yield flush(["" if record[name] is None else record[name] for name in RECORD_FIELDS])


def write_export(
    lines: Iterable[str], path: Path, *, progress: Progress | None = None
) -> tuple[int, str]:
    """Write an export's lines to `path` (whole or not at all, replacing a file there); return
    (lines, SHA-256). ExportError, naming the path, when it cannot be written.
    `progress(lines written)` is called every PROGRESS_EVERY lines and once at the end."""
    partial = path.with_name(f".{path.name}.partial")
    digest, count = hashlib.sha256(), 0
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line)
                digest.update(line.encode())
                count += 1
                if progress is not None and count % PROGRESS_EVERY == 0:
                    progress(count)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ExportError(
            f"cannot write {path}: {exc.strerror or exc.__class__.__name__}"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(count)
    return count, digest.hexdigest()


def verify_export(
    path: Path,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    progress: Progress | None = None,
) -> VerificationReport:
    """Verify a JSONL export offline against trusted public keys; `progress` as for
    `verify_records`."""
    index: dict[str, int] = {}
    checkpoints: list[dict[str, Any]] = []
    for entry in _entries(path):
        if entry["type"] == "record":
            index[entry["hash"]] = int(entry["seq"])
        elif entry["type"] == "checkpoint":
            checkpoints.append(entry)
    records = (
        {name: entry.get(name) for name in RECORD_FIELDS}
        for entry in _entries(path)
        if entry["type"] == "record"
    )
    return verify_records(
        records,
        checkpoints,
        public_keys,
        start=ChainStart(None, None),
        seq_of_hash=index.get,
        progress=progress,
    )


def export_public_keys(path: Path) -> dict[str, str]:
    """The public keys an export's header lists (informational: trust comes from the caller)."""
    for entry in _entries(path):
        if entry["type"] == "header":
            keys = entry.get("public_keys") or {}
            return {str(k): str(v) for k, v in keys.items()}
    return {}


def export_seq_range(path: Path) -> tuple[int | None, int | None]:
    """The (first, last) record seq an export holds."""
    first = last = None
    for entry in _entries(path):
        if entry["type"] == "record":
            seq = int(entry["seq"])
            first = seq if first is None else first
            last = seq
    return first, last


def export_hash_at(path: Path, seq: int) -> str | None:
    """The hash an export holds for one seq."""
    for entry in _entries(path):
        if entry["type"] == "record" and int(entry["seq"]) == seq:
            return str(entry["hash"])
    return None


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    # Messages say where and what is wrong, never what the line holds: an export may be a
    # file of anything, secrets included.
    number, header_seen = 0, False
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                entry = _entry(raw, number)
                if not header_seen:
                    if entry.get("type") != "header" or entry.get("format") != EXPORT_FORMAT:
                        raise ExportError(
                            f"{path.name}: line {number} is not the header of a predgate audit "
                            f"export ({EXPORT_FORMAT}); is it a JSONL export?"
                        )
                    header_seen = True
                yield entry
    except OSError as exc:
        raise ExportError(
            f"cannot read {path.name}: {exc.strerror or exc.__class__.__name__}"
        ) from None
    if not header_seen:
        raise ExportError(f"{path.name} is empty: not a predgate audit export")


def _entry(raw: bytes, number: int) -> dict[str, Any]:
    try:
        entry = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ExportError(f"line {number} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"line {number} is not JSON ({exc.msg} at column {exc.colno}); an export made by "
            "`predgate audit export --format jsonl` has one JSON object per line"
        ) from None
    if not isinstance(entry, dict) or entry.get("type") not in ENTRY_TYPES:
        raise ExportError(f"line {number} is not an export entry (header, record or checkpoint)")
    return entry
