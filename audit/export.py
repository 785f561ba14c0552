"""Exports: JSONL that carries the checkpoints and signed tree heads to verify it offline, and
CSV for spreadsheets. Both stream line by line, so memory stays bounded whatever the range."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from audit.events import RECORD_FIELDS, canonical_json, format_ts
from audit.query import iter_records, list_checkpoints, seq_range
from audit.signing import public_pem
from audit.tree_verify import HeadWalk, TreeStart, stored_heads, stored_start
from audit.verify import PROGRESS_EVERY, ChainStart, Progress, VerificationReport, verify_records

# Readers of /1 accept exports without tree entries (made before the Merkle tree) as they are.
EXPORT_FORMAT = "predgate-audit-export/1"
ENTRY_TYPES = frozenset({"header", "record", "checkpoint", "tree_frontier", "tree_head"})


class ExportError(ValueError):
    """An export file cannot be read as a predgate audit export."""


def iter_jsonl(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    public_keys: Mapping[str, Ed25519PublicKey],
) -> Iterator[str]:
    """Lines of a JSONL export: a header, the tree frontier before the range, the records, the
    checkpoints they need, then the signed tree heads whose sizes end within the range."""
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
    tree = stored_start(session, first)
    if tree is not None and tree[1].missing is None:
        yield canonical_json(_frontier_entry(tree[1], tree[0].origin)) + "\n"
    for record in iter_records(session, first_seq=first, last_seq=last):
        yield canonical_json({"type": "record", **record}) + "\n"
    for checkpoint in list_checkpoints(session, first_seq=first, last_seq=last):
        yield canonical_json({"type": "checkpoint", **checkpoint}) + "\n"
    if tree is not None:
        for head in stored_heads(session, tree[0], tree[1], last):
            yield canonical_json({"type": "tree_head", **head.as_json()}) + "\n"


def _frontier_entry(start: TreeStart, origin: str | None) -> dict[str, Any]:
    # Leaf `tree_size` of the log's tree is the record `next_seq`; `hashes` are the complete
    # subtrees of the leaves before it, from which the heads' roots are recomputed.
    return {
        "type": "tree_frontier",
        "tree_size": start.size,
        "next_seq": start.next_seq,
        "origin": origin,
        "hashes": [base64.b64encode(digest).decode() for digest in start.frontier],
    }


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
    heads: list[_ExportedHead] = []
    frontiers: list[dict[str, Any]] = []
    for entry in _entries(path):
        if entry["type"] == "record":
            index[entry["hash"]] = int(entry["seq"])
        elif entry["type"] == "checkpoint":
            checkpoints.append(entry)
        elif entry["type"] == "tree_head":
            heads.append(_head_of(entry, path))
        elif entry["type"] == "tree_frontier":
            frontiers.append(entry)
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
        tree=_export_walk(path, frontiers, heads, public_keys),
    )


def _export_walk(
    path: Path,
    frontiers: list[dict[str, Any]],
    heads: list[_ExportedHead],
    public_keys: Mapping[str, Ed25519PublicKey],
) -> HeadWalk | None:
    if not heads:
        return None  # an export made before the tree, or of records no head covers yet
    heads.sort(key=lambda head: head.size)
    if len(frontiers) > 1:
        raise ExportError(f"{path.name}: more than one tree_frontier entry")
    if not frontiers:
        first = export_seq_range(path)[0] or 1
        start = TreeStart(0, first, missing="the export carries no tree frontier")
        return HeadWalk(heads, public_keys, start)
    entry = frontiers[0]
    size, next_seq, hashes = entry.get("tree_size"), entry.get("next_seq"), entry.get("hashes")
    origin = entry.get("origin")
    if (
        not _is_count(size)
        or not _is_count(next_seq)
        or not isinstance(hashes, list)
        or not (origin is None or isinstance(origin, str))
    ):
        raise ExportError(f"{path.name}: the tree_frontier entry lacks its size, seq or hashes")
    frontier = tuple(_b64(digest, path, "tree_frontier") for digest in hashes)
    return HeadWalk(heads, public_keys, TreeStart(size, next_seq, frontier), origin=origin)


@dataclass(frozen=True)
class _ExportedHead:
    # What an entry states; `signed_at` is left out: the checkpoint does not sign it.
    size: int
    root: bytes
    note: str
    key_id: str


def _head_of(entry: Mapping[str, Any], path: Path) -> _ExportedHead:
    size, note, key_id = entry.get("tree_size"), entry.get("checkpoint"), entry.get("key_id")
    if not _is_count(size) or not isinstance(note, str) or not isinstance(key_id, str):
        raise ExportError(f"{path.name}: a tree_head entry lacks its size, checkpoint or key id")
    return _ExportedHead(size, _b64(entry.get("root_hash"), path, "tree_head"), note, key_id)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _b64(text: object, path: Path, entry_type: str) -> bytes:
    try:
        if isinstance(text, str):
            return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    raise ExportError(f"{path.name}: a {entry_type} entry holds a hash that is not base64")


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
        raise ExportError(
            f"line {number} is not an export entry (header, record, checkpoint, tree_frontier "
            "or tree_head)"
        )
    return entry
