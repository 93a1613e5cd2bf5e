"""Token buckets for the client API: per client IP and per trading account.

Pure bookkeeping: time arrives as an argument (`now`, in seconds on any monotonic clock),
so the limiter is tested without sleeping. It owns no I/O and knows nothing of HTTP.

Two refinements on the plain token bucket, both for exchange traffic:
- Cancels are cheaper (`cancel_cost`) and may use the last `reserve` tokens, which new
  orders may not touch. A client that spent its order budget can still pull its quotes,
  which is what a market maker needs most when a market moves fast.
- The table of buckets is bounded (`max_keys`). The least recently used key is evicted;
  a key idle for `burst / rate` seconds has a full bucket, so its eviction loses nothing.
  Only a table full of keys active in the last few seconds loses state, and then it is
  the oldest of them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

NO_WAIT: Final = 0.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate_per_s` tokens refill per second up to `burst`; an order costs 1 token, a
    cancel `cancel_cost`; only cancels may take the bucket below `reserve` tokens."""

    rate_per_s: float
    burst: float
    cancel_cost: float = 0.25
    reserve: float = 0.0

    def __post_init__(self) -> None:
        assert self.rate_per_s > 0 and self.burst > 0, "rate and burst must be positive"
        assert 0 < self.cancel_cost <= 1, "a cancel costs at most what an order costs"
        assert 0 <= self.reserve < self.burst, "the cancel reserve must leave room for orders"

    def cost(self, orders: int, cancels: int) -> float:
        return orders + cancels * self.cancel_cost


class TokenBuckets:
    """One bucket per key. `take` either takes the tokens and returns 0.0, or takes
    nothing and returns the seconds to wait before the same request could succeed
    (`math.inf` if it never could: more than the bucket holds)."""

    __slots__ = ("_buckets", "limit", "max_keys")

    def __init__(self, limit: RateLimit, max_keys: int) -> None:
        assert max_keys > 0
        self.limit = limit
        self.max_keys = max_keys
        # key -> [tokens, time of last update]; ordered by last use (LRU first).
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def tokens(self, key: Hashable, now: float) -> float:
        bucket = self._buckets.get(key)
        return self.limit.burst if bucket is None else self._refilled(bucket, now)

    def take(self, key: Hashable, cost: float, now: float, *, cancel_only: bool = False) -> float:
        """Take `cost` tokens. Unless `cancel_only`, the bucket must keep `reserve`."""
        wait_s = self.wait_for(key, cost, now, cancel_only=cancel_only)
        if wait_s == NO_WAIT:
            self.charge(key, cost, now)
        return wait_s

    def wait_for(
        self,
        key: Hashable,
        cost: float,
        now: float,
        *,
        cancel_only: bool = False,
        pending: float = 0.0,
    ) -> float:
        """Seconds until `cost` more tokens (after `pending` ones not yet charged) could be
        taken; 0.0 if now. Changes nothing."""
        floor = 0.0 if cancel_only else self.limit.reserve
        available = self.tokens(key, now) - pending
        if available - cost >= floor:
            return NO_WAIT
        if cost + floor > self.limit.burst:
            return math.inf
        return (cost + floor - available) / self.limit.rate_per_s

    def charge(self, key: Hashable, cost: float, now: float) -> None:
        """Take `cost` tokens unconditionally, for work already done; the bucket may go
        into debt (down to -burst), which later requests wait out."""
        bucket = self._bucket(key, now)
        bucket[0] = max(-self.limit.burst, self._refilled(bucket, now) - cost)
        bucket[1] = now

    def _bucket(self, key: Hashable, now: float) -> list[float]:
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
            return bucket
        if len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)
        bucket = [self.limit.burst, now]
        self._buckets[key] = bucket
        return bucket

    def _refilled(self, bucket: list[float], now: float) -> float:
        elapsed = max(0.0, now - bucket[1])
        return min(self.limit.burst, bucket[0] + elapsed * self.limit.rate_per_s)


def retry_after_header(wait_s: float) -> str:
    """HTTP Retry-After is whole seconds; never tell a client 0 when it must wait."""
    if math.isinf(wait_s):
        return "60"
    return str(max(1, math.ceil(wait_s)))
