"""Caches bounded in bytes, not items: a member's memory must not depend on what peers
or clients choose to send (docs/OPERATIONS.md, "Limits and budgets")."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# What a cached item costs beyond its key's bytes: the dict slot, the key object, the
# value object and what it holds. Measured with tracemalloc for a verified place intent
# (~540 bytes for a 232-byte entry); rounded up so the budget errs on the safe side.
ITEM_OVERHEAD_BYTES = 512


class ByteLRU(Generic[K, V]):
    """An LRU map whose items each carry a cost in bytes; the oldest go when the sum
    passes `budget_bytes`. Recency is insertion order (`put` of a present key moves it
    to the end), which is what the runtime's caches need: entries leave when their block
    executes, or age out."""

    __slots__ = ("_items", "budget_bytes", "used_bytes")

    def __init__(self, budget_bytes: int) -> None:
        assert budget_bytes > 0
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        return None if item is None else item[0]

    def put(self, key: K, value: V, cost_bytes: int) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.used_bytes -= old[1]
        cost = cost_bytes + ITEM_OVERHEAD_BYTES
        self._items[key] = (value, cost)
        self.used_bytes += cost
        while self.used_bytes > self.budget_bytes and self._items:
            _, (_, dropped) = self._items.popitem(last=False)
            self.used_bytes -= dropped

    def pop(self, key: K, default: V | None = None) -> V | None:
        item = self._items.pop(key, None)
        if item is None:
            return default
        self.used_bytes -= item[1]
        return item[0]
