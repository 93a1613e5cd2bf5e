"""Order books: resting orders of one market in price-time priority.

Each side keeps a dict from a *key* to a price level and a sorted list of the keys with
the best level last, so the best level is `keys[-1]` and removing it is a `pop()`. The
key is the price for bids and minus the price for asks; a taker with limit price `p`
crosses a level when `key >= -p` (buy, against asks) or `key >= p` (sell, against bids).

A level is a FIFO deque. Cancels do not search the deque: they mark the order dead
(`live = False`) and the level's live count drops; dead orders are skipped (and dropped)
when they reach the front, and a level whose deque holds mostly dead orders is
compacted. A level with no live order leaves the side at once, so `keys` only ever
names levels with live orders.

The book holds no balances; the engine (engine.py) reserves and releases funds.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from matching.config import BPS, Market

if TYPE_CHECKING:
    from matching.accounts import Account
    from matching.margin import PerpMarket


class Order:
    """A resting order. `reserved` is what it has locked: base units for a sell, quote
    units (notional plus the worst-case fee, see `Book.reserve`) for a buy."""

    __slots__ = (
        "account",
        "book",
        "cloid",
        "expires_ms",
        "is_buy",
        "key",
        "live",
        "oid",
        "post_only",
        "price",
        "reserved",
        "size",
    )

    def __init__(
        self,
        oid: int,
        account: Account,
        book: Book,
        is_buy: bool,
        price: int,
        size: int,
        reserved: int,
        cloid: int | None,
        expires_ms: int | None,
        post_only: bool,
    ) -> None:
        self.oid = oid
        self.account = account
        self.book = book
        self.is_buy = is_buy
        self.price = price
        self.key = price if is_buy else -price
        self.size = size
        self.reserved = reserved
        self.cloid = cloid
        self.expires_ms = expires_ms
        self.post_only = post_only
        self.live = True


class Level:
    __slots__ = ("live", "orders", "price")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.live = 0

    def __iter__(self) -> Iterator[Order]:
        return (o for o in self.orders if o.live)

    def open_size(self) -> int:
        return sum(o.size for o in self.orders if o.live)


class Side:
    __slots__ = ("keys", "levels")

    def __init__(self) -> None:
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []  # ascending; the best level is last

    def add(self, order: Order) -> None:
        """Append an order at the back of its level."""
        level = self.levels.get(order.key)
        if level is None:
            level = self.levels[order.key] = Level(order.price)
            keys = self.keys
            if not keys or order.key > keys[-1]:
                keys.append(order.key)
            else:
                insort(keys, order.key)
        level.orders.append(order)
        level.live += 1

    def remove(self, order: Order) -> None:
        """Take a live order off the book (cancel): O(1) apart from an emptied level."""
        order.live = False
        level = self.levels[order.key]
        level.live -= 1
        if level.live == 0:
            self.drop_level(order.key)
        elif len(level.orders) > 2 * level.live + 16:
            level.orders = deque(o for o in level.orders if o.live)

    def drop_level(self, key: int) -> None:
        del self.levels[key]
        keys = self.keys
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]

    def crossed_by(self, price: int, is_buy: bool) -> bool:
        """Would a taker on the other side with limit `price` reach this side's best?"""
        keys = self.keys
        return bool(keys) and keys[-1] >= (-price if is_buy else price)

    def best_first(self) -> Iterator[Level]:
        levels = self.levels
        return (levels[k] for k in reversed(self.keys))


class Book:
    """One market: its parameters (copied into slots for the hot path) and two sides."""

    __slots__ = (
        "asks",
        "base",
        "bids",
        "fee_bps_max",
        "id",
        "lot",
        "maker_bps",
        "market",
        "perp",
        "quote",
        "taker_bps",
        "tick",
    )

    def __init__(self, market: Market, base_index: int, quote_index: int) -> None:
        self.market = market
        self.id = market.id
        # Dense asset indexes into Account.available / .locked. A perp market has no base
        # asset: its orders lock nothing, and `base` names the collateral like `quote`.
        self.base = base_index
        self.quote = quote_index
        self.lot = market.lot_size
        self.tick = market.tick_size
        self.maker_bps = market.maker_fee_bps
        self.taker_bps = market.taker_fee_bps
        self.fee_bps_max = max(market.maker_fee_bps, market.taker_fee_bps)
        self.bids = Side()
        self.asks = Side()
        self.perp: PerpMarket | None = None  # a perpetual market's state (perp.py)

    def reserve(self, price: int, size: int) -> int:
        """Quote units a buy of `size` at `price` locks: notional plus the larger of the
        two fees on it. Superadditive in size, so a partial fill never needs more."""
        notional = price * (size // self.lot)
        return notional + notional * self.fee_bps_max // BPS

    def side(self, is_buy: bool) -> Side:
        return self.bids if is_buy else self.asks

    def crossed(self) -> bool:
        return bool(self.bids.keys and self.asks.keys) and (
            self.bids.keys[-1] >= -self.asks.keys[-1]
        )

    def depth(self, is_buy: bool, levels: int) -> list[tuple[int, int, int]]:
        """(price, open size, order count) of the best `levels` levels of one side."""
        out: list[tuple[int, int, int]] = []
        for level in self.side(is_buy).best_first():
            if len(out) == levels:
                break
            out.append((level.price, level.open_size(), level.live))
        return out
