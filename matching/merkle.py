"""Keccak Merkle trees that the settlement contract verifies (docs/PROTOCOL.md §3).

OpenZeppelin's conventions: leaves are hashed twice (so a 32-byte leaf preimage can never
pass for a 64-byte inner node), pairs are hashed sorted, so `MerkleProof.verify` checks a
proof without position bits. The tree is positional and append-only: an odd last node is
carried up unchanged, and `root()` recomputes only the paths of leaves that changed since
the last call, which is what keeps checkpoints cheap when few balances move.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sha3

EMPTY_ROOT = bytes(32)
_U256_MAX = (1 << 256) - 1


def keccak(data: bytes) -> bytes:
    digest: bytes = sha3.keccak_256(data).digest()
    return digest


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin `Hashes.commutativeKeccak256`: bytes32 compare as big-endian ints."""
    return keccak(a + b) if a <= b else keccak(b + a)


def _word_address(address: bytes) -> bytes:
    if len(address) != 20:
        raise ValueError(f"address must be 20 bytes, got {len(address)}")
    return bytes(12) + address


def _word_uint(value: int) -> bytes:
    if not 0 <= value <= _U256_MAX:
        raise ValueError(f"uint256 out of range: {value}")
    return value.to_bytes(32, "big")


def _leaf(encoded: bytes) -> bytes:
    return keccak(keccak(encoded))


def balance_leaf(account: bytes, token: bytes, balance: int) -> bytes:
    """keccak(keccak(abi.encode(address account, address token, uint256 balance)))."""
    return _leaf(_word_address(account) + _word_address(token) + _word_uint(balance))


# The first word of a position leaf's preimage: keccak256("seqnet.position.v1"). A
# position leaf hashes 6 words (192 bytes), a balance leaf 3 (96), a withdrawal leaf 4
# (128): no preimage of one kind has the length of another, so a position leaf can never
# pass for a balance leaf in the contract's exit proof (and the tag separates it from any
# future 6-word leaf).
POSITION_TAG = keccak(b"seqnet.position.v1")


def _word_int(value: int) -> bytes:
    if not -(1 << 255) <= value < (1 << 255):
        raise ValueError(f"int256 out of range: {value}")
    return (value % (1 << 256)).to_bytes(32, "big")


def position_leaf(account: bytes, market: int, size: int, entry: int, margin: int) -> bytes:
    """keccak(keccak(abi.encode(bytes32 tag, address account, uint256 market, int256 size,
    int256 entry_notional, int256 isolated_margin))): sizes in base (contract) units,
    notionals and margin in collateral engine units (docs/MATCHING.md)."""
    return _leaf(
        POSITION_TAG
        + _word_address(account)
        + _word_uint(market)
        + _word_int(size)
        + _word_int(entry)
        + _word_int(margin)
    )


def withdrawal_leaf(withdrawal_id: int, account: bytes, token: bytes, amount: int) -> bytes:
    """keccak(keccak(abi.encode(uint256 id, address account, address token, uint256 amount)))."""
    return _leaf(
        _word_uint(withdrawal_id)
        + _word_address(account)
        + _word_address(token)
        + _word_uint(amount)
    )


class MerkleTree:
    """Positional, append-only Merkle tree with incremental root updates."""

    __slots__ = ("_dirty", "_levels")

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [list(leaves)]
        self._dirty: set[int] = set(range(len(self._levels[0])))

    def __len__(self) -> int:
        return len(self._levels[0])

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def append(self, leaf: bytes) -> int:
        assert len(leaf) == 32
        leaves = self._levels[0]
        leaves.append(leaf)
        self._dirty.add(len(leaves) - 1)
        return len(leaves) - 1

    def update(self, index: int, leaf: bytes) -> None:
        assert len(leaf) == 32
        self._levels[0][index] = leaf
        self._dirty.add(index)

    def root(self) -> bytes:
        leaves = self._levels[0]
        if not leaves:
            return EMPTY_ROOT
        dirty = self._dirty
        level = 0
        while len(self._levels[level]) > 1:
            below = self._levels[level]
            if level + 1 == len(self._levels):
                self._levels.append([])
            above = self._levels[level + 1]
            size = (len(below) + 1) // 2
            if len(above) < size:
                above.extend(EMPTY_ROOT for _ in range(size - len(above)))
            parents = {i >> 1 for i in dirty}
            for p in parents:
                left = 2 * p
                above[p] = (
                    hash_pair(below[left], below[left + 1])
                    if left + 1 < len(below)
                    else below[left]
                )
            dirty = parents
            level += 1
        del self._levels[level + 1 :]
        self._dirty = set()
        return self._levels[level][0]

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < len(self):
            raise IndexError(f"no leaf {index} in a tree of {len(self)}")
        self.root()
        path: list[bytes] = []
        for below in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(below):
                path.append(below[sibling])
            index >>= 1
        return path


def process_proof(proof: Sequence[bytes], leaf: bytes) -> bytes:
    computed = leaf
    for sibling in proof:
        computed = hash_pair(computed, sibling)
    return computed


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """Same result as OpenZeppelin `MerkleProof.verify(proof, root, leaf)`."""
    return process_proof(proof, leaf) == root


def root_of(leaves: Iterable[bytes]) -> bytes:
    return MerkleTree(leaves).root()
