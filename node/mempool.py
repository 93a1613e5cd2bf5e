"""Verified intents waiting to be ordered.

The node checks an intent's signature once, before it gets here; the mempool only bounds
memory (per account, in total, in bytes), drops duplicates of an intent or of a
(signer, nonce) pair, and hands leaders batches with cancels first so that a burst of
cancels is never queued behind new orders. Items leave when a block that carries them
commits, or when their nonce falls out of the replay window (they could no longer be
applied). Double inclusion in two competing blocks is harmless: the replicated engine
accepts each (signer, nonce) once.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PoolItem:
    intent_id: bytes
    account: bytes
    signer: bytes
    nonce: int
    is_cancel: bool
    entry: bytes  # the encoded plain entry that goes into a block payload


class AddResult(enum.Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"
    ACCOUNT_FULL = "account_full"
    POOL_FULL = "pool_full"


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_items: int = 200_000
    max_bytes: int = 256 * 1024 * 1024
    max_per_account: int = 5_000


class Mempool:
    __slots__ = ("_bytes", "_by_signer_nonce", "_cancels", "_orders", "_per_account", "limits")

    def __init__(self, limits: MempoolLimits = MempoolLimits()) -> None:
        self.limits = limits
        self._cancels: OrderedDict[bytes, PoolItem] = OrderedDict()
        self._orders: OrderedDict[bytes, PoolItem] = OrderedDict()
        self._by_signer_nonce: set[tuple[bytes, int]] = set()
        self._per_account: dict[bytes, int] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._cancels) + len(self._orders)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, intent_id: bytes) -> bool:
        return intent_id in self._cancels or intent_id in self._orders

    def add(self, item: PoolItem) -> AddResult:
        if item.intent_id in self or (item.signer, item.nonce) in self._by_signer_nonce:
            return AddResult.DUPLICATE
        # Cancels may use the last tenth of the pool: a full pool still takes cancels.
        cap = self.limits.max_items if item.is_cancel else self.limits.max_items * 9 // 10
        if len(self) >= cap or self._bytes + len(item.entry) > self.limits.max_bytes:
            return AddResult.POOL_FULL
        if self._per_account.get(item.account, 0) >= self.limits.max_per_account:
            return AddResult.ACCOUNT_FULL
        (self._cancels if item.is_cancel else self._orders)[item.intent_id] = item
        self._by_signer_nonce.add((item.signer, item.nonce))
        self._per_account[item.account] = self._per_account.get(item.account, 0) + 1
        self._bytes += len(item.entry)
        return AddResult.ADDED

    def take_batch(
        self, max_items: int, max_bytes: int, exclude: frozenset[bytes] | set[bytes] = frozenset()
    ) -> list[PoolItem]:
        """Up to max_items (cancels first, then arrival order), skipping ids in `exclude`
        (those already carried by uncommitted blocks on the chain being extended).
        Items stay in the pool until `remove` is called for a committed block."""
        batch: list[PoolItem] = []
        size = 0
        for queue in (self._cancels, self._orders):
            for intent_id, item in queue.items():
                if len(batch) >= max_items:
                    return batch
                if intent_id in exclude:
                    continue
                if size + len(item.entry) > max_bytes:
                    return batch
                batch.append(item)
                size += len(item.entry)
        return batch

    def remove(self, intent_ids: Iterable[bytes]) -> int:
        removed = 0
        for intent_id in intent_ids:
            item = self._cancels.pop(intent_id, None) or self._orders.pop(intent_id, None)
            if item is not None:
                self._forget(item)
                removed += 1
        return removed

    def evict_stale(self, oldest_nonce: int) -> int:
        """Drop items whose nonce is below the replay window: they can never apply."""
        stale = [
            i.intent_id
            for queue in (self._cancels, self._orders)
            for i in queue.values()
            if i.nonce < oldest_nonce
        ]
        return self.remove(stale)

    def _forget(self, item: PoolItem) -> None:
        self._by_signer_nonce.discard((item.signer, item.nonce))
        left = self._per_account[item.account] - 1
        if left:
            self._per_account[item.account] = left
        else:
            del self._per_account[item.account]
        self._bytes -= len(item.entry)
