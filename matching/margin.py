"""Positions and margin: what an account holds in perpetual markets, what it must hold
against it, and what it is worth (docs/MATCHING.md, "Perpetual futures").

Integers only. Prices are quote engine units per lot, sizes base (contract) units, so a
position of `size` is worth `size // lot * mark` quote units (exact: sizes are multiples of
the lot). A position keeps its signed `entry` notional (the cost of its open size: > 0
long, < 0 short); its unrealized PnL is `lots * mark - entry`. Closing part of it realizes
the matching part of `entry` (rounded down, which only moves value between realized and
entry: the cash of every trade still sums to zero). Margin tiers are continuous (a
"deduction" per tier, as Binance and Hyperliquid do), so the requirement never jumps when a
notional crosses a tier: that bounds how fast a mark move can eat an account's margin
buffer, which the liquidation index relies on (liquidation.py).

This module holds no engine state beyond positions and market prices and does no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from matching.config import BPS, PerpParams

if TYPE_CHECKING:
    from matching.accounts import Account
    from matching.book import Book

CROSS: Final = -1  # the market id of an account's cross-margin unit in events


class Tiers:
    """Continuous tiered margin: in tier i (notional up to caps[i]) the requirement is
    ceil((notional * rate_i - deduction_i) / 10_000), deductions chosen so it is continuous."""

    __slots__ = ("cap0", "caps", "im", "im0", "im_ded", "mm", "mm0", "mm_ded", "mm_max")

    def __init__(self, tiers: tuple[tuple[int, int, int], ...]) -> None:
        self.caps = [t[0] for t in tiers]
        self.im = [t[1] for t in tiers]
        self.mm = [t[2] for t in tiers]
        self.im_ded = _deductions(self.caps, self.im)
        self.mm_ded = _deductions(self.caps, self.mm)
        self.mm_max = self.mm[-1]
        self.cap0 = self.caps[0]  # the first tier's cap and rate, read by every check
        self.im0 = self.im[0]
        self.mm0 = self.mm[0]

    def _tier(self, notional: int) -> int:
        caps = self.caps
        i = 0
        last = len(caps) - 1
        while i < last and notional > caps[i]:
            i += 1
        return i

    def maintenance(self, notional: int) -> int:
        # Ceilings as (x + BPS - 1) // BPS (the same integer as -(-x // BPS)): compiled
        # code multiplies small non-negative ints inline and falls back to Python
        # integers for a negative operand (mypyc's overflow test is unsigned).
        if notional <= self.cap0:
            return (notional * self.mm0 + BPS - 1) // BPS
        i = self._tier(notional)
        return (notional * self.mm[i] - self.mm_ded[i] + BPS - 1) // BPS

    def initial(self, notional: int, leverage: int) -> int:
        """The tiered initial margin, and at least notional / leverage (rounded up)."""
        if notional <= self.cap0:
            tiered = (notional * self.im0 + BPS - 1) // BPS
        else:
            i = self._tier(notional)
            tiered = (notional * self.im[i] - self.im_ded[i] + BPS - 1) // BPS
        by_leverage = (notional + leverage - 1) // leverage
        return tiered if tiered > by_leverage else by_leverage


def _deductions(caps: list[int], rates: list[int]) -> list[int]:
    out = [0]
    for i in range(1, len(caps)):
        out.append(out[-1] + caps[i - 1] * (rates[i] - rates[i - 1]))
    return out


class PerpMarket:
    """A perpetual market's parameters and price state (index, mark, premium, funding)."""

    __slots__ = (
        "book",
        "fresh",
        "holders",
        "id",
        "index",
        "last_sample_ms",
        "last_trade",
        "lot",
        "mark",
        "next_funding_ms",
        "params",
        "premium_count",
        "premium_ema",
        "premium_sum",
        "tiers",
        "variation",
    )

    def __init__(self, book: Book, params: PerpParams) -> None:
        self.book = book
        self.id = book.id
        self.lot = book.lot
        self.params = params
        self.tiers = Tiers(params.margin_tiers)
        self.index = 0  # 0 while no fresh quorum
        self.mark = 0  # 0 until the first fresh index; frozen while the index is stale
        self.fresh = False  # a fresh oracle quorum at the last block's end (else reduce-only)
        self.premium_ema = 0  # ppb of the index
        self.premium_sum = 0  # samples since the last funding, for their average
        self.premium_count = 0
        self.last_sample_ms = 0
        self.last_trade = 0  # price of the last fill, 0 before any
        self.next_funding_ms = 0  # 0 until the first block sets the first boundary
        # Total variation of the mark (sum of |moves|) since genesis: the clock of the
        # liquidation index (liquidation.py).
        self.variation = 0
        self.holders: dict[Account, None] = {}  # accounts with a non-zero position


