"""The one price-time matching loop every order book uses (spot, perps, options).

A taking order walks the opposite side best level first, each level's queue in time
order, and fills at the maker's price until its limit or its size is reached.
Self-trade prevention expires the maker (it is cancelled, the taker goes on). What a
fill does to balances, positions and margin belongs to the product: the loop hands
each fill to a `FillSettlement`, then emits the same three events for every product
(one `Trade`, the taker's `Fill`, the maker's `Fill`) and retires a filled maker.

Compiled with the rest of matching/ (mypyc): `settle` is a native virtual call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from matching.accounts import Account
from matching.book import Book, Order
from matching.config import BPS
from matching.events import BUY, SELL, Accepted, Cancelled, Event, Fill, Reason, Rejected, Trade

if TYPE_CHECKING:
    from matching.engine import Engine

_new: Final[Any] = tuple.__new__  # builds a NamedTuple event without its Python-level __new__


class FillSettlement:
    """What one fill does to the two accounts, for one product. Called before the
    fill's events are emitted, once per fill, with the maker order's size not yet
    reduced (`left` is what will remain of it)."""

    def settle(
        self,
        taker: Account,
        maker: Order,
        maker_account: Account,
        fill: int,
        price: int,
        notional: int,
        taker_fee: int,
        maker_fee: int,
        left: int,
    ) -> None:
        raise NotImplementedError


def accept(
    engine: Engine,
    address: bytes,
    account: Account,
    book: Book,
    is_buy: bool,
    limit: int,
    take: int,
    kind: str,
    price: int,
    size: int,
    tif: str,
    cloid: int | None,
    ev: list[Event],
) -> tuple[int, bool] | None:
    """The steps a derivative order (perp, option) takes after its product's own checks:
    a post-only order may not cross, a FOK order must fill `take` in full up to `limit`;
    then it gets its id and its `accepted` event (with the order's own price and size).
    Returns (oid, whether it crosses), or None after appending the one rejection."""
    opposite = book.asks if is_buy else book.bids
    crosses = opposite.crossed_by(limit, is_buy)
    if tif == "post" and crosses:
        ev.append(_new(Rejected, (Reason.POST_ONLY_WOULD_CROSS, "a post-only order may not take")))
        return None
    if tif == "fok":
        from matching.engine import _fillable

        if not crosses or not _fillable(opposite, -limit if is_buy else limit, take, account):
            msg = "the book cannot fill this FOK order in full"
            ev.append(_new(Rejected, (Reason.FOK_UNFILLABLE, msg)))
            return None
    oid = engine.next_oid
    engine.next_oid = oid + 1
    side = BUY if is_buy else SELL
    ev.append(_new(Accepted, (oid, address, book.id, side, kind, price, size, tif, cloid)))
    return oid, crosses


def cross(
    engine: Engine,
    settlement: FillSettlement,
    account: Account,
    book: Book,
    is_buy: bool,
    limit: int,
    size: int,
    oid: int,
    taker_bps: int,
    ev: list[Event],
    makers: dict[Account, None],
) -> tuple[int, int]:
    """Take liquidity from `book` up to `limit`; return the unfilled size and the fees
    charged (taker's and makers'), which the caller credits to the fee account in its
    collateral. `makers` collects the accounts filled against, in first-fill order.
    `taker_bps`: the taker fee rate (0 for a liquidation, which pays its own fee)."""
    if is_buy:
        opposite = book.asks
        threshold = -limit
        taker_side, maker_side = BUY, SELL
    else:
        opposite = book.bids
        threshold = limit
        taker_side, maker_side = SELL, BUY
    keys, levels = opposite.keys, opposite.levels
    lot, maker_bps = book.lot, book.maker_bps
    market = book.id
    address = account.address
    trade_id = engine.next_trade_id
    fees = 0
    remaining = size
    while remaining and keys and keys[-1] >= threshold:
        key = keys[-1]
        level = levels[key]
        fill_price = level.price
        queue = level.orders
        while remaining and level.live:
            maker = queue[0]
            if not maker.live:
                queue.popleft()
                continue
            maker_account = maker.account
            if maker_account is account:
                queue.popleft()
                maker.live = False
                level.live -= 1
                engine._forget(maker)
                ev.append(
                    _new(Cancelled, (maker.oid, address, market, maker.size, Reason.SELF_TRADE))
                )
                continue
            fill = maker.size if maker.size <= remaining else remaining
            notional = fill_price * (fill // lot)
            taker_fee = notional * taker_bps // BPS
            maker_fee = notional * maker_bps // BPS
            left = maker.size - fill
            settlement.settle(
                account, maker, maker_account, fill, fill_price, notional, taker_fee,
                maker_fee, left,
            )  # fmt: skip
            makers[maker_account] = None
            fees += taker_fee + maker_fee
            remaining -= fill
            ev.append(_new(Trade, (trade_id, market, fill_price, fill, taker_side, oid, maker.oid)))
            ev.append(
                _new(
                    Fill,
                    (trade_id, oid, address, market, taker_side, fill_price, fill, taker_fee,
                     False, remaining),
                )
            )  # fmt: skip
            ev.append(
                _new(
                    Fill,
                    (trade_id, maker.oid, maker_account.address, market, maker_side,
                     fill_price, fill, maker_fee, True, left),
                )
            )  # fmt: skip
            trade_id += 1
            maker.size = left
            if not left:  # filled: it reserves nothing more (see Engine._forget)
                queue.popleft()
                maker.live = False
                level.live -= 1
                del maker_account.orders[maker.oid]
                if maker.cloid is not None:
                    del maker_account.cloids[maker.cloid]
        if not level.live:
            del levels[key]
            keys.pop()
    engine.next_trade_id = trade_id
    return remaining, fees
