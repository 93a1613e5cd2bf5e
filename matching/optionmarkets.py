"""Option markets inside the engine: European, cash-settled calls and puts on a perp
market's oracle index (docs/MATCHING.md, "Options").

`OptionMarkets` is the engine's option half, owned by `Perps` (an option's underlying is a
perp market: its committee index is the forward). It holds the series (per-series mark vol,
mark, risk vector, settlement TWAP), the accounts' option holdings, and:

- orders on a series' book: the engine's static checks, then post-trade initial margin
  (the whole account: options, perps and open orders, portfolio.py), price-time matching
  with self-trade prevention as every market; a fill moves the premium (collateral) and
  the holdings, fees as spot;
- committee vols (`vols` entries, median of the fresh ones like prices) and, at each
  block's end, each series' mark vol (options.mark_vol), mark and risk vector;
- expiry: the index averaged over the rules' `twap_ms` before expiry, one sample per
  block, then every holding paid its intrinsic value in cash and the series' orders
  cancelled; an expired series takes no more orders;
- the margin of an account that holds options (`requirement`), which replaces the perp
  cross margin for it everywhere (orders, withdrawals, liquidation), and its liquidation:
  cancel its orders, then close legs by how much closing them relieves the maintenance.

Pure and integer-only, like the rest of matching/: time is the block timestamp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from matching import options as op
from matching import portfolio as pf
from matching.accounts import Account
from matching.book import Book, Order
from matching.config import BPS, Genesis, Market, OptionParams
from matching.crossing import FillSettlement, accept, cross
from matching.events import (
    Cancelled,
    Event,
    Liquidation,
    LiquidationOrder,
    MarginModeSet,
    Modified,
    OptionMark,
    OptionPosition,
    OptionSettled,
    OptionSettlement,
    Reason,
    Rejected,
    VolObserved,
)
from matching.margin import (
    CROSS,
    PerpMarket,
    Position,
    bankruptcy_price,
    cross_equity,
    cross_initial,
    cross_maintenance,
)
from matching.oracle import Oracle, read_entry

if TYPE_CHECKING:
    from matching.engine import Engine
    from matching.perp import Perps

_new: Final[Any] = tuple.__new__
E18: Final = op.E18
# A series' risk vector is recomputed when its forward or mark vol moves, and at least this
# often as time to expiry shrinks (the mark itself is repriced every block).
RISK_REFRESH_MS: Final = 60_000


def _fail(ev: list[Event], code: str, message: str) -> None:
    ev.append(_new(Rejected, (code, message)))


class Series:
    """One option market: its terms and its price state."""

    __slots__ = (
        "book",
        "committee_vol",
        "expiry_ms",
        "forward",
        "from_book",
        "holders",
        "id",
        "is_call",
        "lot",
        "mark",
        "mark_e18",
        "settle_price",
        "settled",
        "strike",
        "twap_count",
        "twap_sum",
        "underlying",
        "underlying_lots",
        "vector",
        "vector_at",
        "vol",
    )

    def __init__(self, book: Book, params: OptionParams, underlying: PerpMarket) -> None:
        self.book = book
        self.id = book.id
        self.lot = book.lot
        self.underlying = underlying
        self.strike = params.strike
        self.expiry_ms = params.expiry_ms
        self.is_call = params.is_call
        self.underlying_lots = params.underlying_lots
        self.committee_vol = params.vol_e9  # the genesis vol until the committee publishes
        self.forward = 0  # index x underlying_lots at the last fresh block's end
        self.vol = params.vol_e9  # the mark vol
        self.from_book = False
        self.mark_e18 = 0  # Black value per lot, price units x 10^18
        self.mark = 0  # the same, floored to price units
        self.twap_sum = 0
        self.twap_count = 0
        self.settled = False
        self.settle_price = 0
        self.holders: dict[Account, None] = {}  # accounts with a non-zero holding
        self.vector: pf.RiskVector | None = None  # None before the first fresh index
        self.vector_at = (0, 0, 0)  # (forward, vol, block ms) the vector was computed at


class Holding:
    """An account's position in one series (kept at size 0 once it has a leaf)."""

    __slots__ = ("leaf", "premium", "series", "size")

    def __init__(self, series: Series) -> None:
        self.series = series
        self.size = 0  # signed base units: > 0 long
        self.premium = 0  # net premium paid for it (< 0: received), collateral units
        self.leaf = -1  # state-tree leaf index, -1 until the holding first opens


