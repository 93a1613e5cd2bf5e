"""Mempool bounds, duplicates by (signer, nonce), cancels-first batches and eviction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.mempool import AddResult, Mempool, MempoolLimits, PoolItem


def item(
    n: int,
    account: int = 1,
    cancel: bool = False,
    nonce: int | None = None,
    signer: int | None = None,
) -> PoolItem:
    return PoolItem(
        intent_id=n.to_bytes(32, "big"),
        account=bytes([account]) * 20,
        signer=bytes([account if signer is None else signer]) * 20,
        nonce=n if nonce is None else nonce,
        is_cancel=cancel,
        entry=b"e" * 10,
    )


def test_duplicates_by_id_and_by_signer_nonce() -> None:
    pool = Mempool()
    assert pool.add(item(1)) is AddResult.ADDED
    assert pool.add(item(1)) is AddResult.DUPLICATE
    assert pool.add(item(2, nonce=1)) is AddResult.DUPLICATE
    assert len(pool) == 1


def test_a_bad_copy_never_stands_in_for_the_genuine_intent() -> None:
    """A copy with a damaged signature has the genuine id but another signer: both are
    pooled, and the copy's commit takes only the copy out."""
    pool = Mempool()
    copy, genuine = item(1, signer=66), item(1)
    assert pool.add(copy) is AddResult.ADDED
    assert pool.add(genuine) is AddResult.ADDED
    assert copy.intent_id in pool and len(pool) == 2
    assert pool.take_batch(10, 1 << 20) == [copy, genuine]
    assert pool.remove_applied(copy.signer, copy.nonce)
    assert pool.pending(genuine.signer, genuine.nonce) == genuine
    assert pool.take_batch(10, 1 << 20) == [genuine]
    assert not pool.remove_applied(copy.signer, copy.nonce)
    assert pool.remove_applied(genuine.signer, genuine.nonce) and len(pool) == 0
    assert genuine.intent_id not in pool and pool.size_bytes == 0


def test_quota_charges_the_signer_not_the_named_account() -> None:
    pool = Mempool(MempoolLimits(max_per_account=2))
    forged = [item(n, account=1, signer=66) for n in range(3)]  # name account 1
    assert [pool.add(i).value for i in forged] == ["added", "added", "account_full"]
    own = [item(n, account=1) for n in range(10, 12)]
    assert [pool.add(i).value for i in own] == ["added", "added"]
    assert pool.add(item(13, account=1)) is AddResult.ACCOUNT_FULL


def test_cancels_come_first_in_a_batch() -> None:
    pool = Mempool()
    for n in range(5):
        pool.add(item(n, cancel=n % 2 == 1))
    batch = pool.take_batch(10, 1 << 20)
    assert [i.nonce for i in batch] == [1, 3, 0, 2, 4]
    assert [i.nonce for i in pool.take_batch(2, 1 << 20)] == [1, 3]
    assert [i.nonce for i in pool.take_batch(10, 25)] == [1, 3]


def test_exclude_and_remove() -> None:
    pool = Mempool()
    for n in range(4):
        pool.add(item(n))
    batch = pool.take_batch(10, 1 << 20, exclude={item(0).intent_id})
    assert [i.nonce for i in batch] == [1, 2, 3]
    assert pool.remove([item(1).intent_id, item(9).intent_id]) == 1
    assert len(pool) == 3
    assert pool.add(item(1)) is AddResult.ADDED  # forgotten once removed


def test_account_and_pool_limits_leave_room_for_cancels() -> None:
    pool = Mempool(MempoolLimits(max_items=10, max_per_account=3))
    assert [pool.add(item(n, account=1)).value for n in range(4)][-1] == "account_full"
    for n in range(10, 16):
        assert pool.add(item(n, account=n)) is AddResult.ADDED
    assert pool.add(item(20, account=20)) is AddResult.POOL_FULL
    assert pool.add(item(21, account=21, cancel=True)) is AddResult.ADDED


def test_evict_stale() -> None:
    pool = Mempool()
    for n in range(10):
        pool.add(item(n))
    assert pool.evict_stale(oldest_nonce=7) == 7
    assert len(pool) == 3


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3), st.booleans()), max_size=80))
def test_accounting_stays_consistent(ops: list[tuple[int, int, bool]]) -> None:
    pool = Mempool(MempoolLimits(max_items=20, max_per_account=6, max_bytes=150))
    for n, account, cancel in ops:
        if n % 7 == 0:
            pool.remove([item(n + 1).intent_id])
        if n % 5 == 0:
            pool.remove_applied(bytes([account]) * 20, n - 1)
        pool.add(item(n, account=account, cancel=cancel))
        assert pool.size_bytes == 10 * len(pool) <= 150
        batch = pool.take_batch(1000, 1 << 20)
        assert len(batch) == len(pool)
        assert all(i.intent_id in pool for i in batch)
    pool.evict_stale(oldest_nonce=1 << 40)
    assert len(pool) == pool.size_bytes == 0 and not pool._ids and not pool._per_signer
