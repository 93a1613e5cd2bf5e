"""The committee's price oracle: observations in, one index price per perp market out.

Oracle entries are committee entries (like deposits: no trader envelope); the node has
verified the member's signature before consensus. The engine records each member's latest
price per market with the BLOCK timestamp (a member cannot claim a time), and the index is
the median of the latest observations of the members not older than the market's
`oracle_max_age_ms`, provided at least `oracle_quorum` (2f+1) distinct members are fresh.
With an even count the lower median is taken. With 2f+1 fresh members of which at most f
lie, the median lies between two honest prices: a minority cannot move it outside the
honest range. Pure: no clock, the timestamp is an argument.
"""

from __future__ import annotations


class Oracle:
    __slots__ = ("members", "observations", "quorum")

    def __init__(self, members: tuple[bytes, ...], quorum: int, markets: list[int]) -> None:
        self.members = frozenset(members)
        self.quorum = quorum
        # market id -> member -> (price, block timestamp of the observation)
        self.observations: dict[int, dict[bytes, tuple[int, int]]] = {m: {} for m in markets}

    def observe(self, member: bytes, market: int, price: int, timestamp_ms: int) -> None:
        self.observations[market][member] = (price, timestamp_ms)

    def index(self, market: int, timestamp_ms: int, max_age_ms: int) -> int | None:
        """The median of the fresh observations, or None without a fresh quorum."""
        oldest = timestamp_ms - max_age_ms
        fresh = sorted(
            price for price, seen_ms in self.observations[market].values() if seen_ms >= oldest
        )
        if len(fresh) < self.quorum:
            return None
        return fresh[(len(fresh) - 1) // 2]  # the lower median for an even count