class OptionAccount:
    __slots__ = ("holdings", "open", "standard")

    def __init__(self) -> None:
        self.holdings: dict[int, Holding] = {}  # market id -> holding, first-use order
        self.standard = False  # per-position (standard) margin instead of the risk matrix
        # Open option orders per series: [bid lots, ask lots, Σ bid price x lots, Σ ask
        # price x lots], kept as orders rest, fill and leave (derived state: a restored
        # engine rebuilds it from the orders), so a margin check never walks the orders.
        self.open: dict[int, list[int]] = {}

    def add_open(self, market: int, is_buy: bool, lots: int, price: int) -> None:
        row = self.open.get(market)
        if row is None:
            row = self.open[market] = [0, 0, 0, 0]
        side = 0 if is_buy else 1
        row[side] += lots
        row[side + 2] += lots * price
        if not (row[0] or row[1]):
            del self.open[market]


class OptionFills(FillSettlement):
    """An option fill: the maker's open-order margin vector shrinks, the premium moves
    from buyer to seller and both holdings move (`OptionMarkets.settle`)."""

    def __init__(self, options: OptionMarkets, s: Series) -> None:
        self.options = options
        self.series = s

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
        options, s = self.options, self.series
        options.accounts[maker_account].add_open(s.id, maker.is_buy, -(fill // s.book.lot), price)
        delta = -fill if maker.is_buy else fill
        options.settle(taker, s, delta, notional, taker_fee)
        options.settle(maker_account, s, -delta, notional, maker_fee)


class OptionMarkets:
    def __init__(self, engine: Engine, perps: Perps, genesis: Genesis) -> None:
        rules = genesis.option_rules
        assert rules is not None
        self.engine = engine
        self.perps = perps
        self.rules = rules
        self.params = pf.RiskParams(
            rules.price_move_bps,
            rules.price_steps,
            rules.vol_shift_e9,
            rules.vol_floor_e9,
            rules.initial_bps,
            rules.short_option_bps,
            rules.short_option_min_bps,
            rules.linear_bps,
        )
        self.grid = pf.ScenarioGrid(self.params)
        self.vol_rule = op.MarkVolRule(
            rules.min_depth, rules.max_spread_bps, rules.max_deviation_e9
        )
        self.series: dict[int, Series] = {}
        for m in genesis.option_markets:
            assert m.option is not None
            underlying = perps.markets[m.option.underlying]
            self.series[m.id] = Series(engine.books[m.id], m.option, underlying)
        # Linear risk vectors of the underlying perp markets (per perp lot, at the mark).
        self.linear: dict[int, pf.RiskVector] = {}
        self.vols = Oracle(genesis.oracle_members, genesis.oracle_quorum, list(self.series))
        self.accounts: dict[Account, OptionAccount] = {}  # first-use order

    def add_series(self, market: Market) -> None:
        """A series listed after genesis (its book made by the engine): last in every
        per-series order, where a restored engine, built from the genesis the listing
        extended, puts it too."""
        params = market.option
        assert params is not None and market.id not in self.series
        underlying = self.perps.markets[params.underlying]
        self.series[market.id] = Series(self.engine.books[market.id], params, underlying)
        self.vols.observations[market.id] = {}

    # ------------------------------------------------------------------- accounts

    def holder(self, account: Account) -> OptionAccount:
        oa = self.accounts.get(account)
        if oa is None:
            oa = self.accounts[account] = OptionAccount()
            self.perps.account_state(account)  # exit values and liquidation checks see it
        return oa

    def active(self, account: Account) -> bool:
        """Does the option margin apply: a non-zero holding or an open option order."""
        oa = self.accounts.get(account)
        if oa is None:
            return False
        for h in oa.holdings.values():
            if h.size:
                return True
        return bool(oa.open)

    def value_e18(self, oa: OptionAccount, shift: tuple[int, int] | None = None) -> int:
        """The holdings at their marks (price units x 10^18); `shift` = (market, contracts)
        adds a what-if holding."""
        total = 0
        for h in oa.holdings.values():
            if h.size:
                total += h.size // h.series.lot * h.series.mark_e18
        if shift is not None:
            total += shift[1] * self.series[shift[0]].mark_e18
        return total

    def account_value(self, account: Account) -> int:
        """The holdings at their marks, floored (the checkpoint's exit value adds it)."""
        oa = self.accounts.get(account)
        return 0 if oa is None else self.value_e18(oa) // E18

    def equity(self, account: Account, shift: tuple[int, int] | None = None) -> int:
        """Cross equity (collateral and cross perp PnL) plus the holdings at their marks."""
        pa = account.perp
        assert pa is not None
        cash = account.available[self.perps.coll]
        return (
            cross_equity(pa.positions, cash) + self.value_e18(self.accounts[account], shift) // E18
        )

    def requirement(
        self,
        account: Account,
        shift: tuple[int, int] | None = None,
        extra: tuple[int, bool, int, int] | None = None,
        skip: Order | None = None,
    ) -> tuple[int, int]:
        """(maintenance, initial) of the account's cross unit. `shift` = (market,
        contracts) a what-if holding, `extra` = (market, is_buy, contracts, price) a what-if
        option order, `skip` an order left out.

        Portfolio mode: per underlying with option holdings or orders, the risk matrix of
        the holdings and the cross perp position on it; the initial is the worst of three
        cases (as held, every open bid filled, every open ask filled, perp orders included)
        plus what the open option orders would lose against the mark at their limits. Perp
        positions on other markets keep their own tiered margin. Standard mode: the
        per-position margin of the options, and every perp position its own."""
        oa = self.accounts[account]
        pa = account.perp
        assert pa is not None
        positions = pa.positions
        series = self.series
        held: dict[int, list[int]] = {}  # market -> [held, + bids, - asks] contracts
        for h in oa.holdings.values():
            if h.size:
                n = h.size // h.series.lot
                held[h.series.id] = [n, n, n]
        if shift is not None:
            row = held.setdefault(shift[0], [0, 0, 0])
            for i in range(3):
                row[i] += shift[1]
        loss_e18 = 0
        orders = [(m, o[0], o[1], o[2], o[3]) for m, o in oa.open.items()]
        if extra is not None:
            n = extra[2] * extra[3]
            orders.append((extra[0], *((extra[2], 0, n, 0) if extra[1] else (0, extra[2], 0, n))))
        if skip is not None:
            n = skip.size // skip.book.lot
            m = skip.price * n
            orders.append((skip.book.id, *((-n, 0, -m, 0) if skip.is_buy else (0, -n, 0, -m))))
        for market, bid_lots, ask_lots, bid_notional, ask_notional in orders:
            row = held.setdefault(market, [0, 0, 0])
            mark = series[market].mark_e18
            row[1] += bid_lots
            row[2] -= ask_lots
            loss_e18 += bid_notional * E18 - bid_lots * mark + ask_lots * mark
            loss_e18 -= ask_notional * E18
        if loss_e18 < 0:
            loss_e18 = 0
        # Legs per underlying, three variants each.
        legs: dict[int, list[list[pf.Position]]] = {}
        for market, row in held.items():
            s = series[market]
            vector = s.vector
            assert vector is not None, "a series with positions or orders has a mark"
            per = legs.setdefault(s.underlying.id, [[], [], []])
            for i in range(3):
                if row[i]:
                    per[i].append((vector, row[i]))
        others = positions
        maintenance = 0
        initial = 0
        if oa.standard:
            for per in legs.values():
                held_margin = pf.standard_margin(self.params, per[0])
                maintenance += held_margin.maintenance
                top = held_margin.initial
                for v in (per[1], per[2]):
                    if v != per[0]:  # a side without open orders is the held case
                        top = max(top, pf.standard_margin(self.params, v).initial)
                initial += top
        else:
            others = {}
            for market_id, pos in positions.items():
                if market_id in legs and not pos.isolated:
                    per = legs[market_id]
                    vector = self.linear.get(market_id)
                    if vector is not None:
                        lots = pos.size // pos.market.lot
                        bids = pos.bid_size // pos.market.lot
                        asks = pos.ask_size // pos.market.lot
                        for i, n in enumerate((lots, lots + bids, lots - asks)):
                            if n:
                                per[i].append((vector, n))
                        # the perp orders' own loss against the mark at their limits
                        mark = pos.market.mark
                        loss_e18 += max(pos.bid_notional - bids * mark, 0) * E18
                        loss_e18 += max(asks * mark - pos.ask_notional, 0) * E18
                        continue
                others[market_id] = pos
            for per in legs.values():
                held_margin = pf.portfolio_margin(self.grid, per[0])
                maintenance += held_margin.maintenance
                top = held_margin.initial
                for v in (per[1], per[2]):
                    if v != per[0]:  # a side without open orders is the held case
                        top = max(top, pf.portfolio_margin(self.grid, v).initial)
                initial += top
        maintenance += cross_maintenance(others)
        initial += cross_initial(others) + -(-loss_e18 // E18)
        return maintenance, initial

    def free(self, account: Account) -> int:
        """Collateral not needed as initial margin (Perps.cross_free for an account with
        option state)."""
        cash = account.available[self.perps.coll]
        free = self.equity(account) - self.requirement(account)[1]
        return free if free < cash else cash

    def perp_check(self, account: Account, extra: int) -> tuple[int, int]:
        """(equity, initial + extra) for a perp order's margin check (Perps._check_margin),
        the order already counted in its position's open-order totals."""
        return self.equity(account), self.requirement(account)[1] + extra

    def set_mode(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        """{type: set_option_margin, mode: "portfolio" | "standard"}: refused if the
        account's equity would not cover its initial margin in the new mode."""
        from matching.engine import _malformed

        try:
            if len(a) != 2:
                raise KeyError
            mode = a["mode"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("set_option_margin")))
            return
        if mode != "portfolio" and mode != "standard":
            _fail(ev, Reason.BAD_MODE, "mode must be portfolio or standard")
            return
        oa = self.holder(account)
        old = oa.standard
        oa.standard = mode == "standard"
        if self.active(account) and self.equity(account) < self.requirement(account)[1]:
            oa.standard = old
            _fail(ev, Reason.INSUFFICIENT_MARGIN, f"not enough margin for the {mode} mode")
            return
        self.perps.touched[account] = None
        ev.append(_new(MarginModeSet, (address, oa.standard)))

    # ------------------------------------------------------------------ orders

    def _tradable(self, s: Series, ev: list[Event]) -> bool:
        if s.settled or self.engine.timestamp_ms >= s.expiry_ms:
            _fail(ev, Reason.SERIES_EXPIRED, f"series {s.id} expired at {s.expiry_ms}")
            return False
        if s.vector is None or not s.underlying.fresh:
            msg = f"series {s.id} has no fresh mark: no fresh oracle quorum on its underlying"
            _fail(ev, Reason.ORACLE_STALE, msg)
            return False
        return True

    def _check_margin(
        self,
        account: Account,
        s: Series,
        is_buy: bool,
        price: int,
        size: int,
        skip: Order | None = None,
        reducing: bool = False,
    ) -> tuple[str, str] | None:
        """Post-trade initial margin: equity must cover the account's initial margin with
        this order counted as open (both its fill and its loss against the mark), plus its
        worst fee. A `reducing` order (reduce-only, IOC or FOK) passes too if, filled in
        full at its limit, it leaves the account's free margin (equity - initial) no
        smaller than now."""
        book = s.book
        n = size // book.lot
        fee = price * n * book.fee_bps_max // BPS
        need = self.requirement(account, None, (s.id, is_buy, n, price), skip)[1] + fee
        have = self.equity(account)
        if have < need:
            if reducing:
                shift = (s.id, n if is_buy else -n)
                paid = price * n if is_buy else -price * n
                after = self.equity(account, shift) - paid - fee
                after -= self.requirement(account, shift)[1]
                if after >= have - self.requirement(account)[1]:
                    return None
            return Reason.INSUFFICIENT_MARGIN, f"needs {need} of margin, has {have}"
        return None

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
        reduce_only: bool = False,
    ) -> None:
        """An order on a series' book that passed the engine's static checks.

        Reduce-only (as perps): IOC, FOK or market only; needs a holding on the other
        side; fills at most the holding's size (the rest is cancelled, reason
        `reduce_only`). Unlike a perp's, it still passes a margin check (closing one
        option leg can raise a portfolio's requirement: a long put that hedges a long
        perp), but a lenient one: the usual one, or a free margin no smaller after the
        fill than before (`_check_margin`)."""
        s = self.series[book.id]
        if not self._tradable(s, ev):
            return
        oa = self.holder(account)
        take = size
        if reduce_only:
            if tif != "ioc" and tif != "fok":
                _fail(ev, Reason.REDUCE_ONLY_TIF, "a reduce-only order must be IOC, FOK or market")
                return
            h = oa.holdings.get(s.id)
            held = 0 if h is None else h.size
            if not held or (held > 0) == is_buy:
                msg = "reduce-only needs a holding on the other side"
                _fail(ev, Reason.REDUCE_ONLY_NO_POSITION, msg)
                return
            if held < 0:
                held = -held
            take = size if size < held else held
        refused = self._check_margin(account, s, is_buy, price, take, None, reduce_only)
        if refused is not None:
            ev.append(_new(Rejected, refused))
            return
        accepted = accept(
            self.engine, address, account, book, is_buy, price, take, kind, price, size, tif,
            cloid, ev,
        )  # fmt: skip
        if accepted is None:
            return
        oid = accepted[0]
        self._execute(account, s, is_buy, price, take, oid, cloid, expires_ms, tif, ev)
        if take < size:
            ev.append(_new(Cancelled, (oid, address, book.id, size - take, Reason.REDUCE_ONLY)))

    def _execute(
        self,
        account: Account,
        s: Series,
        is_buy: bool,
        price: int,
        size: int,
        oid: int,
        cloid: int | None,
        expires_ms: int | None,
        tif: str,
        ev: list[Event],
    ) -> None:
        book = s.book
        makers: dict[Account, None] = {}
        remaining = size
        crosses = (book.asks if is_buy else book.bids).crossed_by(price, is_buy)
        if crosses:
            remaining = self.match(account, s, is_buy, price, size, oid, ev, False, makers)
        if remaining and (tif == "gtc" or tif == "post"):
            order = Order(
                oid, account, book, is_buy, price, remaining, 0, cloid, expires_ms, tif == "post"
            )
            (book.bids if is_buy else book.asks).add(order)
            self.accounts[account].add_open(s.id, is_buy, remaining // book.lot, price)
            account.orders[oid] = order
            if cloid is not None:
                account.cloids[cloid] = order
            if expires_ms is not None:
                from heapq import heappush

                heappush(self.engine.expiries, (expires_ms, oid, account.address))
        elif remaining:
            ev.append(_new(Cancelled, (oid, account.address, book.id, remaining, Reason.IOC)))
        if crosses:
            self._fill_events(ev, account, s, makers)

    def modify(
        self,
        address: bytes,
        account: Account,
        order: Order,
        price: int,
        size: int,
        ev: list[Event],
    ) -> None:
        """Cancel-replace on a series (same rules as spot); the margin check counts the
        new order instead of the old one."""
        s = self.series[order.book.id]
        book = s.book
        if price == order.price and size <= order.size:
            released = (order.size - size) // book.lot
            self.accounts[account].add_open(s.id, order.is_buy, -released, price)
            order.size = size
            ev.append(_new(Modified, (order.oid, address, book.id, price, size, True)))
            return
        if not self._tradable(s, ev):
            return
        is_buy = order.is_buy
        refused = self._check_margin(account, s, is_buy, price, size, order)
        crosses = (book.asks if is_buy else book.bids).crossed_by(price, is_buy)
        if refused is None and order.post_only and crosses:
            refused = (Reason.POST_ONLY_WOULD_CROSS, "a post-only order may not take")
        if refused is not None:
            ev.append(_new(Rejected, refused))
            return
        (book.bids if is_buy else book.asks).remove(order)
        self.engine._forget(order)
        ev.append(_new(Modified, (order.oid, address, book.id, price, size, False)))
        tif = "post" if order.post_only else "gtc"
        self._execute(
            account, s, is_buy, price, size, order.oid, order.cloid, order.expires_ms, tif, ev
        )

    def order_gone(self, order: Order) -> None:
        """An option order left the book with `order.size` open (cancel, expiry,
        self-trade, modify, liquidation, settlement): it leaves the open-order totals."""
        s = self.series.get(order.book.id)
        if s is not None:
            oa = self.accounts[order.account]
            oa.add_open(s.id, order.is_buy, -(order.size // s.lot), order.price)

    def _fill_events(
        self, ev: list[Event], account: Account, s: Series, makers: dict[Account, None]
    ) -> None:
        perps = self.perps
        self._holding_event(ev, account, s)
        perps._balance_event(ev, account)
        makers.pop(account, None)
        for maker in makers:
            self._holding_event(ev, maker, s)
            perps._balance_event(ev, maker)
        fee_account = self.engine.fee_account
        if makers and fee_account is not account and fee_account not in makers:
            perps._balance_event(ev, fee_account)

    def _holding_event(self, ev: list[Event], account: Account, s: Series) -> None:
        h = self.accounts[account].holdings.get(s.id)  # None: only self-trades cancelled
        size, premium = (0, 0) if h is None else (h.size, h.premium)
        ev.append(_new(OptionPosition, (account.address, s.id, size, premium)))

    # ---------------------------------------------------------------- matching

    def match(
        self,
        account: Account,
        s: Series,
        is_buy: bool,
        limit: int,
        size: int,
        oid: int,
        ev: list[Event],
        liquidation: bool,
        makers: dict[Account, None],
    ) -> int:
        """Take liquidity up to `limit` (matching/crossing.py); return the unfilled size.
        A liquidation pays no taker fee (it pays the liquidation fee instead)."""
        engine = self.engine
        book = s.book
        taker_bps = 0 if liquidation else book.taker_bps
        remaining, fees = cross(
            engine, OptionFills(self, s), account, book, is_buy, limit, size, oid, taker_bps,
            ev, makers,
        )  # fmt: skip
        if fees:
            fee_account = engine.fee_account
            fee_account.available[self.perps.coll] += fees
            self.perps._ensure_leaf(fee_account)
            engine.state.dirty[fee_account] = None
        return remaining

    def settle(self, account: Account, s: Series, delta: int, notional: int, fee: int) -> None:
        """A fill of `delta` (signed base units) for `notional`: the buyer pays the premium,
        the seller gets it, each pays its fee."""
        oa = self.holder(account)
        h = oa.holdings.get(s.id)
        if h is None:
            h = oa.holdings[s.id] = Holding(s)
        cash = -notional if delta > 0 else notional
        account.available[self.perps.coll] += cash - fee
        h.size += delta
        h.premium -= cash
        if not h.size:
            h.premium = 0
        self._holding_moved(account, s, h)

    def _holding_moved(self, account: Account, s: Series, h: Holding) -> None:
        engine = self.engine
        if h.size:
            s.holders[account] = None
            if h.leaf < 0:
                self.perps._ensure_leaf(account)
                engine.state.new_position_leaf(account, s.id, h)
        else:
            s.holders.pop(account, None)
        engine.state.dirty[account] = None
        self.perps.touched[account] = None

    # -------------------------------------------------------------- committee vols

    def observe(self, a: Any, ev: list[Event]) -> None:
        """A committee entry {type: vols, member, vols: [[market, vol_e9], ...]}: all or
        nothing; the vols count from the end of this block (median of the fresh ones with
        the oracle quorum, as prices)."""
        read = read_entry(
            a, ev, self.vols, "vols", "vols", "[market, vol_e9]", len(self.series), self._vol_of
        )
        if read is None:
            return
        member, vols = read
        ts = self.engine.timestamp_ms
        for market_id, vol in vols.items():
            self.vols.observe(member, market_id, vol, ts)
            ev.append(_new(VolObserved, (member, market_id, vol)))

    def _vol_of(
        self, market_id: Any, vol: Any, seen: dict[int, int], ev: list[Event]
    ) -> int | None:
        if type(market_id) is not int or market_id not in self.series or market_id in seen:
            _fail(ev, Reason.UNKNOWN_MARKET, "unknown, non-option or repeated market in vols")
            return None
        if type(vol) is not int or not 0 < vol <= op.MAX_VOL_E9:
            _fail(ev, Reason.BAD_VOL, f"vol_e9 must be in [1, {op.MAX_VOL_E9}]")
            return None
        return vol

    # ------------------------------------------------------------- block's end

    def relinear(self) -> None:
        """The underlyings' linear risk vectors at their current marks (each block's end,
        and a restored engine)."""
        for market_id in sorted({s.underlying.id for s in self.series.values()}):
            market = self.perps.markets[market_id]
            if market.mark:
                vector = self.linear.get(market_id)
                if vector is None or vector.values[-1] != _linear_top(self.grid, market.mark):
                    self.linear[market_id] = pf.linear_risk(self.grid, market_id, market.mark)

    def revalue(self, s: Series) -> None:
        """The series' risk vector at the inputs in `vector_at` (forward, vol, block ms)."""
        forward, vol, at_ms = s.vector_at
        t_ms = s.expiry_ms - at_ms
        s.vector = pf.option_risk(self.grid, s.id, s.is_call, s.strike, forward, vol, t_ms)

    def end_block(self, ts: int, ev: list[Event]) -> None:
        """After the perp prices: per series (genesis order) the forward, a TWAP sample in
        the settlement window, settlement at expiry, else the mark vol, mark and risk
        vector; then every account holding options is due a margin check."""
        self.relinear()
        touched = self.perps.touched
        for s in self.series.values():
            if s.settled:
                continue
            underlying = s.underlying
            fresh = underlying.fresh
            if fresh:
                forward = underlying.index * s.underlying_lots
                if forward <= op.MAX_PRICE:
                    s.forward = forward
                else:
                    fresh = False
            if ts >= s.expiry_ms:
                self._settle_series(s, ev)
                continue
            if fresh and ts >= s.expiry_ms - self.rules.twap_ms:
                s.twap_sum += s.forward
                s.twap_count += 1
            committee = self.vols.index(s.id, ts, self.rules.vol_max_age_ms)
            if committee is not None:
                s.committee_vol = committee
            if s.forward:
                self._mark(s, ts, ev)
            for account in s.holders:
                touched[account] = None

    def _mark(self, s: Series, ts: int, ev: list[Event]) -> None:
        t_ms = s.expiry_ms - ts
        book = s.book
        bid = ask = bid_depth = ask_depth = 0
        if book.bids.keys:
            level = book.bids.levels[book.bids.keys[-1]]
            bid, bid_depth = level.price, level.open_size() // book.lot
        if book.asks.keys:
            level = book.asks.levels[book.asks.keys[-1]]
            ask, ask_depth = level.price, level.open_size() // book.lot
        vol = op.mark_vol(
            self.vol_rule, s.is_call, s.forward, s.strike, t_ms, s.committee_vol,
            bid, bid_depth, ask, ask_depth,
        )  # fmt: skip
        from_book = bid_depth > 0 and ask_depth > 0 and vol != s.committee_vol
        old = (s.forward, s.vol, s.mark, s.from_book)
        s.vol = vol
        s.from_book = from_book
        s.mark_e18 = op.price(s.is_call, s.forward, s.strike, vol, t_ms)
        s.mark = s.mark_e18 // E18
        at = s.vector_at
        if s.vector is None or at[0] != s.forward or at[1] != vol or ts - at[2] >= RISK_REFRESH_MS:
            s.vector_at = (s.forward, vol, ts)
            self.revalue(s)
        if old != (s.forward, s.vol, s.mark, s.from_book):
            ev.append(_new(OptionMark, (s.id, s.forward, vol, s.mark, from_book)))

    def _settle_series(self, s: Series, ev: list[Event]) -> None:
        """Expiry: settle at the TWAP of the window's samples (the last forward without
        any), pay every holding its intrinsic value, cancel the series' orders."""
        engine = self.engine
        perps = self.perps
        price = s.twap_sum // s.twap_count if s.twap_count else s.forward
        s.settled = True
        s.settle_price = price
        s.vector = None
        ev.append(_new(OptionSettlement, (s.id, price, s.twap_count)))
        book = s.book
        resting: list[Order] = []
        for side in (book.bids, book.asks):
            for level in side.best_first():
                resting.extend(level)
        resting.sort(key=_oid)
        for order in resting:
            (book.bids if order.is_buy else book.asks).remove(order)
            engine._forget(order)
            account = order.account
            ev.append(
                _new(
                    Cancelled,
                    (order.oid, account.address, book.id, order.size, Reason.SETTLEMENT),
                )
            )
        payoff = price - s.strike if s.is_call else s.strike - price
        if payoff < 0:
            payoff = 0
        s.mark_e18 = payoff * E18
        s.mark = payoff
        coll = perps.coll
        for account in sorted(s.holders, key=_address):
            h = self.accounts[account].holdings[s.id]
            amount = h.size // s.lot * payoff
            account.available[coll] += amount
            size = h.size
            h.size = 0
            h.premium = 0
            ev.append(_new(OptionSettled, (account.address, s.id, size, amount)))
            self._holding_event(ev, account, s)
            perps._balance_event(ev, account)
            engine.state.dirty[account] = None
            perps.touched[account] = None
        s.holders.clear()

    # ------------------------------------------------------------- liquidation

    def check(self, account: Account, ev: list[Event]) -> bool:
        """The Liquidator's check of the cross unit for an account the option margin
        applies to (False: it does not; the perp rules apply)."""
        if not self.active(account):
            return False
        equity = self.equity(account)
        maintenance = self.requirement(account)[0]
        if equity < maintenance:
            self.liquidate(account, equity, maintenance, ev)
        return True

    def _legs(self, account: Account) -> list[tuple[int, int]]:
        """Open legs as (relief, market id), most relief first (ties by market id): a
        leg's relief is the maintenance now less the maintenance with it closed whole."""
        oa = self.accounts[account]
        pa = account.perp
        assert pa is not None
        now = self.requirement(account)[0]
        legs: list[tuple[int, int]] = []
        for h in oa.holdings.values():
            if h.size:
                after = self.requirement(account, (h.series.id, -(h.size // h.series.lot)))[0]
                legs.append((now - after, h.series.id))
        for market_id, pos in pa.positions.items():
            if pos.size and not pos.isolated:
                size = pos.size
                pos.size = 0  # a what-if, undone at once
                after = self.requirement(account)[0]
                pos.size = size
                legs.append((now - after, market_id))
        legs.sort(key=_relief)
        return legs

    def liquidate(self, account: Account, equity: int, maintenance: int, ev: list[Event]) -> None:
        """Cancel every order of the account; then, while equity is under maintenance,
        close the open leg whose closing relieves the maintenance most: an option through
        the book (IOC within the rules' band around its mark), the rest to the insurance
        fund at the mark if its margin allows; a perp as the perp liquidation does (book
        up to the bankruptcy price, the fund, auto-deleveraging). Then the liquidation fee
        and bad debt, as for perps."""
        perps = self.perps
        coll = perps.coll
        address = account.address
        liquidator = perps.liquidator
        ev.append(_new(Liquidation, (address, CROSS, equity, maintenance)))
        liquidator._cancel_orders(account, None, ev)
        pa = account.perp
        assert pa is not None
        oa = self.accounts[account]
        fee_due = 0
        tried: set[int] = set()
        while self.equity(account) < self.requirement(account)[0]:
            legs = [leg for leg in self._legs(account) if leg[1] not in tried]
            if not legs:
                break
            market_id = legs[0][1]
            tried.add(market_id)
            s = self.series.get(market_id)
            if s is not None:
                fee_due += self._close_option(account, oa.holdings[market_id], ev)
            else:
                fee_due += self._close_perp(account, pa.positions[market_id], ev)
        flat = not any(p.size and not p.isolated for p in pa.positions.values())
        liquidator.settle_liquidation(
            account, fee_due, account.available[coll], flat and not self.active(account), ev
        )

    def _close_option(self, account: Account, h: Holding, ev: list[Event]) -> int:
        """Close a holding: IOC against the book within the band, the rest to the fund.
        Returns the liquidation fee due on what closed."""
        s = h.series
        book = s.book
        tick = book.tick
        size = h.size
        is_buy = size < 0
        band = s.mark * self.rules.liquidation_band_bps // BPS
        # within the band, on the tick grid
        limit = (s.mark + band) // tick * tick if is_buy else -(-(s.mark - band) // tick) * tick
        if limit < tick:
            limit = tick
        ev.append(_new(LiquidationOrder, (account.address, s.id, size, limit)))
        makers: dict[Account, None] = {}
        self.match(account, s, is_buy, limit, size if size > 0 else -size, 0, ev, True, makers)
        if h.size:
            self._backstop(account, h, ev)
        self._fill_events(ev, account, s, makers)
        closed = (size - h.size) // s.lot
        closed = closed if closed > 0 else -closed
        fee_bps = s.underlying.params.liquidation_fee_bps
        return closed * s.mark * fee_bps // BPS

    def _backstop(self, account: Account, h: Holding, ev: list[Event]) -> None:
        """The insurance fund takes the holding at the mark if its equity then still covers
        its maintenance (no auto-deleveraging of options: what it refuses stays open and
        is tried again at the next block's end)."""
        from matching.events import Backstop

        perps = self.perps
        insurance = perps.insurance
        if account is insurance:
            return
        s = h.series
        contracts = h.size // s.lot
        self.holder(insurance)
        cash = insurance.available[perps.coll] - contracts * s.mark
        pa = insurance.perp
        assert pa is not None
        equity = cross_equity(pa.positions, cash)
        equity += self.value_e18(self.accounts[insurance], (s.id, contracts)) // E18
        if equity < self.requirement(insurance, (s.id, contracts))[0]:
            return
        notional = s.mark * (contracts if contracts > 0 else -contracts)
        size = h.size
        self.settle(account, s, -size, notional, 0)
        self.settle(insurance, s, size, notional, 0)
        ev.append(_new(Backstop, (account.address, s.id, size, s.mark)))
        self._holding_event(ev, insurance, s)
        perps._balance_event(ev, insurance)

    def _close_perp(self, account: Account, pos: Position, ev: list[Event]) -> int:
        """A perp leg, as the perp liquidation closes it (liquidation.py)."""
        perps = self.perps
        liquidator = perps.liquidator
        market = pos.market
        mark = market.mark
        lots = pos.size // market.lot
        limit = bankruptcy_price(mark, self.equity(account), lots)
        size = pos.size
        ev.append(_new(LiquidationOrder, (account.address, market.id, size, limit)))
        makers: dict[Account, None] = {}
        perps.match(account, pos, size < 0, limit, size if size > 0 else -size, 0, ev, True, makers)
        if pos.size:
            price = bankruptcy_price(mark, self.equity(account), pos.size // market.lot)
            if not liquidator._backstop(account, pos, price, ev):
                liquidator._deleverage(account, pos, price, ev)
        perps._fill_events(ev, account, pos, makers)
        fee_bps = market.params.liquidation_fee_bps
        return (lots if lots > 0 else -lots) * mark * fee_bps // BPS

    # --------------------------------------------------------------- checkpoints

    def leaf_fields(self, account: Account, market: int) -> tuple[int, int]:
        """(size, premium) a holding's state-tree leaf commits to."""
        h = self.accounts[account].holdings[market]
        return h.size, h.premium

    def leaves(self, account: Account) -> list[tuple[int, int]]:
        """(market, leaf index) of the account's holdings that have a leaf."""
        oa = self.accounts.get(account)
        if oa is None:
            return []
        return [(m, h.leaf) for m, h in oa.holdings.items() if h.leaf >= 0]


def _linear_top(grid: pf.ScenarioGrid, mark: int) -> int:
    """The last field of a linear vector at `mark` (its identity, to skip recomputing)."""
    return mark * grid.moves_bps[-1] * (E18 // BPS)


def _address(account: Account) -> bytes:
    return account.address


def _oid(order: Order) -> int:
    return order.oid


def _relief(leg: tuple[int, int]) -> tuple[int, int]:
    return -leg[0], leg[1]
