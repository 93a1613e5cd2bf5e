"""Checkpoints: the state root over balance leaves and the withdrawals root (PROTOCOL §3).

The state tree has one leaf per (account, asset) pair ever credited, in the order of the
first credit. The engine assigns a pair its leaf index when it first credits it (cheap:
one list append) and marks accounts whose totals moved; only at a checkpoint are new
leaves appended and the changed ones rehashed, so a block costs no hashing at all and a
checkpoint costs O(changed pairs × log n).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from matching.accounts import Account
from matching.config import Asset
from matching.merkle import MerkleTree, balance_leaf, withdrawal_leaf

KEPT_CHECKPOINTS = 256  # withdrawal proofs stay available for this many checkpoints


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A debit that enters the next checkpoint; `amount` is in token base units."""

    withdrawal_id: int
    account: bytes
    token: bytes
    amount: int

    def leaf(self) -> bytes:
        return withdrawal_leaf(self.withdrawal_id, self.account, self.token, self.amount)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    sequence: int
    state_root: bytes
    withdrawals_root: bytes
    last_deposit_id: int
    withdrawals: tuple[Withdrawal, ...]


class StateTree:
    """Balance leaves, maintained incrementally."""

    __slots__ = ("assets", "dirty", "pairs", "totals", "tree")

    def __init__(self, assets: tuple[Asset, ...]) -> None:
        self.assets = assets
        self.tree = MerkleTree()
        self.pairs: list[tuple[Account, int]] = []  # leaf index -> (account, asset index)
        self.totals: list[int] = []  # leaf index -> total hashed at the last checkpoint
        self.dirty: dict[Account, None] = {}  # accounts whose totals may have moved

    def new_leaf(self, account: Account, asset: int) -> None:
        account.leaf[asset] = len(self.pairs)
        self.pairs.append((account, asset))
        self.totals.append(-1)

    def _leaf(self, account: Account, asset: int, total: int) -> bytes:
        token = self.assets[asset]
        return balance_leaf(account.address, token.token, total * token.unit)

    def root(self) -> bytes:
        tree, totals, pairs = self.tree, self.totals, self.pairs
        hashed = len(tree)
        for account in self.dirty:
            for asset, index in enumerate(account.leaf):
                if 0 <= index < hashed:
                    total = account.available[asset] + account.locked[asset]
                    if total != totals[index]:
                        totals[index] = total
                        tree.update(index, self._leaf(account, asset, total))
        for index in range(hashed, len(pairs)):
            account, asset = pairs[index]
            total = account.available[asset] + account.locked[asset]
            totals[index] = total
            tree.append(self._leaf(account, asset, total))
        self.dirty = {}
        return tree.root()

    def proof(self, account: Account, asset: int) -> tuple[bytes, list[bytes]] | None:
        """(leaf, proof) of the pair as of the last checkpoint, or None if it has no leaf
        there yet."""
        index = account.leaf[asset]
        if not 0 <= index < len(self.tree):
            return None
        return self.tree.leaf(index), self.tree.proof(index)


class WithdrawalTrees:
    """The withdrawals of the last KEPT_CHECKPOINTS checkpoints, for claim proofs."""

    __slots__ = ("by_sequence",)

    def __init__(self) -> None:
        self.by_sequence: deque[tuple[Checkpoint, MerkleTree]] = deque(maxlen=KEPT_CHECKPOINTS)

    def add(self, checkpoint: Checkpoint, tree: MerkleTree) -> None:
        self.by_sequence.append((checkpoint, tree))

    def proof(self, sequence: int, withdrawal_id: int) -> tuple[bytes, list[bytes]] | None:
        for checkpoint, tree in self.by_sequence:
            if checkpoint.sequence != sequence:
                continue
            for index, w in enumerate(checkpoint.withdrawals):
                if w.withdrawal_id == withdrawal_id:
                    return tree.leaf(index), tree.proof(index)
        return None

    def checkpoints(self) -> list[Checkpoint]:
        return [c for c, _ in self.by_sequence]
