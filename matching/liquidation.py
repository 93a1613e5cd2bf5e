"""Liquidations: which accounts to check at a block's end, and how an account under
maintenance margin is wound down (docs/MATCHING.md, "Liquidations").

Finding them without rescanning every account each block. Each perp market keeps the
total variation of its mark (the sum of |moves| since genesis). When an account is checked
and found healthy, its margin buffer (equity - maintenance, less a rounding allowance) is
turned into a distance d = buffer x 10^4 / W with W = sum of |lots| x (10^4 + the market's
highest maintenance bps) over its positions: the equity moves by |lots| per unit of mark and
the (continuous) maintenance by at most that rate, so while every market's mark has moved
by at most d since the check, the account stays healthy. The account is pushed on each of
its markets' heaps with the key variation_then + d + 1 and is checked again once a market's
variation reaches it (or at once if a fill, funding or margin action touched it).

Outputs do not depend on the heaps, only on the state: liquidations run in rounds, and a
round's set is exactly the accounts under maintenance when the round begins (the heaps
find every such account; a candidate found healthy is indexed again and dropped). The set
is processed in address order, each account re-checked at its turn. A liquidation touches
makers and deleveraged counterparties; one that is not in the set is checked in the next
round, even if the heaps held it as a (then healthy) candidate, since which healthy
candidates they hold differs between an engine that ran live and a restored one. Rounds
repeat until one touches nobody. So a snapshot does not carry the heaps; a restored engine
rebuilds them.

Winding down a margin unit (the cross margin, or one isolated position):
1. every open order of the unit is cancelled (cross: all the account's orders, spot too,
   since spot buys lock collateral); if that restores the maintenance margin, done;
2. each position of the unit (by market id) is closed against the book with an IOC bounded
   by the bankruptcy price (the price at which the unit's equity would reach zero), paying no
   taker fee;
3. what the book does not take goes to the insurance fund at the bankruptcy price, if the
   fund's equity then still covers its maintenance margin (the backstop);
4. otherwise auto-deleveraging closes it against opposing positions at the bankruptcy price,
   ranked by profit x leverage (highest first, then by address; the fund last);
5. the liquidation fee (bps of the closed notional at the mark) goes to the fund, out of
   what equity is left; a negative balance left without positions is bad debt, covered by
   the fund as far as its balance goes.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Any, Final

from matching.config import BPS
from matching.events import (
    Backstop,
    BadDebt,
    Cancelled,
    Deleveraged,
    Event,
    Liquidation,
    LiquidationFee,
    LiquidationOrder,
    Reason,
)
from matching.margin import (
    CROSS,
    Position,
    bankruptcy_price,
    cross_equity,
    cross_maintenance,
    isolated_equity,
)

if TYPE_CHECKING:
    from matching.accounts import Account
    from matching.perp import Perps

_new: Final[Any] = tuple.__new__
SCORE_SCALE: Final = 10**9


def _address(account: Account) -> bytes:
    return account.address


class Liquidator:
    __slots__ = ("heaps", "perps")

    def __init__(self, perps: Perps) -> None:
        self.perps = perps
        # market id -> heap of (variation key, address); an entry is live while it is the
        # key of the account's position in that market (Position.trigger)
        self.heaps: dict[int, list[tuple[int, bytes]]] = {m: [] for m in perps.markets}

    # ------------------------------------------------------------------- finding

    def run(self, ev: list[Event]) -> None:
        """Check every account touched or due by its markets' variations; liquidate the
        ones under maintenance (address order), in rounds until a round touches nobody."""
        perps = self.perps
        candidates = perps.touched
        perps.touched = {}
        accounts = perps.engine.accounts
        for market in perps.markets.values():
            market_id = market.id
            heap = self.heaps[market_id]
            variation = market.variation
            while heap and heap[0][0] <= variation:
                key, address = heappop(heap)
                account = accounts[address]
                pa = account.perp
                pos = pa.positions.get(market_id) if pa is not None else None
                if pos is not None and pos.trigger == key:
                    pos.trigger = -1
                    candidates[account] = None
        insurance = perps.insurance
        while candidates:
            candidates.pop(insurance, None)
            # The round's set is fixed before anyone in it is wound down: exactly the
            # accounts under maintenance now (a healthy candidate only proves the index
            # conservative, and which healthy ones it holds differs between a member
            # that ran live and one restored from a snapshot). Whoever the round touches
            # outside the set waits for the next round's check.
            due = [account for account in candidates if not self.index(account, False)]
            due.sort(key=_address)
            for account in due:
                self.check(account, ev)
            candidates = perps.touched
            perps.touched = {}

    def check(self, account: Account, ev: list[Event]) -> None:
        """Liquidate what is under maintenance (at this turn: the account may have become
        healthy since its round began), then index the account again."""
        pa = account.perp
        assert pa is not None
        coll = self.perps.coll
        positions = pa.positions
        equity = cross_equity(positions, account.available[coll])
        maintenance = cross_maintenance(positions)
        options = self.perps.options  # an account holding options: the option margin rules
        if options is not None and options.check(account, ev):
            pass
        elif equity < maintenance:
            self.liquidate(account, None, equity, maintenance, ev)
        for market_id in sorted(positions):
            pos = positions[market_id]
            if pos.isolated and pos.size:
                equity = isolated_equity(pos)
                maintenance = pos.maintenance()
                if equity < maintenance:
                    self.liquidate(account, pos, equity, maintenance, ev)
        self.index(account)

    def index(self, account: Account, always: bool = True) -> bool:
        """Give each open position of the account a trigger on its market's heap; return
        whether every margin unit (the cross margin, each isolated position) is at or
        above its maintenance (if not and not `always`, push nothing: the account is
        about to be checked). A position keeps a trigger it already has if that fires no
        later than the new one would (an early check is only a wasted check), so a busy
        account does not flood the heaps."""
        pa = account.perp
        assert pa is not None
        positions = pa.positions
        healthy = True
        equity = account.available[self.perps.coll]
        maintenance = 0
        cross_weight = 0
        cross_count = 0
        isolated = False
        for pos in positions.values():
            size = pos.size
            if not size:
                pos.trigger = -1
                continue
            if pos.isolated:
                isolated = True
                if isolated_equity(pos) < pos.maintenance():
                    healthy = False
                continue
            market = pos.market
            tiers = market.tiers
            lots = size // market.lot
            value = lots * market.mark if lots >= 0 else -(-lots * market.mark)
            equity += value - pos.entry
            maintenance += tiers.maintenance(value if value >= 0 else -value)
            cross_weight += (lots if lots > 0 else -lots) * (BPS + tiers.mm_max)
            cross_count += 1
        options = self.perps.options
        if options is not None and options.active(account):
            # the option margin rules decide the cross unit (Options.check does the same)
            if options.equity(account) < options.requirement(account)[0]:
                healthy = False
        elif equity < maintenance:
            healthy = False
        if not healthy and not always:
            return False
        address = account.address
        if cross_weight:
            buffer = equity - maintenance - (cross_count + 1)
            for pos in positions.values():
                if pos.size and not pos.isolated:
                    self._push(pos, buffer, cross_weight, address)
        if isolated:
            for pos in positions.values():
                if pos.size and pos.isolated:
                    lots = pos.size // pos.market.lot
                    weight = (lots if lots > 0 else -lots) * (BPS + pos.market.tiers.mm_max)
                    buffer = isolated_equity(pos) - pos.maintenance() - 2
                    self._push(pos, buffer, weight, address)
        return healthy

    def _push(self, pos: Position, buffer: int, weight: int, address: bytes) -> None:
        market = pos.market
        # buffer * BPS // weight, split so that compiled code multiplies small ints inline
        distance = buffer // weight * BPS + buffer % weight * BPS // weight if buffer > 0 else 0
        key = market.variation + distance + 1
        trigger = pos.trigger
        if 0 <= trigger <= key:
            return
        pos.trigger = key
        heap = self.heaps[market.id]
        heappush(heap, (key, address))
        if len(heap) > 64 and len(heap) > 4 * len(market.holders) + 64:
            self._compact(heap, market.id)

    def _compact(self, heap: list[tuple[int, bytes]], market_id: int) -> None:
        """Drop the entries that are no longer their position's trigger."""
        accounts = self.perps.engine.accounts
        live = []
        for item in heap:
            pa = accounts[item[1]].perp
            pos = pa.positions.get(market_id) if pa is not None else None
            if pos is not None and pos.trigger == item[0]:
                live.append(item)
        heap[:] = live
        heapify(heap)

    def rebuild(self) -> None:
        """Index every perp account afresh (a restored engine: heaps are not snapshotted)."""
        for heap in self.heaps.values():
            heap.clear()
        for account in self.perps.accounts:
            pa = account.perp
            assert pa is not None
            for pos in pa.positions.values():
                pos.trigger = -1
            self.index(account)

    # ------------------------------------------------------------------- winding down

    def _unit_equity(self, account: Account, unit: Position | None) -> int:
        if unit is not None:
            return isolated_equity(unit)
        pa = account.perp
        assert pa is not None
        return cross_equity(pa.positions, account.available[self.perps.coll])

    def _unit_maintenance(self, account: Account, unit: Position | None) -> int:
        if unit is not None:
            return unit.maintenance()
        pa = account.perp
        assert pa is not None
        return cross_maintenance(pa.positions)

    def liquidate(
        self,
        account: Account,
        unit: Position | None,
        equity: int,
        maintenance: int,
        ev: list[Event],
    ) -> None:
        perps = self.perps
        coll = perps.coll
        address = account.address
        ev.append(
            _new(
                Liquidation,
                (address, CROSS if unit is None else unit.market.id, equity, maintenance),
            )
        )
        self._cancel_orders(account, unit, ev)
        if unit is None and self._unit_equity(account, None) >= self._unit_maintenance(
            account, None
        ):
            perps._balance_event(ev, account)
            return
        pa = account.perp
        assert pa is not None
        if unit is None:
            closing = [
                pa.positions[m]
                for m in sorted(pa.positions)
                if pa.positions[m].size and not pa.positions[m].isolated
            ]
        else:
            closing = [unit]
        fee_due = 0
        cash_before = account.available[coll]
        for pos in closing:
            market = pos.market
            mark = market.mark
            lots = pos.size // market.lot
            fee_bps = market.params.liquidation_fee_bps
            fee_due += (lots if lots > 0 else -lots) * mark * fee_bps // BPS
            limit = bankruptcy_price(mark, self._unit_equity(account, unit), lots)
            makers: dict[Account, None] = {}
            size = pos.size
            ev.append(_new(LiquidationOrder, (address, market.id, size, limit)))
            perps.match(
                account, pos, size < 0, limit, size if size > 0 else -size, 0, ev, True, makers
            )
            if pos.size:
                price = bankruptcy_price(
                    mark, self._unit_equity(account, unit), pos.size // market.lot
                )
                if not self._backstop(account, pos, price, ev):
                    self._deleverage(account, pos, price, ev)
            perps._fill_events(ev, account, pos, makers)
        # What the unit has left (an isolated position's margin is back in the balance).
        left = account.available[coll] - cash_before if unit is not None else None
        if left is None:
            left = account.available[coll]
        flat = not any(p.size and not p.isolated for p in pa.positions.values())
        self.settle_liquidation(account, fee_due, left, flat, ev)

    def settle_liquidation(
        self, account: Account, fee_due: int, left: int, flat: bool, ev: list[Event]
    ) -> None:
        """End a liquidation: the fee due goes to the insurance fund, up to what the
        account has `left`; when nothing cross is left open (`flat`), the fund covers a
        negative balance as far as it can (the rest is bad debt, reported)."""
        perps = self.perps
        coll = perps.coll
        address = account.address
        fee = fee_due if fee_due < left else left
        insurance = perps.insurance
        if fee > 0:
            account.available[coll] -= fee
            insurance.available[coll] += fee
            perps._ensure_leaf(insurance)
            perps.engine.state.dirty[insurance] = None
            ev.append(_new(LiquidationFee, (address, fee)))
        cash = account.available[coll]
        if cash < 0 and flat:
            spare = insurance.available[coll]
            covered = -cash if -cash < spare else spare if spare > 0 else 0
            account.available[coll] += covered
            insurance.available[coll] -= covered
            ev.append(_new(BadDebt, (address, -cash, covered)))
        perps.engine.state.dirty[account] = None
        perps._balance_event(ev, account)
        perps._balance_event(ev, insurance)

    def _cancel_orders(self, account: Account, unit: Position | None, ev: list[Event]) -> None:
        engine = self.perps.engine
        touched: dict[int, None] = {}
        for order in list(account.orders.values()):
            book = order.book
            if unit is not None and book.id != unit.market.id:
                continue
            (book.bids if order.is_buy else book.asks).remove(order)
            engine._forget(order)
            ev.append(
                _new(
                    Cancelled,
                    (order.oid, account.address, book.id, order.size, Reason.LIQUIDATION),
                )
            )
            if book.perp is None:
                touched[book.quote if order.is_buy else book.base] = None
        for asset in sorted(touched):
            engine._balance_event(ev, account, asset)

    def _backstop(self, account: Account, pos: Position, price: int, ev: list[Event]) -> bool:
        """The insurance fund takes the position at `price` if its equity then still
        covers its maintenance margin."""
        perps = self.perps
        insurance = perps.insurance
        if account is insurance:
            return False
        market = pos.market
        ipos = perps.position(insurance, market)
        ipa = insurance.perp
        assert ipa is not None
        size = pos.size
        lots = size // market.lot
        equity = cross_equity(ipa.positions, insurance.available[perps.coll])
        equity += lots * (market.mark - price)
        ipos.size += size  # a what-if, undone at once
        maintenance = cross_maintenance(ipa.positions)
        ipos.size -= size
        if ipos.isolated or equity < maintenance:
            return False
        perps.settle(account, pos, -size, price, 0)
        perps.settle(insurance, ipos, size, price, 0)
        ev.append(_new(Backstop, (account.address, market.id, size, price)))
        perps._position_event(ev, insurance, ipos)
        return True

    def _deleverage(self, account: Account, pos: Position, price: int, ev: list[Event]) -> None:
        perps = self.perps
        market = pos.market
        mark = market.mark
        coll = perps.coll
        long = pos.size > 0
        ranked: list[tuple[int, bytes, Account]] = []
        fund: list[Account] = []
        for holder in market.holders:
            hpa = holder.perp
            assert hpa is not None
            hpos = hpa.positions[market.id]
            if holder is account or (hpos.size > 0) == long:
                continue
            if holder is perps.insurance:
                fund.append(holder)
                continue
            value = hpos.size // market.lot * mark
            pnl = value - hpos.entry
            notional = value if value >= 0 else -value
            cost = hpos.entry if hpos.entry >= 0 else -hpos.entry
            if hpos.isolated:
                equity = isolated_equity(hpos)
            else:
                equity = cross_equity(hpa.positions, holder.available[coll])
            score = pnl * notional * SCORE_SCALE // ((cost or 1) * (equity if equity > 0 else 1))
            ranked.append((-score, holder.address, holder))
        ranked.sort(key=_rank)
        order = [holder for _, _, holder in ranked] + fund
        for holder in order:
            if not pos.size:
                break
            hpa = holder.perp
            assert hpa is not None
            hpos = hpa.positions[market.id]
            theirs = -hpos.size
            size = pos.size
            take = size if (size < theirs if long else size > theirs) else theirs
            perps.settle(account, pos, -take, price, 0)
            perps.settle(holder, hpos, take, price, 0)
            ev.append(_new(Deleveraged, (account.address, holder.address, market.id, take, price)))
            perps._position_event(ev, holder, hpos)
            perps._balance_event(ev, holder)
        assert not pos.size, "open interest is balanced: the opposing positions cover it"


def _rank(item: tuple[int, bytes, Account]) -> tuple[int, bytes]:
    return item[0], item[1]
