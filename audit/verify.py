"""Verification: recompute the chain, the signed checkpoints and the signed tree heads, and say
exactly what is wrong.

Works the same on the database and on a JSONL export; the caller supplies the records in seq
order, the checkpoints, the public keys, a way to find which seq holds a given hash, and the
walk that checks the tree heads (audit.tree_verify) as the records pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import checkpoint_statement
from audit.events import record_hash
from audit.signing import verify_statement

if TYPE_CHECKING:
    from audit.tree_verify import HeadWalk

MAX_FINDINGS = 50
# How often a progress callback hears how many records were checked: often enough for a bar,
# rarely enough to cost nothing per record.
PROGRESS_EVERY = 1000
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Finding:
    """One problem: where (seq), what kind, and a sentence for the operator."""

    seq: int
    kind: str  # modified, deleted, inserted, reordered, chain_broken, truncated, checkpoint_*,
    # tree_head_* (audit.tree_verify)
    message: str


@dataclass
class VerificationReport:
    records_checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints_checked: int = 0
    last_checkpoint_seq: int | None = None
    uncovered_tail: int = 0
    tree_heads_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, seq: int, kind: str, message: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(seq, kind, message))

    def summary(self) -> list[str]:
        """The report for an operator: `OK: ...`, or `FAILED: ...` and one line per finding."""
        span = f"seq {self.first_seq}..{self.last_seq}" if self.first_seq else "no records"
        if self.ok:
            return [
                f"OK: {self.records_checked} records ({span}), {self.checkpoints_checked} "
                f"signed checkpoints and {self.tree_heads_checked} signed tree heads verified; "
                f"{self.uncovered_tail} records at the tail not yet covered by a checkpoint"
            ]
        lines = [f"FAILED: {len(self.findings)} problem(s) in {span}"]
        lines += [f"  seq {f.seq}: {f.kind}: {f.message}" for f in self.findings]
        if self.uncovered_tail:
            lines.append(f"  {self.uncovered_tail} records at the tail not covered by a checkpoint")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records_checked": self.records_checked,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints_checked": self.checkpoints_checked,
            "last_checkpoint_seq": self.last_checkpoint_seq,
            "uncovered_tail": self.uncovered_tail,
            "tree_heads_checked": self.tree_heads_checked,
            "findings": [f.__dict__ for f in self.findings],
        }


@dataclass(frozen=True)
class ChainStart:
    """Where verification starts: the expected first seq and the hash it must follow.

    `prev_hash=None` trusts the first record's prev_hash (a partial range or an export).
    """

    seq: int | None
    prev_hash: str | None


def verify_records(
    records: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any]],
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    start: ChainStart,
    seq_of_hash: Callable[[str], int | None],
    head_seq: int | None = None,
    head_after: Callable[[], int] | None = None,
    progress: Progress | None = None,
    tree: HeadWalk | None = None,
) -> VerificationReport:
    """Check every record's hash and link, every checkpoint's signature and coverage, and,
    with `tree`, every signed tree head it walks to.

    `head_seq` is the head read before the records; `head_after` reads it again once they have
    been read, so records appended meanwhile (a log being written) are not taken for forged
    ones: only a record past the head read last can have been inserted behind the chain's back.
    `progress(records checked)` is called every PROGRESS_EVERY records and once at the end.
    """
    report = VerificationReport()
    checkpoint_list = sorted(checkpoints, key=lambda c: (c["seq"], c["kind"]))
    wanted = {c["seq"] for c in checkpoint_list}
    hash_at: dict[int, str] = {}
    expected, running, before_running = start.seq, start.prev_hash, None
    for record in records:
        seq = int(record["seq"])
        report.records_checked += 1
        if progress is not None and report.records_checked % PROGRESS_EVERY == 0:
            progress(report.records_checked)
        if report.first_seq is None:
            report.first_seq = seq
            expected = expected if expected is not None else seq
        assert expected is not None
        if seq < expected:
            report.add(seq, "reordered", f"seq {seq} appears again after seq {expected - 1}")
            continue
        if seq > expected:
            report.add(expected, "deleted", f"seq {expected}..{seq - 1} missing")
            running = None
        _check_record(record, seq, running, before_running, seq_of_hash, report)
        if tree is not None:
            tree.add(seq, record["hash"])
        if seq in wanted:
            hash_at[seq] = record["hash"]
        before_running, running = running, record["hash"]
        expected = seq + 1
        report.last_seq = seq
    if progress is not None:
        progress(report.records_checked)
    _check_checkpoints(checkpoint_list, public_keys, hash_at, report)
    _check_head(head_seq, head_after, report)
    if tree is not None:
        # After the chain's and checkpoints' findings, which keep their place under the cap.
        for finding in tree.finish():
            report.add(finding.seq, finding.kind, finding.message)
        report.tree_heads_checked = tree.checked
    return report


def _check_record(
    record: Mapping[str, Any],
    seq: int,
    running: str | None,
    before_running: str | None,
    seq_of_hash: Callable[[str], int | None],
    report: VerificationReport,
) -> None:
    if record_hash(dict(record)) != record["hash"]:
        origin = seq_of_hash(record["prev_hash"])
        if origin is not None and record_hash({**record, "seq": origin + 1}) == record["hash"]:
            if origin + 1 == seq - 1:
                report.add(
                    seq - 1,
                    "inserted",
                    f"seq {seq - 1} is not part of the chain: the record now at seq {seq} "
                    f"was written as seq {seq - 1}",
                )
            else:
                report.add(
                    seq, "reordered", f"the record at seq {seq} was written as seq {origin + 1}"
                )
        else:
            report.add(seq, "modified", f"seq {seq}: the record does not match its hash")
        return
    if running is not None and record["prev_hash"] != running:
        if before_running is not None and record["prev_hash"] == before_running:
            report.add(seq - 1, "inserted", f"seq {seq - 1} is not part of the chain")
        else:
            report.add(
                seq,
                "chain_broken",
                f"seq {seq} does not follow seq {seq - 1}: seq {seq - 1} was rewritten, "
                "or records were inserted or removed",
            )


def _check_checkpoints(
    checkpoints: list[Mapping[str, Any]],
    public_keys: Mapping[str, Ed25519PublicKey],
    hash_at: dict[int, str],
    report: VerificationReport,
) -> None:
    for checkpoint in checkpoints:
        seq = int(checkpoint["seq"])
        key = public_keys.get(checkpoint["key_id"])
        statement = checkpoint_statement(
            checkpoint["kind"], seq, checkpoint["hash"], checkpoint["ts"], checkpoint["key_id"]
        )
        if key is None:
            report.add(seq, "checkpoint_unknown_key", f"checkpoint at seq {seq}: unknown key")
            continue
        if not verify_statement(key, statement, checkpoint["signature"]):
            report.add(seq, "checkpoint_bad_signature", f"checkpoint at seq {seq}: bad signature")
            continue
        report.checkpoints_checked += 1
        if checkpoint["kind"] == "anchor" or report.first_seq is None or seq < report.first_seq:
            continue
        if report.last_seq is not None and seq > report.last_seq:
            report.add(
                report.last_seq + 1,
                "truncated",
                f"seq {report.last_seq + 1}..{seq} are missing but a checkpoint covers them",
            )
            continue
        if hash_at.get(seq) != checkpoint["hash"]:
            report.add(
                seq,
                "checkpoint_mismatch",
                f"the records up to seq {seq} differ from what its checkpoint signed",
            )
            continue
        report.last_checkpoint_seq = max(report.last_checkpoint_seq or 0, seq)
    if report.last_seq is not None:
        covered = report.last_checkpoint_seq or ((report.first_seq or 1) - 1)
        report.uncovered_tail = max(0, report.last_seq - covered)


def _check_head(
    head_seq: int | None, head_after: Callable[[], int] | None, report: VerificationReport
) -> None:
    if head_seq is None:
        return
    last = report.last_seq or 0
    if head_seq > last:
        report.add(
            last + 1, "truncated", f"seq {last + 1}..{head_seq} missing (the head is at {head_seq})"
        )
        return
    head = head_after() if head_after is not None else head_seq
    if head < last:
        report.add(head + 1, "inserted", f"seq {head + 1}..{last} lie past the chain head")
