"""The Merkle hashing of docs/PROTOCOL.md §3 against eth-abi's encoder and a naive tree."""

from __future__ import annotations

from eth_abi import encode
from hypothesis import given
from hypothesis import strategies as st

from matching.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    balance_leaf,
    hash_pair,
    keccak,
    root_of,
    verify,
    withdrawal_leaf,
)

ALICE = bytes.fromhex("7e5f4552091a69125d5dfcb7b8c2659029395bdf")
USDC = bytes.fromhex("00000000000000000000000000000000000000aa")


def naive_root(leaves: list[bytes]) -> bytes:
    level = list(leaves)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        level = [
            hash_pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0]


def test_leaves_match_abi_encoding() -> None:
    encoded = encode(["address", "address", "uint256"], [ALICE, USDC, 10**24])
    assert balance_leaf(ALICE, USDC, 10**24) == keccak(keccak(encoded))
    encoded = encode(["uint256", "address", "address", "uint256"], [7, ALICE, USDC, 5])
    assert withdrawal_leaf(7, ALICE, USDC, 5) == keccak(keccak(encoded))


def test_vector() -> None:
    # Leaf hashes cross-checked with @openzeppelin/merkle-tree 1.0.8 (StandardMerkleTree
    # leafHash of the same values); pinned here and in docs/PROTOCOL.md §3.
    leaf = balance_leaf(ALICE, USDC, 1_000_000)
    assert leaf.hex() == "e31b84a8a09f65efe7f6945abb451de89600bd6229b06a4637af42ac23b4060d"
    wleaf = withdrawal_leaf(1, ALICE, USDC, 5)
    assert wleaf.hex() == "911c85cc51b207ae0430478610b5191f6c9aa4e8732a243e3fe0c394aac6fa53"
    root = MerkleTree([leaf, wleaf]).root()
    assert root.hex() == "0b00142b6184fd274c1039dc3db657b2c7f51b1d9150709ed6e7013f8fb6af13"
    assert root_of([]) == EMPTY_ROOT
    assert root_of([leaf]) == leaf


def test_pair_hash_is_commutative_and_sorted() -> None:
    a, b = keccak(b"a"), keccak(b"b")
    assert hash_pair(a, b) == hash_pair(b, a) == keccak(min(a, b) + max(a, b))


@given(st.lists(st.binary(min_size=1, max_size=8), max_size=70), st.data())
def test_incremental_tree_matches_naive(raw: list[bytes], data: st.DataObject) -> None:
    leaves = [keccak(x) for x in raw]
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
        if data.draw(st.booleans()):
            tree.root()
    if leaves:
        for _ in range(data.draw(st.integers(0, 5))):
            i = data.draw(st.integers(0, len(leaves) - 1))
            leaves[i] = keccak(leaves[i])
            tree.update(i, leaves[i])
    root = tree.root()
    assert root == naive_root(leaves)
    for i, leaf in enumerate(leaves):
        proof = tree.proof(i)
        assert verify(proof, root, leaf)
        assert not verify(proof, root, keccak(leaf))
        if proof:
            tampered = [keccak(proof[0]), *proof[1:]]
            assert not verify(tampered, root, leaf)
