"""Perpetual futures inside the engine: perp orders and fills, margin actions, oracle
entries, and the end-of-block step (prices, funding, liquidations); docs/MATCHING.md,
"Perpetual futures".

`Perps` is the engine's perp half: `Engine` owns one when the genesis has perp markets and
hands it perp orders (same book, same price-time priority, same self-trade prevention as
spot; only settlement differs: a fill moves positions and the collateral's balance, not two
assets). Positions and margin math live in margin.py, the oracle in oracle.py, the
liquidation index and procedure in liquidation.py. Pure: the block timestamp is an
argument, integers only (prices per lot, sizes in base units, rates in ppb).
"""

from __future__ import annotations

from heapq import heappush
from typing import TYPE_CHECKING, Any, Final

from matching.accounts import Account
from matching.book import Book, Order
from matching.config import BPS, RATE_SCALE, U64_MAX, Genesis
from matching.crossing import FillSettlement, accept, cross
from matching.events import (
    BalanceChanged,
    Cancelled,
    Event,
    Funding,
    FundingPaid,
    LeverageSet,
    MarginChanged,
    Modified,
    Observed,
    PositionChanged,
    Prices,
    Reason,
    Rejected,
)
from matching.liquidation import Liquidator
from matching.margin import (
    PerpAccount,
    PerpMarket,
    Position,
    bankruptcy_price,
    cross_equity,
    cross_equity_initial,
    cross_initial,
    isolated_equity,
)
from matching.oracle import Oracle, read_entry

if TYPE_CHECKING:
    from matching.engine import Engine
    from matching.optionmarkets import OptionMarkets

_new: Final[Any] = tuple.__new__
PREMIUM_EMA_MS: Final = 150_000  # time constant of the premium EMA in the mark price
INTEREST_CLAMP_PPB: Final = 500_000  # clamp(interest - premium, +-0.05 %)
LIQUIDATION_OID: Final = 0  # the taker oid of a liquidation's fills (never a real order)


def _fail(ev: list[Event], code: str, message: str) -> None:
    ev.append(_new(Rejected, (code, message)))


class PerpFills(FillSettlement):
    """A perp fill: the maker's open-order totals shrink, both positions move at the
    fill price (`Perps.settle`), the market's last trade moves."""

    def __init__(self, perps: Perps, pos: Position) -> None:
        self.perps = perps
        self.pos = pos  # the taker's

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
        pos = self.pos
        maker_pa = maker_account.perp
        assert maker_pa is not None
        maker_pos = maker_pa.positions[maker.book.id]
        if maker.is_buy:
            maker_pos.bid_size -= fill
            maker_pos.bid_notional -= notional
        else:
            maker_pos.ask_size -= fill
            maker_pos.ask_notional -= notional
        delta = -fill if maker.is_buy else fill
        perps = self.perps
        perps.settle(taker, pos, delta, price, taker_fee)
        perps.settle(maker_account, maker_pos, -delta, price, maker_fee)
        pos.market.last_trade = price


