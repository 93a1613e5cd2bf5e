"""Builders for batch auction tests: the helpers' genesis with ETH-USDC as a batch auction
market (BTC-USDC stays continuous), and views of what a clearing produced."""

from __future__ import annotations

from typing import Any

from matching.auction import clearing_price
from matching.config import Genesis
from matching.engine import Engine
from matching.events import Accepted, Event
from tests.matching.helpers import Harness, genesis_dict


def auction_genesis(blocks: int = 1) -> Genesis:
    raw = genesis_dict()
    raw["markets"][0]["auction_blocks"] = blocks
    return Genesis.from_dict(raw)


class AuctionHarness(Harness):
    def __init__(self, blocks: int = 1) -> None:
        super().__init__()
        self.engine = Engine(auction_genesis(blocks))


def brute_force(
    orders: list[tuple[bool, int, int]], tick: int, reference: int
) -> tuple[int, int, int] | None:
    """(best volume, smallest imbalance among those, price by rules 3-4) over every tick
    between the lowest and the highest limit: the definition, checked tick by tick."""
    if not orders:
        return None
    prices = [p for _, p, _ in orders]
    rows = []
    for p in range(min(prices), max(prices) + tick, tick):
        demand = sum(s for buy, q, s in orders if buy and q >= p)
        supply = sum(s for buy, q, s in orders if not buy and q <= p)
        rows.append((p, min(demand, supply), abs(demand - supply)))
    volume = max(v for _, v, _ in rows)
    if volume == 0:
        return None
    imbalance = min(i for _, v, i in rows if v == volume)
    best = [p for p, v, i in rows if v == volume and i == imbalance]
    assert best == list(range(best[0], best[-1] + tick, tick)), "not contiguous"
    if reference:
        price = min(best, key=lambda p: (abs(p - reference), p))
    else:
        price = best[(len(best) - 1) // 2]
    return volume, imbalance, price


def fast(orders: list[tuple[bool, int, int]], tick: int, reference: int) -> tuple[int, int] | None:
    bids = [(p, s) for buy, p, s in orders if buy]
    asks = [(p, s) for buy, p, s in orders if not buy]
    return clearing_price(bids, asks, tick, reference)


def describe(oids: dict[int, Any], value: Any) -> Any:
    """An event with every order id replaced by what identifies the order apart from its
    arrival (see `order_names`); other fields unchanged."""
    if not isinstance(value, tuple):
        return value
    fields = getattr(value, "_fields", ())
    out = [type(value).__name__]
    for name, field in zip(fields, value, strict=True):
        if name in ("oid", "taker_oid", "maker_oid"):
            field = oids.get(field, field)
        out.append(field)
    return tuple(out)


def order_names(entries: list[dict[str, Any]], events: list[list[Event]]) -> dict[int, Any]:
    """oid -> (account, the place action's fields): what tells an order from another apart
    from its arrival. Two orders equal in it are interchangeable."""
    names: dict[int, Any] = {}
    for entry, evs in zip(entries, events, strict=True):
        for e in evs:
            if isinstance(e, Accepted):
                names[e.oid] = (entry["account"], tuple(sorted(entry["action"].items())))
    return names
