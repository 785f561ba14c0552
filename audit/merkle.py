"""RFC 9162 Merkle tree arithmetic over stored nodes: which nodes a root or proof needs, how
to combine them, and how appending leaves adds nodes.

The store keeps one hash per complete, aligned subtree: node (level, index) covers leaves
[index * 2**level, (index + 1) * 2**level). Every root and proof of any tree size is a fold
over O(log n) of those nodes, so nothing here ever rehashes leaves. Hashing itself is
`audit.receipt_verifier`'s, the code partners run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from audit.receipt_verifier import node_hash

NodeId = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)
EMPTY_ROOT = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def _split(size: int) -> int:
    """The largest power of two smaller than `size` (> 1): where RFC 9162 splits a tree."""
    return 1 << ((size - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeId]:
    """The complete subtrees, left to right, that make up leaves [start, end).

    Every range RFC 9162's recursion visits starts at a multiple of a power of two at least
    as large as the range, so it splits into aligned subtrees by the binary digits of its size.
    """
    nodes = []
    while start < end:
        size = 1 << ((end - start).bit_length() - 1)
        level = size.bit_length() - 1
        if start % size:
            raise ValueError(f"leaves [{start}, {end}) do not start on a subtree boundary")
        nodes.append((level, start >> level))
        start += size
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its complete subtrees, left to right (RFC 9162 splits the largest
    power of two off the left, so the rest nests to the right)."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """PATH(index, D[0:size]) as the leaf ranges whose MTHs it lists, leaf end first."""
    if not 0 <= index < size:
        raise ValueError("the leaf lies outside the tree")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(old: int, new: int) -> list[Range]:
    """PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1) as leaf ranges; empty when there is nothing to
    prove (old is 0 or equals new)."""
    if not 0 <= old <= new:
        raise ValueError("the older tree is larger than the newer one")
    if old in (0, new):
        return []
    ranges: list[Range] = []
    start, end, m, whole = 0, new, old, True
    while True:
        size = end - start
        if m == size:
            if not whole:
                ranges.append((start, end))
            break
        k = _split(size)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, whole = start + k, m - k, False
    ranges.reverse()
    return ranges


def nodes_for(ranges: Iterable[Range]) -> set[NodeId]:
    """Every stored node the MTHs of these ranges need."""
    return {node for start, end in ranges for node in range_nodes(start, end)}


def hashes_for(ranges: Iterable[Range], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """The MTH of each range, from stored nodes (KeyError when one is missing)."""
    return [fold([nodes[node] for node in range_nodes(start, end)]) for start, end in ranges]


def append_leaves(
    size: int, leaves: Sequence[bytes], stored: Callable[[NodeId], bytes]
) -> dict[NodeId, bytes]:
    """The nodes that appending `leaves` to a tree of `size` leaves completes.

    `stored` reads a node of the existing tree; only the left edge of its right border (the
    nodes of range_nodes(0, size)) is ever asked for.
    """
    added: dict[NodeId, bytes] = {}
    for offset, leaf in enumerate(leaves):
        level, index, digest = 0, size + offset, leaf
        added[(0, index)] = digest
        while index & 1:
            sibling = (level, index - 1)
            left = added[sibling] if sibling in added else stored(sibling)
            digest = node_hash(left, digest)
            level, index = level + 1, index >> 1
            added[(level, index)] = digest
    return added
