"""Byte-bounded caches (node/runtime/caches.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.runtime.caches import ITEM_OVERHEAD_BYTES, ByteLRU


def test_oldest_items_leave_when_the_byte_budget_is_passed() -> None:
    cache: ByteLRU[bytes, int] = ByteLRU(3 * (100 + ITEM_OVERHEAD_BYTES))
    for i in range(5):
        cache.put(bytes([i]), i, 100)
    assert len(cache) == 3
    assert bytes([0]) not in cache and cache.get(bytes([4])) == 4
    assert cache.pop(bytes([4])) == 4 and cache.pop(bytes([4]), -1) == -1
    assert cache.used_bytes == 2 * (100 + ITEM_OVERHEAD_BYTES)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 5000), st.booleans()), max_size=200))
def test_used_bytes_is_exact_and_within_budget(ops: list[tuple[int, int, bool]]) -> None:
    budget = 20_000
    cache: ByteLRU[int, int] = ByteLRU(budget)
    for key, cost, remove in ops:
        if remove:
            cache.pop(key)
        else:
            cache.put(key, cost, cost)
        assert cache.used_bytes <= budget or len(cache) == 0
        assert cache.used_bytes == sum(
            (cache.get(k) or 0) + ITEM_OVERHEAD_BYTES for k in range(51) if k in cache
        )
