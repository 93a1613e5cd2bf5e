"""Verified intents waiting to be ordered.

The node checks an intent's signature, and that its signer may sign for its account,
once, before it gets here; the mempool only bounds memory (per signer, in total, in
bytes), holds at most one item per (signer, nonce), and hands leaders batches with
cancels first so that a burst of cancels is never queued behind new orders.

Items are keyed by (signer, nonce), the pair the engine applies at most once, and not by
intent id: the id (the EIP-712 digest) does not cover the signature, so a copy of an
intent with a damaged signature carries the genuine intent's id under another signer.
Keyed by id, such a copy would stand in for the genuine intent, and its refusal would
become the genuine intent's fate. Per-signer quotas likewise charge the key that signed,
never an account that someone else's intent names.

Items leave when a committed block carries an entry of the same (signer, nonce): that
pair can never apply again, whatever the entry's bytes or outcome. They also leave when
their nonce falls out of the replay window (they could no longer be applied). Double
inclusion in two competing blocks is harmless: the engine accepts each pair once.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PoolKey = tuple[bytes, int]  # (signer, nonce)


@dataclass(frozen=True, slots=True)
class PoolItem:
    intent_id: bytes
    account: bytes
    signer: bytes
    nonce: int
    is_cancel: bool
    entry: bytes  # the encoded plain entry that goes into a block payload


_Predicate = Callable[[PoolItem], bool]


class AddResult(enum.Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"  # this (signer, nonce) is pending already: see `pending`
    ACCOUNT_FULL = "account_full"  # the signer's quota (the code predates agents)
    POOL_FULL = "pool_full"


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_items: int = 200_000
    max_bytes: int = 256 * 1024 * 1024
    # Pending items per signing key (an account's own key, or one of its agents).
    max_per_account: int = 5_000


class Mempool:
    __slots__ = ("_bytes", "_cancels", "_ids", "_orders", "_per_signer", "limits")

    def __init__(self, limits: MempoolLimits = MempoolLimits()) -> None:
        self.limits = limits
        self._cancels: OrderedDict[PoolKey, PoolItem] = OrderedDict()
        self._orders: OrderedDict[PoolKey, PoolItem] = OrderedDict()
        self._ids: dict[bytes, int] = {}  # intent id -> pending items carrying it
        self._per_signer: dict[bytes, int] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._cancels) + len(self._orders)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, intent_id: bytes) -> bool:
        """Whether an item with this intent id is pending, under any signer. A query
        only: a pending id is no reason to drop an intent before its signer is known."""
        return intent_id in self._ids

    def pending(self, signer: bytes, nonce: int) -> PoolItem | None:
        key = (signer, nonce)
        return self._cancels.get(key) or self._orders.get(key)

    def add(self, item: PoolItem) -> AddResult:
        key = (item.signer, item.nonce)
        if key in self._cancels or key in self._orders:
            return AddResult.DUPLICATE
        # Cancels may use the last tenth of the pool: a full pool still takes cancels.
        cap = self.limits.max_items if item.is_cancel else self.limits.max_items * 9 // 10
        if len(self) >= cap or self._bytes + len(item.entry) > self.limits.max_bytes:
            return AddResult.POOL_FULL
        if self._per_signer.get(item.signer, 0) >= self.limits.max_per_account:
            return AddResult.ACCOUNT_FULL
        (self._cancels if item.is_cancel else self._orders)[key] = item
        self._ids[item.intent_id] = self._ids.get(item.intent_id, 0) + 1
        self._per_signer[item.signer] = self._per_signer.get(item.signer, 0) + 1
        self._bytes += len(item.entry)
        return AddResult.ADDED

    def take_batch(
        self, max_items: int, max_bytes: int, exclude: frozenset[bytes] | set[bytes] = frozenset()
    ) -> list[PoolItem]:
        """Up to max_items (cancels first, then arrival order), skipping intent ids in
        `exclude` (those already carried by uncommitted blocks on the chain being
        extended; should one of them be a bad copy, the genuine item only waits for that
        block to commit). Items stay in the pool until their (signer, nonce) commits."""
        batch: list[PoolItem] = []
        size = 0
        for queue in (self._cancels, self._orders):
            for item in queue.values():
                if len(batch) >= max_items:
                    return batch
                if item.intent_id in exclude:
                    continue
                if size + len(item.entry) > max_bytes:
                    return batch
                batch.append(item)
                size += len(item.entry)
        return batch

    def remove_applied(self, signer: bytes, nonce: int) -> bool:
        """A committed block carried an entry of (signer, nonce): drop the pending item
        with that pair, if any (it can never apply now)."""
        key = (signer, nonce)
        item = self._cancels.pop(key, None) or self._orders.pop(key, None)
        if item is None:
            return False
        self._forget(item)
        return True

    def remove(self, intent_ids: Iterable[bytes]) -> int:
        """Drop every pending item carrying one of these ids, in one pass over the pool:
        for a stand-in facade that commits the batches it took (node/api/local.py). A
        node removes what commits by (signer, nonce) (`remove_applied`): by id, a
        committed bad copy would take the genuine intent out of the pool with it."""
        wanted = {i for i in intent_ids if i in self._ids}
        if not wanted:
            return 0
        return self._drop(lambda item: item.intent_id in wanted)

    def evict_stale(self, oldest_nonce: int) -> int:
        """Drop items whose nonce is below the replay window: they can never apply."""
        return self._drop(lambda item: item.nonce < oldest_nonce)

    def _drop(self, doomed: _Predicate) -> int:
        removed = 0
        for queue in (self._cancels, self._orders):
            keys = [key for key, item in queue.items() if doomed(item)]
            for key in keys:
                self._forget(queue.pop(key))
            removed += len(keys)
        return removed

    def _forget(self, item: PoolItem) -> None:
        _decrement(self._ids, item.intent_id)
        _decrement(self._per_signer, item.signer)
        self._bytes -= len(item.entry)


def _decrement(counts: dict[bytes, int], key: bytes) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