class Perps:
    def __init__(self, engine: Engine, genesis: Genesis) -> None:
        self.engine = engine
        perps = genesis.perp_markets
        self.markets: dict[int, PerpMarket] = {}
        for m in perps:
            assert m.perp is not None
            book = engine.books[m.id]
            market = PerpMarket(book, m.perp)
            book.perp = market
            self.markets[m.id] = market
        self.coll = engine.asset_index[perps[0].quote]  # the collateral's asset index
        self.coll_id = perps[0].quote
        assert genesis.insurance_account is not None
        self.insurance = engine._account(genesis.insurance_account)
        self.oracle = Oracle(genesis.oracle_members, genesis.oracle_quorum, list(self.markets))
        # Accounts with perp state (created by their first perp order or action).
        self.accounts: dict[Account, None] = {}
        # Accounts whose margin may have dropped since their last check: rechecked at the
        # block's end (fills, funding, margin actions).
        self.touched: dict[Account, None] = {}
        self.liquidator = Liquidator(self)
        # Option series on these markets' indexes, set by the engine (optionmarkets.py).
        self.options: OptionMarkets | None = None

    # ------------------------------------------------------------------- accounts

    def account_state(self, account: Account) -> PerpAccount:
        pa = account.perp
        if pa is None:
            pa = account.perp = PerpAccount()
            self.accounts[account] = None
        return pa

    def position(self, account: Account, market: PerpMarket) -> Position:
        pa = self.account_state(account)
        pos = pa.positions.get(market.id)
        if pos is None:
            pos = pa.positions[market.id] = Position(market)
        return pos

    def cross_free(self, account: Account) -> int:
        """Collateral not needed as initial margin: what may be withdrawn, moved to an
        isolated position or locked by a spot buy (at most the available balance)."""
        cash = account.available[self.coll]
        pa = account.perp
        if pa is None:
            return cash
        if self.options is not None and account in self.options.accounts:
            return self.options.free(account)
        free = cross_equity(pa.positions, cash) - cross_initial(pa.positions)
        return free if free < cash else cash

    def _position_event(self, ev: list[Event], account: Account, pos: Position) -> None:
        ev.append(
            _new(
                PositionChanged,
                (account.address, pos.market.id, pos.size, pos.entry, pos.realized, pos.margin),
            )
        )

    def _balance_event(self, ev: list[Event], account: Account) -> None:
        c = self.coll
        ev.append(
            _new(
                BalanceChanged,
                (account.address, self.coll_id, account.available[c], account.locked[c]),
            )
        )

    def _ensure_leaf(self, account: Account) -> None:
        if account.leaf[self.coll] < 0:
            self.engine.state.new_leaf(account, self.coll)

    # ------------------------------------------------------------------ orders

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
        reduce_only: bool,
        cloid: int | None,
        expires_ms: int | None,
        ev: list[Event],
    ) -> None:
        """A perp order that passed the engine's static checks (grid, tif, cloid, expiry,
        open-order limit)."""
        market = book.perp
        assert market is not None
        pa = account.perp
        pos = pa.positions.get(market.id) if pa is not None else None
        if pos is None:
            pos = self.position(account, market)
        limit = price
        take = size
        if reduce_only:
            if tif != "ioc" and tif != "fok":
                _fail(ev, Reason.REDUCE_ONLY_TIF, "a reduce-only order must be IOC, FOK or market")
                return
            if not pos.size or (pos.size > 0) == is_buy:
                msg = "reduce-only needs a position on the other side"
                _fail(ev, Reason.REDUCE_ONLY_NO_POSITION, msg)
                return
            held = pos.size if pos.size > 0 else -pos.size
            take = size if size < held else held
            # Never fill beyond the bankruptcy price of the position's margin unit.
            bankrupt = self._bankruptcy(account, pos)
            if (limit > bankrupt) if is_buy else (limit < bankrupt):
                limit = bankrupt
        else:
            refused = self._check_margin(account, pos, market, is_buy, price, size)
            if refused is not None:
                ev.append(_new(Rejected, refused))
                return
        accepted = accept(
            self.engine, address, account, book, is_buy, limit, take, kind, price, size, tif,
            cloid, ev,
        )  # fmt: skip
        if accepted is None:
            return
        oid, crosses = accepted
        makers: dict[Account, None] = {}
        remaining = take
        if crosses:
            remaining = self.match(account, pos, is_buy, limit, take, oid, ev, False, makers)
        if remaining and (tif == "gtc" or tif == "post"):
            self.rest(account, pos, book, is_buy, price, remaining, oid, cloid, expires_ms, tif)
        elif remaining:
            ev.append(_new(Cancelled, (oid, address, book.id, remaining, Reason.IOC)))
        if take < size:
            ev.append(_new(Cancelled, (oid, address, book.id, size - take, Reason.REDUCE_ONLY)))
        if crosses:
            self._fill_events(ev, account, pos, makers)

    def _fill_events(
        self, ev: list[Event], account: Account, pos: Position, makers: dict[Account, None]
    ) -> None:
        """After a taker: the position and collateral balance of the taker and each maker,
        then the fee account's balance if fees were paid."""
        market_id = pos.market.id
        self._position_event(ev, account, pos)
        self._balance_event(ev, account)
        makers.pop(account, None)
        for maker in makers:
            pa = maker.perp
            assert pa is not None
            self._position_event(ev, maker, pa.positions[market_id])
            self._balance_event(ev, maker)
        fee_account = self.engine.fee_account
        if makers and fee_account is not account and fee_account not in makers:
            self._balance_event(ev, fee_account)

    def rest(
        self,
        account: Account,
        pos: Position,
        book: Book,
        is_buy: bool,
        price: int,
        size: int,
        oid: int,
        cloid: int | None,
        expires_ms: int | None,
        tif: str,
    ) -> None:
        """Put a checked perp order on the book: it locks nothing (margin is checked
        against the account's open-order totals, which it joins)."""
        order = Order(oid, account, book, is_buy, price, size, 0, cloid, expires_ms, tif == "post")
        (book.bids if is_buy else book.asks).add(order)
        if is_buy:
            pos.bid_size += size
            pos.bid_notional += price * (size // book.lot)
        else:
            pos.ask_size += size
            pos.ask_notional += price * (size // book.lot)
        account.orders[oid] = order
        if cloid is not None:
            account.cloids[cloid] = order
        if expires_ms is not None:
            heappush(self.engine.expiries, (expires_ms, oid, account.address))

    def order_gone(self, order: Order) -> None:
        """A perp order left the book with `order.size` open (cancel, expiry, self-trade,
        modify): it leaves the open-order totals."""
        pa = order.account.perp
        book = order.book
        assert pa is not None and book.perp is not None
        pos = pa.positions[book.id]
        if order.is_buy:
            pos.bid_size -= order.size
            pos.bid_notional -= order.price * (order.size // book.lot)
        else:
            pos.ask_size -= order.size
            pos.ask_notional -= order.price * (order.size // book.lot)

    def modify(
        self,
        address: bytes,
        account: Account,
        order: Order,
        price: int,
        size: int,
        ev: list[Event],
    ) -> None:
        """Cancel-replace of a perp order (same rules as spot: docs/MATCHING.md); the
        margin check counts the new order instead of the old one."""
        book = order.book
        market = book.perp
        assert market is not None
        pa = account.perp
        assert pa is not None
        pos = pa.positions[book.id]
        is_buy = order.is_buy
        lot = book.lot
        if price == order.price and size <= order.size:
            released = order.size - size
            if is_buy:
                pos.bid_size -= released
                pos.bid_notional -= price * (released // lot)
            else:
                pos.ask_size -= released
                pos.ask_notional -= price * (released // lot)
            order.size = size
            ev.append(_new(Modified, (order.oid, address, book.id, price, size, True)))
            return
        self.order_gone(order)  # checked without the old order
        refused = self._check_margin(account, pos, market, is_buy, price, size)
        crosses = (book.asks if is_buy else book.bids).crossed_by(price, is_buy)
        if refused is None and order.post_only and crosses:
            refused = (Reason.POST_ONLY_WOULD_CROSS, "a post-only order may not take")
        if refused is not None:
            if is_buy:
                pos.bid_size += order.size
                pos.bid_notional += order.price * (order.size // lot)
            else:
                pos.ask_size += order.size
                pos.ask_notional += order.price * (order.size // lot)
            ev.append(_new(Rejected, refused))
            return
        (book.bids if is_buy else book.asks).remove(order)
        del account.orders[order.oid]
        if order.cloid is not None:
            del account.cloids[order.cloid]
        oid, cloid, expires_ms = order.oid, order.cloid, order.expires_ms
        tif = "post" if order.post_only else "gtc"
        ev.append(_new(Modified, (oid, address, book.id, price, size, False)))
        makers: dict[Account, None] = {}
        remaining = size
        if crosses:
            remaining = self.match(account, pos, is_buy, price, size, oid, ev, False, makers)
        if remaining:
            self.rest(account, pos, book, is_buy, price, remaining, oid, cloid, expires_ms, tif)
        if crosses:
            self._fill_events(ev, account, pos, makers)

    def _check_margin(
        self,
        account: Account,
        pos: Position,
        market: PerpMarket,
        is_buy: bool,
        price: int,
        size: int,
    ) -> tuple[str, str] | None:
        """May this (not reduce-only) order be placed? Without a fresh index only if it
        cannot increase the position; with one, if the cross equity covers the initial
        margin of every position and open order with this one added, plus this order's
        worst fee and its immediate loss against the mark should it fill at its limit."""
        if not market.fresh:
            held = pos.size if pos.size > 0 else -pos.size
            same_side = pos.bid_size if is_buy else pos.ask_size
            if not (pos.size and (pos.size > 0) != is_buy and size + same_side <= held):
                msg = f"market {market.id} is reduce-only: no fresh oracle quorum"
                return Reason.ORACLE_STALE, msg
        book = market.book
        lots = size // book.lot
        notional = price * lots
        mark = market.mark
        worse = price - mark if is_buy else mark - price  # the fill's loss per lot at the mark
        loss = worse * lots if worse > 0 else 0
        fee = notional * book.fee_bps_max // BPS
        pa = account.perp
        assert pa is not None
        if is_buy:
            pos.bid_size += size
            pos.bid_notional += notional
        else:
            pos.ask_size += size
            pos.ask_notional += notional
        have, need = cross_equity_initial(pa.positions, account.available[self.coll])
        need += fee + loss
        if self.options is not None and self.options.active(account):
            have, need = self.options.perp_check(account, fee + loss)
        if is_buy:
            pos.bid_size -= size
            pos.bid_notional -= notional
        else:
            pos.ask_size -= size
            pos.ask_notional -= notional
        if have < need:
            return Reason.INSUFFICIENT_MARGIN, f"needs {need} of margin, has {have}"
        return None

    def _bankruptcy(self, account: Account, pos: Position) -> int:
        """The bankruptcy price of `pos` within its margin unit (cross or isolated)."""
        pa = account.perp
        assert pa is not None
        if pos.isolated:
            equity = isolated_equity(pos)
        else:
            equity = cross_equity(pa.positions, account.available[self.coll])
        return bankruptcy_price(pos.market.mark, equity, pos.size // pos.market.lot)

    # ---------------------------------------------------------------- matching

    def match(
        self,
        account: Account,
        pos: Position,
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
        book = pos.market.book
        taker_bps = 0 if liquidation else book.taker_bps
        fills = PerpFills(self, pos)
        remaining, fees = cross(
            engine, fills, account, book, is_buy, limit, size, oid, taker_bps, ev, makers
        )
        if fees:
            fee_account = engine.fee_account
            fee_account.available[self.coll] += fees
            self._ensure_leaf(fee_account)
            engine.state.dirty[fee_account] = None
        return remaining

    def settle(self, account: Account, pos: Position, delta: int, price: int, fee: int) -> None:
        """Apply a fill of `delta` (signed base units) at `price` to a position: realized
        PnL and the fee to the cross balance (an isolated position's PnL to its margin)."""
        market = pos.market
        lot = market.lot
        size = pos.size
        coll = self.coll
        available = account.available
        available[coll] -= fee
        if size == 0 or (size > 0) == (delta > 0):
            opened = delta if delta > 0 else -delta
            realized = 0
        else:
            held = size if size > 0 else -size
            moved = delta if delta > 0 else -delta
            closing = held if held < moved else moved
            closed_notional = price * (closing // lot)
            # entry * closing // held, in lots (sizes are multiples of the lot: the same
            # quotient), with a non-negative product (compiled code multiplies those inline)
            entry = pos.entry
            if entry >= 0:
                entry_part = entry * (closing // lot) // (held // lot)
            else:
                entry_part = -((-entry * (closing // lot) + held // lot - 1) // (held // lot))
            # The cash view: a buy pays its notional, a sell receives it; what is not the
            # closed part of the entry is realized.
            realized = (-closed_notional if delta > 0 else closed_notional) - entry_part
            pos.entry -= entry_part
            size = size + closing if delta > 0 else size - closing
            pos.size = size
            pos.realized += realized
            opened = moved - closing
        if opened:
            notional = price * (opened // lot)
            if delta > 0:
                pos.entry += notional
                pos.size = size + opened
            else:
                pos.entry -= notional
                pos.size = size - opened
        if pos.isolated:
            pos.margin += realized
            if opened:
                moved_in = -(-price * (opened // lot) // pos.leverage)
                available[coll] -= moved_in
                pos.margin += moved_in
            if not pos.size:
                available[coll] += pos.margin
                pos.margin = 0
        else:
            available[coll] += realized
        if pos.size:
            market.holders[account] = None
            if pos.leaf < 0:
                self._ensure_leaf(account)
                self.engine.state.new_position_leaf(account, market.id, pos)
        else:
            market.holders.pop(account, None)
        self.engine.state.dirty[account] = None
        self.touched[account] = None

    # ----------------------------------------------------------- margin actions

    def _perp_market(self, market: object, ev: list[Event]) -> PerpMarket | None:
        found = self.markets.get(market) if type(market) is int else None
        if found is None:
            from matching.engine import _show

            if type(market) is int and market in self.engine.books:
                _fail(ev, Reason.NOT_PERP, f"market {market} is not a perpetual market")
            else:
                _fail(ev, Reason.UNKNOWN_MARKET, f"unknown market {_show(market)}")
        return found

    def set_leverage(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        from matching.engine import _malformed

        try:
            if len(a) != 4:
                raise KeyError
            market_id = a["market"]
            leverage = a["leverage"]
            isolated = a["isolated"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("set_leverage")))
            return
        market = self._perp_market(market_id, ev)
        if market is None:
            return
        top = market.params.max_leverage
        if type(leverage) is not int or not 1 <= leverage <= top:
            _fail(ev, Reason.BAD_LEVERAGE, f"leverage must be an integer in [1, {top}]")
            return
        if type(isolated) is not bool:
            _fail(ev, Reason.BAD_TYPE, "isolated must be a boolean")
            return
        pos = self.position(account, market)
        if isolated != pos.isolated and (pos.size or pos.bid_size or pos.ask_size):
            msg = "the margin mode changes only without a position or open orders"
            _fail(ev, Reason.POSITION_OPEN, msg)
            return
        old_leverage, old_isolated = pos.leverage, pos.isolated
        pos.leverage, pos.isolated = leverage, isolated
        if pos.isolated and pos.size:
            refused = isolated_equity(pos) < pos.initial()
        else:
            refused = self.cross_free(account) < 0 and leverage < old_leverage
        if refused:
            pos.leverage, pos.isolated = old_leverage, old_isolated
            _fail(ev, Reason.INSUFFICIENT_MARGIN, f"not enough margin for leverage {leverage}")
            return
        ev.append(_new(LeverageSet, (address, market.id, leverage, isolated)))

    def add_margin(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        self._move_margin(address, account, a, ev, "add_margin", 1)

    def remove_margin(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        self._move_margin(address, account, a, ev, "remove_margin", -1)

    def _move_margin(
        self, address: bytes, account: Account, a: Any, ev: list[Event], kind: str, sign: int
    ) -> None:
        from matching.engine import _check_amount, _malformed

        try:
            if len(a) != 3:
                raise KeyError
            market_id = a["market"]
            amount = a["amount"]
        except KeyError:
            ev.append(_new(Rejected, _malformed(kind)))
            return
        market = self._perp_market(market_id, ev)
        if market is None:
            return
        bad = _check_amount(amount, "amount", 1, Reason.BAD_AMOUNT)
        if bad is not None:
            _fail(ev, Reason.BAD_AMOUNT, bad[1])
            return
        pa = account.perp
        pos = pa.positions.get(market.id) if pa is not None else None
        if pos is None or not pos.isolated or not pos.size:
            _fail(ev, Reason.NOT_ISOLATED, "margin moves only into an open isolated position")
            return
        if sign > 0:
            free = self.cross_free(account)
            if free < amount:
                _fail(ev, Reason.INSUFFICIENT_MARGIN, f"add {amount}: only {free} free")
                return
        else:
            spare = isolated_equity(pos) - pos.initial()
            if amount > pos.margin or spare < amount:
                msg = f"remove {amount}: the position's initial margin leaves {spare}"
                _fail(ev, Reason.INSUFFICIENT_MARGIN, msg)
                return
        pos.margin += sign * amount
        account.available[self.coll] -= sign * amount
        self.engine.state.dirty[account] = None
        self.touched[account] = None
        ev.append(_new(MarginChanged, (address, market.id, sign * amount, pos.margin)))
        self._balance_event(ev, account)

    # -------------------------------------------------------------------- oracle

    def observe(self, a: Any, ev: list[Event]) -> None:
        """An oracle entry {type, member, prices: [[market, price_ticks], ...]}: all or
        nothing; the prices count from the end of this block."""
        read = read_entry(
            a,
            ev,
            self.oracle,
            "oracle",
            "prices",
            "[market, price_ticks]",
            len(self.markets),
            self._price_of,
        )
        if read is None:
            return
        member, prices = read
        ts = self.engine.timestamp_ms
        for market_id, price in prices.items():
            self.oracle.observe(member, market_id, price, ts)
            ev.append(_new(Observed, (member, market_id, price)))

    def _price_of(
        self, market_id: Any, ticks: Any, seen: dict[int, int], ev: list[Event]
    ) -> int | None:
        market = self.markets.get(market_id) if type(market_id) is int else None
        if market is None or market_id in seen:
            _fail(ev, Reason.UNKNOWN_MARKET, "unknown, spot or repeated market in prices")
            return None
        tick = market.book.tick
        if type(ticks) is not int or not 0 < ticks <= U64_MAX // tick:
            _fail(ev, Reason.BAD_PRICE, f"price_ticks must be in [1, {U64_MAX // tick}]")
            return None
        return ticks * tick

    # ------------------------------------------------------------- block's end

    def end_block(self, timestamp_ms: int, ev: list[Event]) -> None:
        """After the block's entries: index and mark per market (in id order), funding
        where an interval boundary was crossed, then liquidations."""
        for market in self.markets.values():
            self._prices(market, timestamp_ms, ev)
            if timestamp_ms >= market.next_funding_ms:
                self._funding(market, timestamp_ms, ev)
        if self.options is not None:
            self.options.end_block(timestamp_ms, ev)
        self.liquidator.run(ev)

    def _prices(self, market: PerpMarket, ts: int, ev: list[Event]) -> None:
        index = self.oracle.index(market.id, ts, market.params.oracle_max_age_ms)
        old = (market.index, market.mark, market.premium_ema, market.fresh)
        if index is None:
            market.fresh = False
            market.index = 0
        else:
            market.fresh = True
            market.index = index
            book = market.book
            bids, asks = book.bids.keys, book.asks.keys
            mid = (bids[-1] - asks[-1]) // 2 if bids and asks else 0
            if mid:
                sample = (mid - index) * RATE_SCALE // index
                # The first sample has no weight: there is no interval it stands for.
                dt = ts - market.last_sample_ms if market.last_sample_ms else 0
                dt = dt if dt < PREMIUM_EMA_MS else PREMIUM_EMA_MS
                market.premium_ema += (sample - market.premium_ema) * dt // PREMIUM_EMA_MS
                market.premium_sum += sample * dt
                market.premium_count += dt
                market.last_sample_ms = ts
            parts = [index + index * market.premium_ema // RATE_SCALE]
            if mid:
                parts.append(mid)
            if market.last_trade:
                parts.append(market.last_trade)
            parts.sort()
            n = len(parts)
            mark = parts[1] if n == 3 else (parts[0] + parts[1]) // 2 if n == 2 else parts[0]
            if mark < 1:
                mark = 1
            move = mark - market.mark
            market.variation += move if move >= 0 else -move
            market.mark = mark
        if old != (market.index, market.mark, market.premium_ema, market.fresh):
            ev.append(
                _new(
                    Prices,
                    (market.id, market.index, market.mark, market.premium_ema, market.fresh),
                )
            )

    def _funding(self, market: PerpMarket, ts: int, ev: list[Event]) -> None:
        """Funding at the first block at or past an interval boundary (one payment even if
        several boundaries passed): rate = clamp(premium + clamp(interest - premium,
        +-0.05 %), +-cap), premium the time-weighted average since the last payment; each
        position pays or gets lots x mark x rate, the payer's amount rounded up and the
        receiver's down, the residue to the insurance fund: it sums to zero exactly."""
        params = market.params
        due = market.next_funding_ms != 0
        market.next_funding_ms = (ts // params.funding_interval_ms + 1) * params.funding_interval_ms
        weight = market.premium_count
        premium = market.premium_sum // weight if weight else 0
        market.premium_sum = market.premium_count = 0
        if not due or not market.fresh or not market.holders:
            return
        gap = params.interest_ppb - premium
        gap = INTEREST_CLAMP_PPB if gap > INTEREST_CLAMP_PPB else gap
        gap = -INTEREST_CLAMP_PPB if gap < -INTEREST_CLAMP_PPB else gap
        rate = premium + gap
        cap = params.funding_cap_ppb
        rate = cap if rate > cap else -cap if rate < -cap else rate
        if not rate:
            return
        mark = market.mark
        coll = self.coll
        residue = 0
        state_dirty = self.engine.state.dirty
        for account in sorted(market.holders, key=_address):
            pa = account.perp
            assert pa is not None
            pos = pa.positions[market.id]
            owed = pos.size // market.lot * mark * rate  # > 0: this position pays
            if owed > 0:
                amount = -(-owed // RATE_SCALE)
                residue += amount
                amount = -amount
            else:
                amount = -owed // RATE_SCALE
                residue -= amount
            if not amount:
                continue
            pos.funding += amount
            if pos.isolated:
                pos.margin += amount
            else:
                account.available[coll] += amount
            state_dirty[account] = None
            self.touched[account] = None
            ev.append(_new(FundingPaid, (account.address, market.id, amount)))
        insurance = self.insurance
        insurance.available[coll] += residue
        if residue:
            self._ensure_leaf(insurance)
        state_dirty[insurance] = None
        ev.append(_new(Funding, (market.id, rate, mark, residue)))

    # --------------------------------------------------------------- checkpoints

    def exit_values(self) -> dict[Account, int]:
        """Per account with perp state, what its collateral leaf commits to at this mark:
        collateral (available, spot-locked, isolated margins) plus unrealized PnL, floored
        at zero. What was floored (the deficit) comes out of the insurance fund's value;
        what the fund cannot cover (the shortfall: the fund's own value may be negative
        too, when it holds positions) is taken from the other accounts' values, first
        from their unrealized gains, then from the rest, pro rata (`pro_rata_cuts`). The values
        before the floors sum to the collateral held (every trade's cash sums to zero), so
        the exit values sum to at most it, by construction (docs/MATCHING.md)."""
        coll = self.coll
        out: dict[Account, int] = {}
        gains: dict[Account, int] = {}  # the unrealized PnL inside a positive value
        deficit = 0
        insurance = self.insurance
        options = self.options
        for account in self.accounts:
            pa = account.perp
            assert pa is not None
            value = account.available[coll] + account.locked[coll]
            pnl = 0
            for pos in pa.positions.values():
                if pos.size:
                    pnl += pos.size // pos.market.lot * pos.market.mark - pos.entry
                value += pos.margin
            value += pnl
            if options is not None:
                value += options.account_value(account)
            if value < 0:
                deficit -= value
                value = 0
            elif pnl > 0:
                gains[account] = pnl if pnl < value else value
            out[account] = value
        base = out.get(insurance)
        if base is None:
            base = insurance.available[coll] + insurance.locked[coll]
        shortfall = deficit - base
        if shortfall <= 0:
            out[insurance] = -shortfall
            return out
        out[insurance] = 0
        gains.pop(insurance, None)
        # First the unrealized gains (the counterparties of the losses not covered)...
        holders = list(gains)
        cuts = pro_rata_cuts([gains[a] for a in holders], shortfall)
        for account, cut in zip(holders, cuts, strict=True):
            out[account] -= cut
            shortfall -= cut
        if shortfall:
            # ...then, were they not enough, every other value.
            rest = [a for a in out if a is not insurance and out[a] > 0]
            cuts = pro_rata_cuts([out[a] for a in rest], shortfall)
            for account, cut in zip(rest, cuts, strict=True):
                out[account] -= cut
        return out


def pro_rata_cuts(amounts: list[int], need: int) -> list[int]:
    """Cuts of `amounts` (each >= 0) summing to min(need, sum(amounts)) exactly, each at
    most its amount, pro rata: need * amount // total, plus one unit to the largest
    remainders (ties to the earlier) until the sum is reached (largest remainder)."""
    total = sum(amounts)
    if need >= total:
        return list(amounts)
    cuts = [need * amount // total for amount in amounts]
    left = need - sum(cuts)
    if left:
        # A cut that gets the extra unit had a remainder > 0, so it stays <= its amount.
        order = sorted(range(len(amounts)), key=lambda i: (-(need * amounts[i] % total), i))
        for i in order[:left]:
            cuts[i] += 1
    return cuts


def _address(account: Account) -> bytes:
    return account.address
