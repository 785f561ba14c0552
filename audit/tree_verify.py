"""Signed tree heads checked against the records they sign, in one pass over the records.

The walk keeps only the Merkle frontier: the hashes of the complete subtrees on the tree's right
border (the nodes of `range_nodes(0, size)`, O(log n) of them). Each record's leaf joins it in
seq order, and when the leaf count reaches a head's size, the folded frontier must be the root
that head signs. A walk over a range starts from the frontier of the leaves before it (stored
nodes on the database, a `tree_frontier` entry in an export): the signed roots then bind the
range's records whatever those leaves were.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from audit.merkle import fold, range_nodes
from audit.receipt_verifier import ReceiptInvalid, leaf_hash, node_hash, verify_checkpoint
from audit.signing import public_pem
from audit.tree import Executor, TreeHead, TreeState, heads_between, read_nodes, read_tree
from audit.verify import MAX_FINDINGS, Finding

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# Heads read from the database per query, by leaf count: a window holds at most this many heads.
HEAD_WINDOW = 10_000


class SignedHead(Protocol):
    """A tree head as a store or an export states it (TreeHead is one)."""

    @property
    def size(self) -> int: ...
    @property
    def root(self) -> bytes: ...
    @property
    def note(self) -> str: ...
    @property
    def key_id(self) -> str: ...


@dataclass(frozen=True)
class TreeStart:
    """Where a walk begins: `size` leaves come before the record with seq `next_seq`, and
    `frontier` holds their complete subtrees, left to right. `missing` says why the frontier is
    unavailable (then no head past `size` can be checked)."""

    size: int
    next_seq: int
    frontier: tuple[bytes, ...] = ()
    missing: str | None = None


class HeadWalk:
    """Checks signed heads, smallest first, as records are fed in seq order with `add`;
    `finish` then reports the heads the records did not reach."""

    def __init__(
        self,
        heads: Iterable[SignedHead],
        public_keys: Mapping[str, Ed25519PublicKey],
        start: TreeStart,
        *,
        origin: str | None = None,
    ) -> None:
        self.checked = 0
        self.findings: list[Finding] = []
        self._heads = iter(heads)
        self._pending = next(self._heads, None)
        self._pems = {key_id: public_pem(key) for key_id, key in public_keys.items()}
        self._origin = origin
        self._leaf0 = start.next_seq - start.size
        self._count = start.size
        self._frontier = list(start.frontier)
        self._stopped: tuple[int, str] | None = None
        if start.missing is not None:
            self._stopped = (start.next_seq, start.missing)
        elif len(self._frontier) != len(range_nodes(0, start.size)) or any(
            len(digest) != 32 for digest in self._frontier
        ):
            self._stopped = (start.next_seq, "the tree frontier does not fit its size")
        else:
            self._check_due()

    def add(self, seq: int, record_hash: object) -> None:
        """The next record in seq order, by its stored hash (hex)."""
        if self._stopped is not None:
            return
        index = seq - self._leaf0
        if index < self._count:
            return  # before the tree's first leaf, or before the range's frontier
        if index > self._count:
            expected = self._leaf0 + self._count
            gap = f"seq {expected} is" if seq - 1 == expected else f"seq {expected}..{seq - 1} are"
            self._stopped = (expected, f"{gap} missing")
            return
        # Binary addition: the new leaf merges with the subtrees it completes.
        digest, carry = _leaf(record_hash), self._count
        while carry & 1:
            digest = node_hash(self._frontier.pop(), digest)
            carry >>= 1
        self._frontier.append(digest)
        self._count += 1
        self._check_due()

    def finish(self) -> list[Finding]:
        """The findings, once the records are exhausted: heads past the last record fed are
        beyond the records, or cannot be checked when the walk stopped at a gap."""
        rest = [] if self._pending is None else [self._pending]
        self._pending = None
        sizes = [head.size for head in [*rest, *self._heads]]
        if sizes and self._stopped is not None:
            seq, why = self._stopped
            self._add(
                seq,
                "tree_head_unverifiable",
                f"{len(sizes)} signed tree head(s) from size {sizes[0]} on cannot be checked: "
                f"{why}",
            )
        elif sizes:
            first_missing = self._leaf0 + self._count
            self._add(
                first_missing,
                "tree_head_beyond_records",
                f"{len(sizes)} signed tree head(s), up to size {max(sizes)}, cover seq "
                f"{first_missing}..{self._leaf0 + max(sizes) - 1}, which are missing",
            )
        return self.findings

    def _check_due(self) -> None:
        root = None
        while self._pending is not None and self._pending.size <= self._count:
            head, self._pending = self._pending, next(self._heads, None)
            if head.size < self._count:
                self._add(
                    self._leaf0 + head.size - 1,
                    "tree_head_unverifiable",
                    f"tree head of size {head.size}: it covers none of the records checked",
                )
                continue
            root = root if root is not None else fold(self._frontier)
            self._check(head, root)

    def _check(self, head: SignedHead, root: bytes) -> None:
        seq = self._leaf0 + head.size - 1
        name = f"tree head of size {head.size} (seq {seq})"
        pem = self._pems.get(head.key_id)
        if pem is None:
            self._add(seq, "tree_head_unknown_key", f"{name}: unknown key")
            return
        try:
            signed = verify_checkpoint(head.note, pem, origin=self._origin)
        except ReceiptInvalid as exc:
            if exc.reason == "checkpoint_wrong_log":
                self._add(seq, "tree_head_wrong_log", f"{name}: the checkpoint names another log")
            else:
                self._add(seq, "tree_head_signature_invalid", f"{name}: {exc}")
            return
        if signed.size != head.size or signed.root != head.root:
            self._add(
                seq,
                "tree_head_mismatch",
                f"{name}: its stated size or root differs from what its checkpoint signs",
            )
        elif signed.root != root:
            self._add(
                seq,
                "tree_head_mismatch",
                f"{name}: the records up to seq {seq} differ from what it signed",
            )
        else:
            self.checked += 1

    def _add(self, seq: int, kind: str, message: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(seq, kind, message))


def _leaf(record_hash: object) -> bytes:
    if isinstance(record_hash, str) and len(record_hash) == 64:
        try:
            return leaf_hash(bytes.fromhex(record_hash))
        except ValueError:
            pass
    # Not a SHA-256 in hex, so never a leaf the log signed: the heads past it mismatch.
    return leaf_hash(str(record_hash).encode())


def stored_start(executor: Executor, first_seq: int) -> tuple[TreeState, TreeStart] | None:
    """The stored tree and the frontier of the leaves before the record `first_seq` (None
    while the tree has not begun)."""
    tree = read_tree(executor)
    if tree.first_seq is None:
        return None
    size = max(0, first_seq - tree.first_seq)
    nodes = range_nodes(0, size)
    found = read_nodes(executor, nodes) if size <= tree.size else {}
    next_seq = tree.first_seq + size
    if len(found) != len(nodes):
        missing = f"the stored tree nodes before seq {next_seq} are missing"
        return tree, TreeStart(size, next_seq, missing=missing)
    return tree, TreeStart(size, next_seq, tuple(found[node] for node in nodes))


def stored_heads(
    executor: Executor, tree: TreeState, start: TreeStart, last_seq: int | None
) -> Iterator[TreeHead]:
    """The signed heads over the records from `start` to `last_seq` (to the tree's size when
    None), smallest first, read a window at a time."""
    high = tree.size
    if last_seq is not None:
        high = min(high, last_seq - (start.next_seq - start.size) + 1)
    low = start.size + 1
    while low <= high:
        yield from heads_between(executor, low, min(high, low + HEAD_WINDOW - 1))
        low += HEAD_WINDOW


def database_walk(
    executor: Executor,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    first_seq: int,
    last_seq: int | None,
) -> HeadWalk | None:
    """The walk that checks the stored heads over the records `first_seq`..`last_seq` (to the
    tail when None: then every head up to the tree's current size must be reached)."""
    found = stored_start(executor, first_seq)
    if found is None:
        return None
    tree, start = found
    heads = stored_heads(executor, tree, start, last_seq)
    return HeadWalk(heads, public_keys, start, origin=tree.origin)
