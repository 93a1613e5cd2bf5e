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

from collections.abc import Callable
from typing import Any, Final

from matching.events import Event, Reason, Rejected

_new: Final[Any] = tuple.__new__

# Checks one [market, value] pair of an entry: returns the value in engine units, or None
# after appending the rejection (unknown or repeated market, value out of range).
PairCheck = Callable[[Any, Any, dict[int, int], list[Event]], int | None]


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


def read_entry(
    a: Any,
    ev: list[Event],
    oracle: Oracle,
    kind: str,
    field: str,
    pair: str,
    limit: int,
    check: PairCheck,
) -> tuple[bytes, dict[int, int]] | None:
    """The checks every committee observation entry shares ({type, member, <field>:
    [[market, value], ...]}, prices and vols alike): exactly those fields, a member of the
    oracle, 1 … `limit` pairs, each a [market, value] that `check` accepts. All or nothing:
    returns the member and market -> value, or None after appending the one rejection."""
    from matching.engine import _malformed

    try:
        if len(a) != 3:
            raise KeyError
        member = a["member"]
        items = a[field]
    except KeyError:
        ev.append(_new(Rejected, _malformed(kind)))
        return None
    if type(member) is not bytes or member not in oracle.members:
        msg = "member is not one of the genesis oracle_members"
        ev.append(_new(Rejected, (Reason.UNKNOWN_MEMBER, msg)))
        return None
    if type(items) is not list or not 0 < len(items) <= limit:
        ev.append(
            _new(Rejected, (Reason.MALFORMED, f"{field} must be a list of 1..{limit} {pair}"))
        )
        return None
    seen: dict[int, int] = {}
    for item in items:
        if type(item) is not list or len(item) != 2:
            ev.append(_new(Rejected, (Reason.MALFORMED, f"each {field[:-1]} is {pair}")))
            return None
        value = check(item[0], item[1], seen, ev)
        if value is None:
            return None
        seen[item[0]] = value
    return member, seen
