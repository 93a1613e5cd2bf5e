"""Token buckets (node/api/ratelimit.py): refill, cancel reserve, debt, bounded table."""

from __future__ import annotations

import math

from node.api.ratelimit import NO_WAIT, RateLimit, TokenBuckets, retry_after_header

LIMIT = RateLimit(rate_per_s=10, burst=20, cancel_cost=0.25, reserve=4)


def test_take_until_empty_then_refill() -> None:
    buckets = TokenBuckets(LIMIT, max_keys=10)
    assert buckets.take("a", 16, now=0.0) == NO_WAIT  # 20 - 16 = 4 = reserve
    wait = buckets.take("a", 1, now=0.0)
    assert wait == 0.1  # one token at 10/s
    assert buckets.take("a", 1, now=wait) == NO_WAIT
    assert buckets.tokens("b", now=0.0) == 20  # other keys are untouched


def test_cancels_may_use_the_reserve_orders_may_not() -> None:
    buckets = TokenBuckets(LIMIT, max_keys=10)
    assert buckets.take("a", 16, now=0.0) == NO_WAIT
    assert buckets.take("a", 1, now=0.0) > 0  # an order would dip into the reserve
    for _ in range(16):  # 16 cancels at 0.25 = the whole reserve
        assert buckets.take("a", LIMIT.cancel_cost, now=0.0, cancel_only=True) == NO_WAIT
    assert buckets.take("a", LIMIT.cancel_cost, now=0.0, cancel_only=True) > 0
    assert LIMIT.cost(orders=2, cancels=4) == 3


def test_more_than_the_bucket_holds_is_never_possible() -> None:
    buckets = TokenBuckets(LIMIT, max_keys=10)
    assert math.isinf(buckets.take("a", 17, now=0.0))  # 17 + reserve 4 > burst 20
    assert buckets.tokens("a", now=0.0) == 20  # a refusal takes nothing
    assert retry_after_header(math.inf) == "60"
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"


def test_wait_for_counts_pending_and_charge_may_overdraw() -> None:
    buckets = TokenBuckets(LIMIT, max_keys=10)
    assert buckets.wait_for("a", 1, now=0.0, pending=15) == NO_WAIT  # 20 - 15 - 1 = reserve
    assert buckets.wait_for("a", 1, now=0.0, pending=16) == 0.1
    assert len(buckets) == 0  # asking creates nothing
    buckets.charge("a", 30, now=0.0)  # work already done is charged even past empty
    assert buckets.tokens("a", now=0.0) == -10
    assert buckets.wait_for("a", 1, now=0.0, cancel_only=True) == 1.1
    buckets.charge("a", 100, now=0.0)
    assert buckets.tokens("a", now=0.0) == -20  # debt is bounded by one burst


def test_table_is_bounded_and_evicts_least_recently_used() -> None:
    buckets = TokenBuckets(LIMIT, max_keys=3)
    for key in ("a", "b", "c"):
        buckets.take(key, 10, now=0.0)
    buckets.take("a", 1, now=0.0)  # "a" is now the most recent
    buckets.take("d", 1, now=0.0)  # evicts "b"
    assert len(buckets) == 3
    assert buckets.tokens("b", now=0.0) == 20  # forgotten: full again
    assert buckets.tokens("a", now=0.0) == 9
