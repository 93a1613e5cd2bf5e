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
from typing import TYPE_CHECKING

from matching.accounts import Account
from matching.config import Asset
from matching.merkle import MerkleTree, balance_leaf, position_leaf, withdrawal_leaf

if TYPE_CHECKING:
    from matching.margin import Position
    from matching.optionmarkets import Holding, OptionMarkets

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
    """Balance leaves and position leaves, maintained incrementally.

    A pair (account, k) names a balance leaf for k >= 0 (an asset index) and a position
    leaf for k < 0 (market id -1 - k). With perpetual markets, the collateral leaf of an
    account with perp state commits to its exit value (`exit_values`, set by the engine
    before each root; docs/MATCHING.md), and position leaves are always rehashed."""

    __slots__ = (
        "assets",
        "collateral",
        "dirty",
        "exit_values",
        "options",
        "pairs",
        "totals",
        "tree",
    )

    def __init__(self, assets: tuple[Asset, ...]) -> None:
        self.assets = assets
        self.tree = MerkleTree()
        self.pairs: list[tuple[Account, int]] = []  # leaf index -> (account, asset index)
        self.totals: list[int] = []  # leaf index -> total hashed at the last checkpoint
        self.dirty: dict[Account, None] = {}  # accounts whose totals may have moved
        # account -> the collateral total its leaf commits to, for accounts with perp state
        self.exit_values: dict[Account, int] = {}
        self.collateral = -1  # the perp collateral's asset index, -1 without perp markets
        # Option holdings' leaves are position leaves too (size, net premium, margin 0).
        self.options: OptionMarkets | None = None

    def new_leaf(self, account: Account, asset: int) -> None:
        account.leaf[asset] = len(self.pairs)
        self.pairs.append((account, asset))
        self.totals.append(-1)

    def new_position_leaf(
        self, account: Account, market: int, position: Position | Holding
    ) -> None:
        position.leaf = len(self.pairs)
        self.pairs.append((account, -1 - market))
        self.totals.append(-1)

    def _leaf(self, account: Account, asset: int, total: int) -> bytes:
        token = self.assets[asset]
        return balance_leaf(account.address, token.token, total * token.unit)

    def _total(self, account: Account, asset: int) -> int:
        if asset == self.collateral:
            value = self.exit_values.get(account)
            if value is not None:
                return value
        return account.available[asset] + account.locked[asset]

    def _position_leaf(self, account: Account, market: int) -> bytes:
        options = self.options
        if options is not None and market in options.series:
            size, premium = options.leaf_fields(account, market)
            return position_leaf(account.address, market, size, premium, 0)
        perp = account.perp
        assert perp is not None
        pos = perp.positions[market]
        return position_leaf(account.address, market, pos.size, pos.entry, pos.margin)

    def root(self) -> bytes:
        tree, totals, pairs = self.tree, self.totals, self.pairs
        hashed = len(tree)
        for account in self.dirty:
            for asset, index in enumerate(account.leaf):
                if 0 <= index < hashed:
                    total = self._total(account, asset)
                    if total != totals[index]:
                        totals[index] = total
                        tree.update(index, self._leaf(account, asset, total))
            perp = account.perp
            if perp is not None:
                for market, pos in perp.positions.items():
                    if 0 <= pos.leaf < hashed:
                        leaf = self._position_leaf(account, market)
                        if leaf != tree.leaf(pos.leaf):
                            tree.update(pos.leaf, leaf)
            if self.options is not None:
                for market, index in self.options.leaves(account):
                    if index < hashed:
                        leaf = self._position_leaf(account, market)
                        if leaf != tree.leaf(index):
                            tree.update(index, leaf)
        for index in range(hashed, len(pairs)):
            account, asset = pairs[index]
            if asset < 0:
                tree.append(self._position_leaf(account, -1 - asset))
                continue
            total = self._total(account, asset)
            totals[index] = total
            tree.append(self._leaf(account, asset, total))
        self.dirty = {}
        return tree.root()

    def proof(self, account: Account, asset: int) -> tuple[bytes, list[bytes]] | None:
        """(leaf, proof) of the pair as of the last checkpoint, or None if it has no leaf
        there yet."""
        return self.proof_at(account.leaf[asset])

    def proof_at(self, index: int) -> tuple[bytes, list[bytes]] | None:
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
