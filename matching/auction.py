"""Frequent batch auctions: spot markets that clear at one uniform price every N blocks
(docs/MATCHING.md, "Batch auctions").

An auction market's orders go to its ordinary `Book` without matching: they reserve
funds as resting orders do, may be cancelled, modified and expire as usual, and wait
there (the book may be crossed between clearings). At the end of the last block of a
batch (every block whose height is a multiple of the market's `auction_blocks`) the book
clears: one price maximising the matched volume, the orders better than it filled in
full, the marginal price level of the longer side pro-rata by size. Nothing of the
clearing depends on the order in which the batch's entries arrived: not the price, not
the allocation, not the order of its events. What is left of the book is uncrossed and
rests for the next batch; IOC orders left unfilled are cancelled.

`Auctions` is the engine's auction half (as `Perps` is its perp half); it reuses the
engine's funds check, resting and forgetting of orders. Pure: integers only, no clock.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Final

from matching.accounts import Account
from matching.book import Book, Level, Order
from matching.config import BPS, U64_MAX, Genesis
from matching.events import (
    BUY,
    SELL,
    Accepted,
    AuctionCleared,
    Cancelled,
    Event,
    Fill,
    Modified,
    Reason,
    Rejected,
    Trade,
)

if TYPE_CHECKING:
    from matching.engine import Engine

_new: Final[Any] = tuple.__new__
AUCTION_SIDE: Final = "auction"  # Trade.taker_side of an auction trade: nobody took
_NO_CLOID: Final = -1
_NO_EXPIRY: Final = U64_MAX + 1


class AuctionMarket:
    """One batch auction market: its book, its batch length and what the clearing reads."""

    __slots__ = ("blocks", "book", "ioc", "last_price")

    def __init__(self, book: Book, blocks: int) -> None:
        self.book = book
        self.blocks = blocks
        self.last_price = 0  # the reference: the last clearing price (0: none yet)
        # IOC orders waiting for this batch's clearing (oid -> account), in arrival order;
        # what is left of them after the clearing is cancelled.
        self.ioc: dict[int, Account] = {}


SameKey = tuple[bytes, int, int, int, int, bool, int]


def _same_key(order: Order, ioc: dict[int, Account]) -> SameKey:
    """A canonical order of one side's orders. Orders of one account equal in all but
    the last field (limit, open size, cloid, expiry, IOC or not) are interchangeable:
    only between them does the order id, and so arrival, decide anything."""
    cloid = order.cloid
    expires = order.expires_ms
    return (
        order.account.address,
        order.price,
        order.size,
        _NO_CLOID if cloid is None else cloid,
        _NO_EXPIRY if expires is None else expires,
        order.oid in ioc,
        order.oid,
    )


def clearing_price(
    bids: list[tuple[int, int]], asks: list[tuple[int, int]], tick: int, reference: int
) -> tuple[int, int] | None:
    """(price, volume) of a uniform-price clearing of the levels `bids` and `asks`
    ((price, total size); any order), or None if nothing crosses. The rules, in order:
    1. the largest matched volume min(demand(p), supply(p)), demand(p) the size bid at
       p or more and supply(p) the size asked at p or less;
    2. the smallest imbalance |demand(p) - supply(p)|;
    3. the price closest to `reference` (the market's last clearing price);
    4. without a reference, the middle of what is left, rounded down to the tick.
    Every price on the tick grid is a candidate. Demand and supply change only at the
    limit prices, so each limit price and each gap between two neighbours is evaluated
    once; rules 1 and 2 leave a contiguous range of ticks (demand falls and supply rises
    with the price), so rules 3 and 4 pick exactly one price of it."""
    at_bid: dict[int, int] = {}
    at_ask: dict[int, int] = {}
    for price, size in bids:
        at_bid[price] = at_bid.get(price, 0) + size
    for price, size in asks:
        at_ask[price] = at_ask.get(price, 0) + size
    prices = sorted(set(at_bid) | set(at_ask))
    n = len(prices)
    demand = [0] * n  # demand[j]: bid at prices[j] or more
    supply = [0] * n  # supply[j]: asked at prices[j] or less
    running = 0
    for j in range(n - 1, -1, -1):
        running += at_bid.get(prices[j], 0)
        demand[j] = running
    running = 0
    for j in range(n):
        running += at_ask.get(prices[j], 0)
        supply[j] = running
    best_volume = 0
    best_imbalance = 0
    low = high = 0
    for j in range(n):
        # The limit price itself, then the open gap above it (if it holds a tick), where
        # demand is that of the next price and supply that of this one.
        segments = [(prices[j], prices[j], demand[j], supply[j])]
        if j + 1 < n and prices[j + 1] - prices[j] > tick:
            segments.append((prices[j] + tick, prices[j + 1] - tick, demand[j + 1], supply[j]))
        for start, end, d, s in segments:
            volume = d if d < s else s
            imbalance = d - s if d > s else s - d
            if volume > best_volume or (
                volume == best_volume and volume > 0 and imbalance < best_imbalance
            ):
                best_volume, best_imbalance, low, high = volume, imbalance, start, end
            elif volume == best_volume and volume > 0 and imbalance == best_imbalance:
                high = end  # contiguous with the range found so far
    if best_volume == 0:
        return None
    if reference:
        price = low if reference < low else high if reference > high else reference
    else:
        price = low + (high - low) // tick // 2 * tick
    return price, best_volume


def _allocate(
    orders: list[Order], volume: int, lot: int, seed: bytes, ioc: dict[int, Account]
) -> list[tuple[Order, int]]:
    """Share `volume` among `orders` (one side, eligible at the clearing price, best
    price first): whole price levels in price priority, the marginal level pro-rata by
    size in lots, rounded down; the lots that rounding leaves go one each to the orders
    with the largest remainders (Hamilton's method), then the larger order, then by a
    hash of the batch seed and the account (a rotating, arrival-free order), then by
    `_same_key`. Returns (order, size) for every order that gets something."""
    out: list[tuple[Order, int]] = []
    left = volume
    i = 0
    n = len(orders)
    while i < n and left > 0:
        j = i
        level_size = 0
        while j < n and orders[j].price == orders[i].price:
            level_size += orders[j].size
            j += 1
        if level_size <= left:
            for k in range(i, j):
                out.append((orders[k], orders[k].size))
            left -= level_size
        else:
            total_lots = level_size // lot
            share_lots = left // lot
            given = 0
            ranked: list[tuple[int, int, bytes, SameKey, int]] = []
            shares: list[int] = []
            for k in range(i, j):
                lots = orders[k].size // lot
                whole, fraction = divmod(share_lots * lots, total_lots)
                shares.append(whole)
                given += whole
                if fraction:
                    digest = hashlib.blake2b(
                        seed + orders[k].account.address, digest_size=8
                    ).digest()
                    ranked.append((-fraction, -lots, digest, _same_key(orders[k], ioc), k - i))
            ranked.sort()
            for r in range(share_lots - given):
                shares[ranked[r][4]] += 1
            for k in range(i, j):
                if shares[k - i]:
                    out.append((orders[k], shares[k - i] * lot))
            left = 0
        i = j
    assert left == 0, "the eligible side holds less than the volume"
    return out


class Auctions:
    def __init__(self, engine: Engine, genesis: Genesis) -> None:
        self.engine = engine
        self.markets: dict[int, AuctionMarket] = {
            m.id: AuctionMarket(engine.books[m.id], m.auction_blocks)
            for m in sorted(genesis.markets, key=_market_id)
            if m.auction_blocks
        }
        self.height = 0  # blocks applied since genesis: batch boundaries count them

    # ------------------------------------------------------------------ entries

    def place(
        self,
        address: bytes,
        account: Account,
        book: Book,
        is_buy: bool,
        kind: str,
        price: int,
        size: int,
        tif: str,
        cloid: int | None,
        expires_ms: int | None,
        ev: list[Event],
    ) -> None:
        """A place that passed the engine's static checks, in an auction market: joins
        the book for the next clearing without matching."""
        if tif != "gtc" and tif != "ioc":
            msg = (
                f"a batch auction market takes gtc and ioc orders, not {tif}: there is no "
                "taker to avoid (post) and no all-or-none fill at a uniform price (fok)"
            )
            ev.append(_new(Rejected, (Reason.BAD_TIF, msg)))
            return
        crossed = _own_cross(account, book, is_buy, price)
        if crossed is not None:
            ev.append(_new(Rejected, _self_cross(crossed)))
            return
        engine = self.engine
        need = engine._check_order(account, book, is_buy, price, size, "gtc", 0)
        if type(need) is not int:
            ev.append(_new(Rejected, need))
            return
        oid = engine.next_oid
        engine.next_oid = oid + 1
        side = BUY if is_buy else SELL
        ev.append(_new(Accepted, (oid, address, book.id, side, kind, price, size, tif, cloid)))
        asset = book.quote if is_buy else book.base
        engine._rest(account, book, is_buy, price, size, need, asset, oid, cloid, expires_ms, False)
        if tif == "ioc":
            self.markets[book.id].ioc[oid] = account
        engine._balance_event(ev, account, asset)

    def modify(
        self, address: bytes, account: Account, order: Order, price: int, size: int,
        ev: list[Event],
    ) -> None:  # fmt: skip
        """Cancel-replace in an auction market (price and size checked on the grid by the
        engine): same oid, cloid, expiry and IOC-ness; never matches (no priority to keep)."""
        book = order.book
        is_buy = order.is_buy
        crossed = _own_cross(account, book, is_buy, price)
        if crossed is not None:
            ev.append(_new(Rejected, _self_cross(crossed)))
            return
        engine = self.engine
        need = engine._check_order(account, book, is_buy, price, size, "gtc", order.reserved)
        if type(need) is not int:
            ev.append(_new(Rejected, need))
            return
        (book.bids if is_buy else book.asks).remove(order)
        engine._forget(order)
        oid = order.oid
        ev.append(_new(Modified, (oid, address, book.id, price, size, False)))
        asset = book.quote if is_buy else book.base
        engine._rest(
            account, book, is_buy, price, size, need, asset, oid, order.cloid,
            order.expires_ms, False,
        )  # fmt: skip
        engine._balance_event(ev, account, asset)

    # ---------------------------------------------------------------- clearing

    def end_block(self, ev: list[Event]) -> None:
        """After every entry of a block: clear the markets whose batch ends here, in
        market id order."""
        height = self.height = self.height + 1
        for market in self.markets.values():
            if height % market.blocks == 0:
                self._clear(market, height // market.blocks, ev)

    def _clear(self, market: AuctionMarket, batch: int, ev: list[Event]) -> None:
        engine = self.engine
        book = market.book
        bids, asks = book.bids, book.asks
        touched: dict[bytes, Account] = {}
        if bids.keys and asks.keys and bids.keys[-1] >= -asks.keys[-1]:
            # Only the crossed part can trade: bids at the best ask or more, asks at the
            # best bid or less (a clearing price lies between the two).
            best_bid, best_ask = bids.keys[-1], -asks.keys[-1]
            buys: list[tuple[Level, int]] = []  # (level, open size), best price first
            for level in bids.best_first():
                if level.price < best_ask:
                    break
                buys.append((level, _open_size(level)))
            sells: list[tuple[Level, int]] = []
            for level in asks.best_first():
                if level.price > best_bid:
                    break
                sells.append((level, _open_size(level)))
            cleared = clearing_price(
                [(level.price, size) for level, size in buys],
                [(level.price, size) for level, size in sells],
                book.tick,
                market.last_price,
            )
            if cleared is not None:
                price, volume = cleared
                demand = sum(size for level, size in buys if level.price >= price)
                supply = sum(size for level, size in sells if level.price <= price)
                seed = book.id.to_bytes(4, "big") + batch.to_bytes(8, "big")
                ioc = market.ioc
                buy_fills = _allocate(_takers(buys, volume), volume, book.lot, seed, ioc)
                sell_fills = _allocate(_takers(sells, volume), volume, book.lot, seed, ioc)
                ev.append(_new(AuctionCleared, (book.id, batch, price, volume, demand - supply)))
                self._settle(
                    book, price, _canonical(buy_fills, ioc), _canonical(sell_fills, ioc), touched,
                    ev,
                )  # fmt: skip
                market.last_price = price
        if market.ioc:
            left: list[tuple[Order, int]] = []
            for oid, account in market.ioc.items():
                order = account.orders.get(oid)
                if order is not None:
                    left.append((order, order.size))
            for order, _ in _canonical(left, market.ioc):
                (bids if order.is_buy else asks).remove(order)
                engine._forget(order)
                account = order.account
                touched[account.address] = account
                ev.append(
                    _new(Cancelled, (order.oid, account.address, book.id, order.size, Reason.IOC))
                )
            market.ioc = {}
        for address in sorted(touched):
            account = touched[address]
            for asset in (book.base, book.quote):
                engine._balance_event(ev, account, asset)

    def _settle(
        self,
        book: Book,
        price: int,
        buy_fills: list[tuple[Order, int]],
        sell_fills: list[tuple[Order, int]],
        touched: dict[bytes, Account],
        ev: list[Event],
    ) -> None:
        """Pair the buy and sell fills (each side in `_same_key` order, so the pairing
        and the trade ids ignore arrival) into trades, move the funds and the fees, and
        take filled orders off the book. Every fill pays the taker fee rate."""
        engine = self.engine
        lot, bps, base, quote, market = book.lot, book.taker_bps, book.base, book.quote, book.id
        state = engine.state
        trade_id = engine.next_trade_id
        fees = 0
        i = j = 0
        buy_left = buy_fills[0][1] if buy_fills else 0
        sell_left = sell_fills[0][1] if sell_fills else 0
        while i < len(buy_fills) and j < len(sell_fills):
            buy, sell = buy_fills[i][0], sell_fills[j][0]
            size = buy_left if buy_left < sell_left else sell_left
            notional = price * (size // lot)
            fee = notional * bps // BPS
            # The buyer: its reservation at its limit shrinks with its open size; what
            # it releases covers the notional and the fee (Book.reserve is superadditive).
            buyer = buy.account
            reserved = book.reserve(buy.price, buy.size - size)
            released = buy.reserved - reserved
            buy.reserved = reserved
            buy.size -= size
            buyer.locked[quote] -= released
            buyer.available[quote] += released - notional - fee
            buyer.available[base] += size
            if buyer.leaf[base] < 0:
                state.new_leaf(buyer, base)
            # The seller: its base leaves the reservation, the proceeds less the fee arrive.
            seller = sell.account
            sell.reserved -= size
            sell.size -= size
            seller.locked[base] -= size
            seller.available[quote] += notional - fee
            if seller.leaf[quote] < 0:
                state.new_leaf(seller, quote)
            fees += 2 * fee
            for who in (buyer, seller):
                state.dirty[who] = None
                touched[who.address] = who
            ev.append(_new(Trade, (trade_id, market, price, size, AUCTION_SIDE, buy.oid, sell.oid)))
            ev.append(
                _new(
                    Fill,
                    (trade_id, buy.oid, buyer.address, market, BUY, price, size, fee, False,
                     buy.size),
                )
            )  # fmt: skip
            ev.append(
                _new(
                    Fill,
                    (trade_id, sell.oid, seller.address, market, SELL, price, size, fee, False,
                     sell.size),
                )
            )  # fmt: skip
            trade_id += 1
            buy_left -= size
            sell_left -= size
            if not buy_left:
                _done(engine, book, buy)
                i += 1
                if i < len(buy_fills):
                    buy_left = buy_fills[i][1]
            if not sell_left:
                _done(engine, book, sell)
                j += 1
                if j < len(sell_fills):
                    sell_left = sell_fills[j][1]
        assert i == len(buy_fills) and j == len(sell_fills), "the two sides differ in volume"
        engine.next_trade_id = trade_id
        if fees:
            fee_account = engine.fee_account
            fee_account.available[quote] += fees
            if fee_account.leaf[quote] < 0:
                state.new_leaf(fee_account, quote)
            state.dirty[fee_account] = None
            touched[fee_account.address] = fee_account


def _open_size(level: Level) -> int:
    size = 0
    for order in level.orders:
        if order.live:
            size += order.size
    return size


def _takers(levels: list[tuple[Level, int]], volume: int) -> list[Order]:
    """The orders of one side that share `volume`, best price first: whole levels until
    the one that reaches the volume (the marginal level) included. The levels are all
    eligible at the clearing price up to there: the volume is matched within them."""
    orders: list[Order] = []
    reached = 0
    for level, size in levels:
        if reached >= volume:
            break
        for order in level.orders:
            if order.live:
                orders.append(order)
        reached += size
    return orders


def _market_id(market: Any) -> int:
    market_id: int = market.id
    return market_id


def _canonical(fills: list[tuple[Order, int]], ioc: dict[int, Account]) -> list[tuple[Order, int]]:
    """`fills` in `_same_key` order of their orders (as they are now)."""
    keyed = [(_same_key(order, ioc), order, size) for order, size in fills]
    keyed.sort(key=_first)
    return [(order, size) for _, order, size in keyed]


def _first(row: tuple[SameKey, Order, int]) -> SameKey:
    return row[0]


def _done(engine: Engine, book: Book, order: Order) -> None:
    """An order's fills at this clearing are settled: off the book if nothing is open."""
    if not order.size:
        (book.bids if order.is_buy else book.asks).remove(order)
        engine._forget(order)


def _own_cross(account: Account, book: Book, is_buy: bool, price: int) -> Order | None:
    """An order of the account on the other side of this book that a new order at
    `price` would cross (at one uniform price both would fill: a self-trade)."""
    for order in account.orders.values():
        if (
            order.book is book
            and order.is_buy != is_buy
            and (order.price <= price if is_buy else order.price >= price)
        ):
            return order
    return None


def _self_cross(order: Order) -> tuple[str, str]:
    side = BUY if order.is_buy else SELL
    return (
        Reason.SELF_CROSS,
        f"would cross the account's own {side} order {order.oid} at {order.price} in this "
        "batch auction market (at one clearing price both would fill: a self-trade)",
    )