class Position:
    """An account's position in one perp market (kept at size 0: it holds the leverage
    setting, the open-order totals and the history)."""

    __slots__ = (
        "ask_notional",
        "ask_size",
        "bid_notional",
        "bid_size",
        "entry",
        "funding",
        "isolated",
        "leaf",
        "leverage",
        "margin",
        "market",
        "realized",
        "size",
        "trigger",
    )

    def __init__(self, market: PerpMarket) -> None:
        self.market = market
        self.size = 0  # signed base units: > 0 long
        self.entry = 0  # signed notional of the open size
        self.realized = 0  # cumulative realized PnL (trading only: no fees, no funding)
        self.funding = 0  # cumulative funding received (< 0: paid)
        self.isolated = False
        self.margin = 0  # isolated margin
        self.leverage = market.params.max_leverage
        # Open orders of the account in this market: totals of size and of notional at
        # their limit prices (the "worst case of the side" of the initial margin).
        self.bid_size = 0
        self.bid_notional = 0
        self.ask_size = 0
        self.ask_notional = 0
        self.leaf = -1  # state-tree leaf index, -1 until the position first opens
        # The key of its live entry on the market's liquidation heap, -1 without one
        # (liquidation.py; not state: a restored engine rebuilds it).
        self.trigger = -1

    def lots(self) -> int:
        return self.size // self.market.lot

    def value(self) -> int:
        """Signed notional at the mark."""
        return signed_value(self.size // self.market.lot, self.market.mark)

    def exposure(self) -> int:
        """Notional at risk with every open order of the worse side filled."""
        value = signed_value(self.size // self.market.lot, self.market.mark)
        buy = value + self.bid_notional
        sell = value - self.ask_notional
        buy = buy if buy >= 0 else -buy
        sell = sell if sell >= 0 else -sell
        return buy if buy > sell else sell

    def initial(self) -> int:
        return self.market.tiers.initial(self.exposure(), self.leverage)

    def maintenance(self) -> int:
        value = self.value()
        return self.market.tiers.maintenance(value if value >= 0 else -value)


class PerpAccount:
    """An account's perp state: positions by market id, in first-use order."""

    __slots__ = ("positions",)

    def __init__(self) -> None:
        self.positions: dict[int, Position] = {}


def cross_equity(positions: dict[int, Position], cash: int) -> int:
    """Cash (the collateral's available balance) plus the cross positions' unrealized PnL."""
    equity = cash
    for pos in positions.values():
        if pos.size and not pos.isolated:
            equity += signed_value(pos.size // pos.market.lot, pos.market.mark) - pos.entry
    return equity


def cross_maintenance(positions: dict[int, Position]) -> int:
    total = 0
    for pos in positions.values():
        if pos.size and not pos.isolated:
            total += pos.maintenance()
    return total


def cross_initial(positions: dict[int, Position]) -> int:
    """Initial margin the cross balance must cover: every cross position with its orders,
    and the orders of isolated positions (their margin comes from cross when they fill)."""
    total = 0
    for pos in positions.values():
        if not pos.isolated:
            if pos.size or pos.bid_size or pos.ask_size:
                total += pos.initial()
        elif pos.bid_size or pos.ask_size:
            worst = pos.bid_notional if pos.bid_notional > pos.ask_notional else pos.ask_notional
            total += pos.market.tiers.initial(worst, pos.leverage)
    return total


def cross_equity_initial(positions: dict[int, Position], cash: int) -> tuple[int, int]:
    """cross_equity and cross_initial in one pass (the margin check of every order)."""
    equity = cash
    total = 0
    for pos in positions.values():
        size = pos.size
        if not pos.isolated:
            if size:
                market = pos.market
                lots = size // market.lot
                value = lots * market.mark if lots >= 0 else -(-lots * market.mark)
                equity += value - pos.entry
                buy = value + pos.bid_notional
                sell = value - pos.ask_notional
            elif pos.bid_size or pos.ask_size:
                market = pos.market
                buy = pos.bid_notional
                sell = -pos.ask_notional
            else:
                continue
            buy = buy if buy >= 0 else -buy
            sell = sell if sell >= 0 else -sell
            total += market.tiers.initial(buy if buy > sell else sell, pos.leverage)
        elif pos.bid_size or pos.ask_size:
            worst = pos.bid_notional if pos.bid_notional > pos.ask_notional else pos.ask_notional
            total += pos.market.tiers.initial(worst, pos.leverage)
    return equity, total


def signed_value(lots: int, mark: int) -> int:
    """lots * mark, multiplied as non-negative ints (compiled code multiplies those
    inline; a negative operand takes the slow path of Python integers)."""
    return lots * mark if lots >= 0 else -(-lots * mark)


def isolated_equity(pos: Position) -> int:
    return pos.margin + signed_value(pos.size // pos.market.lot, pos.market.mark) - pos.entry


def bankruptcy_price(mark: int, equity: int, lots: int) -> int:
    """The price at which closing `lots` (signed) leaves `equity` at exactly zero, rounded
    so that any fill at it or better leaves the equity >= 0: a long sells at >= it, a
    short buys at <= it."""
    assert lots != 0
    if lots > 0:
        return mark - equity // lots
    return mark + equity // -lots
