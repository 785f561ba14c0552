"""The Merkle tree's hashing and proofs against RFC 6962 / RFC 9162: the published test vectors
(the 8-leaf tree of the certificate-transparency reference implementations), a direct
transcription of the RFC's recursive definitions, and the partner-side verifier on every size
up to a few hundred leaves."""

from __future__ import annotations

import hashlib

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    append_leaves,
    consistency_ranges,
    fold,
    hashes_for,
    inclusion_ranges,
    range_nodes,
)
from audit.receipt_verifier import (
    ReceiptInvalid,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
)

# RFC 6962 test inputs and the roots of their first n leaves (certificate-transparency's
# merkle_tree_test and Trillian's rfc6962 vectors).
INPUTS = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, path) and (old size, new size, proof) from the same sources.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


class Tree:
    """A tree grown leaf by leaf through append_leaves, its nodes kept in a dict (the store)."""

    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries
        self.nodes: dict[tuple[int, int], bytes] = {}
        for size, entry in enumerate(entries):
            self.nodes.update(append_leaves(size, [leaf_hash(entry)], self.nodes.__getitem__))

    def root(self, size: int) -> bytes:
        return fold([self.nodes[node] for node in range_nodes(0, size)])

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return hashes_for(inclusion_ranges(index, size), self.nodes)

    def consistency(self, old: int, new: int) -> list[bytes]:
        return hashes_for(consistency_ranges(old, new), self.nodes)


# RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1, transcribed as written: the reference the stored-node
# arithmetic must agree with.
def _k(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def rfc_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:])).digest()


def rfc_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*rfc_path(m, d[:k]), rfc_mth(d[k:])]
    return [*rfc_path(m - k, d[k:]), rfc_mth(d[:k])]


def rfc_subproof(m: int, d: list[bytes], whole: bool) -> list[bytes]:
    if m == len(d):
        return [] if whole else [rfc_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*rfc_subproof(m, d[:k], whole), rfc_mth(d[k:])]
    return [*rfc_subproof(m - k, d[k:], False), rfc_mth(d[:k])]


def entries(count: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(count)]


def test_the_roots_of_the_rfc_6962_test_vectors() -> None:
    tree = Tree(INPUTS)
    assert [tree.root(n).hex() for n in range(1, 9)] == ROOTS
    assert fold([]) == EMPTY_ROOT == rfc_mth([])


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_inclusion_proofs_of_the_test_vectors(index: int, size: int, path: list[str]) -> None:
    tree = Tree(INPUTS)
    proof = tree.inclusion(index, size)
    assert [p.hex() for p in proof] == path
    leaf = leaf_hash(INPUTS[index])
    assert root_from_inclusion_proof(index, size, leaf, proof).hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY_VECTORS)
def test_consistency_proofs_of_the_test_vectors(old: int, new: int, expected: list[str]) -> None:
    tree = Tree(INPUTS)
    proof = tree.consistency(old, new)
    assert [p.hex() for p in proof] == expected
    verify_consistency(old, new, tree.root(old), tree.root(new), proof)


def test_stored_nodes_give_the_rfc_definitions_for_every_size_and_leaf() -> None:
    data = entries(70)
    tree = Tree(data)
    for size in range(1, len(data) + 1):
        assert tree.root(size) == rfc_mth(data[:size])
        for index in range(size):
            assert tree.inclusion(index, size) == rfc_path(index, data[:size])
        for old in range(1, size):
            assert tree.consistency(old, size) == rfc_subproof(old, data[:size], True)


def test_every_proof_up_to_three_hundred_leaves_verifies() -> None:
    tree = Tree(entries(300))
    roots = [tree.root(size) for size in range(301)]
    for size in range(1, 301):
        for index in range(size):
            leaf = leaf_hash(tree.entries[index])
            proof = tree.inclusion(index, size)
            assert root_from_inclusion_proof(index, size, leaf, proof) == roots[size]
        for old in range(1, size + 1):
            verify_consistency(old, size, roots[old], roots[size], tree.consistency(old, size))


def test_a_wrong_leaf_index_or_proof_does_not_reach_the_root() -> None:
    tree = Tree(entries(37))
    root = tree.root(37)
    leaf = leaf_hash(tree.entries[12])
    proof = tree.inclusion(12, 37)
    assert root_from_inclusion_proof(12, 37, leaf, proof) == root
    assert root_from_inclusion_proof(13, 37, leaf, proof) != root  # the record moved
    assert root_from_inclusion_proof(12, 37, leaf_hash(b"forged"), proof) != root
    with pytest.raises(ReceiptInvalid, match="too short"):
        root_from_inclusion_proof(12, 37, leaf, proof[:-1])
    with pytest.raises(ReceiptInvalid, match="too long"):
        root_from_inclusion_proof(12, 37, leaf, [*proof, proof[0]])
    with pytest.raises(ReceiptInvalid, match="outside"):
        root_from_inclusion_proof(37, 37, leaf, proof)


def test_a_reordered_log_has_another_root() -> None:
    data = entries(20)
    swapped = [*data[:5], data[6], data[5], *data[7:]]
    assert Tree(data).root(20) != Tree(swapped).root(20)


def test_a_forked_log_fails_the_consistency_check() -> None:
    honest = Tree(entries(40))
    # Same first 25 entries, then a rewritten history: a second head signed for another tree.
    forked = Tree([*entries(25), *(b"rewritten" + bytes([i]) for i in range(15))])
    old_root = honest.root(30)
    with pytest.raises(ReceiptInvalid) as raised:
        verify_consistency(30, 40, old_root, forked.root(40), forked.consistency(30, 40))
    assert raised.value.reason == "consistency_invalid"
    # And one size shown with two roots is a fork too.
    with pytest.raises(ReceiptInvalid, match="fork"):
        verify_consistency(40, 40, honest.root(40), forked.root(40), [])
    # The honest continuation passes.
    verify_consistency(30, 40, old_root, honest.root(40), honest.consistency(30, 40))


def test_node_hashing_uses_the_rfc_prefixes() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
