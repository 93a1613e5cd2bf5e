"""Batch auctions against their definition (hypothesis; docs/MATCHING.md, "Batch
auctions"):

- the clearing price is the one the rules pick when every tick is tried;
- a clearing fills at its price only, by price priority, pro-rata (to the lot) at the
  marginal level, and leaves the book uncrossed;
- permuting a batch's entries (inside a block and across the blocks of the batch)
  changes no fill, no balance, no clearing event, no root: only order ids, which are
  handed out in arrival order, differ, and the events name the same orders;
- random streams over an auction market and a continuous one conserve every asset,
  reserve exactly what open orders need, and snapshot/restore and replay identically.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from matching.engine import BlockResult, Engine
from matching.events import AuctionCleared, BalanceChanged, Fill
from tests.matching.auction_helpers import (
    AuctionHarness,
    auction_genesis,
    brute_force,
    describe,
    fast,
    order_names,
)
from tests.matching.helpers import ETH, ETH_USDC, LOT, T0, TICK, USDC, addr, cancel, modify, place
from tests.matching.test_properties import EngineMachine, check_invariants

SLOW = os.environ.get("SEQNET_SLOW") == "1"
TRADERS = tuple(addr(n) for n in range(10, 18))

# ---------------------------------------------------------------- the price rule


@given(
    orders=st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.integers(1, 30)), max_size=14),
    tick=st.sampled_from((1, 5)),
    reference=st.integers(0, 45),
)
@settings(max_examples=600 if SLOW else 300, deadline=None)
def test_clearing_price_is_what_trying_every_tick_gives(
    orders: list[tuple[bool, int, int]], tick: int, reference: int
) -> None:
    orders = [(buy, p * tick, s) for buy, p, s in orders]
    want = brute_force(orders, tick, reference * tick)
    got = fast(orders, tick, reference * tick)
    if want is None:
        assert got is None
    else:
        assert got == (want[2], want[0])


# ------------------------------------------------------------ a clearing's fills


sides = st.lists(st.booleans(), min_size=len(TRADERS), max_size=len(TRADERS))
prices_sizes = st.tuples(
    st.integers(18, 24).map(lambda t: t * TICK), st.integers(1, 12).map(lambda n: n * LOT)
)
orders_st = st.lists(
    st.tuples(
        st.integers(0, len(TRADERS) - 1),
        st.integers(18, 24).map(lambda t: t * TICK),  # prices
        st.integers(1, 12).map(lambda n: n * LOT),  # sizes
        st.sampled_from(("gtc", "gtc", "gtc", "ioc")),
    ),
    min_size=1,
    max_size=24,
)


def funded(blocks: int) -> AuctionHarness:
    h = AuctionHarness(blocks)
    h.block([h.deposit_entry(who, asset, 10**9) for who in TRADERS for asset in (USDC, ETH)])
    while h.engine.auctions is not None and h.engine.auctions.height % blocks:
        h.block([])
    return h


def place_entries(
    h: AuctionHarness, orders: list[tuple[int, int, int, str]], buy_side: list[bool]
) -> list[dict[str, Any]]:
    """Each trader keeps to one side, so no order of the batch crosses its own (refused,
    and then the arrival order would decide which of the two gets in)."""
    return [
        h.entry(TRADERS[who], place(side="buy" if buy_side[who] else "sell", price=price,
                                    size=size, tif=tif))
        for who, price, size, tif in orders
    ]  # fmt: skip


@given(before=orders_st, batch=orders_st, buy_side=sides)
@settings(max_examples=300 if SLOW else 120, deadline=None)
def test_a_clearing_fills_as_its_definition_says(
    before: list[tuple[int, int, int, str]],
    batch: list[tuple[int, int, int, str]],
    buy_side: list[bool],
) -> None:
    h = funded(2)
    h.block(place_entries(h, before, buy_side))
    h.block([])  # the first batch clears: a reference price, a residual book
    h.block(place_entries(h, batch, buy_side))
    engine = h.engine
    assert engine.auctions is not None
    reference = engine.auctions.markets[ETH_USDC].last_price
    book = [(o.oid, o.is_buy, o.price, o.size) for who in TRADERS for o in engine.open_orders(who)]
    result = h.block([])
    want = brute_force([(b, p, s) for _, b, p, s in book], TICK, reference)
    clearings = [e for e in result.end if isinstance(e, AuctionCleared)]
    if want is None:
        assert clearings == [] and not any(isinstance(e, Fill) for e in result.end)
        return
    (c,) = clearings
    volume, _, price = want
    assert (c.price, c.volume) == (price, volume)
    demand = sum(s for _, b, p, s in book if b and p >= price)
    supply = sum(s for _, b, p, s in book if not b and p <= price)
    assert c.imbalance == demand - supply
    filled: dict[int, int] = {}
    for e in result.end:
        if isinstance(e, Fill):
            assert e.price == price and not e.maker
            filled[e.oid] = filled.get(e.oid, 0) + e.size
    for is_buy in (True, False):
        # Eligible orders, best first; the marginal level is the worst one filled.
        side = [row for row in book if row[1] == is_buy and eligible(row[2], is_buy, price)]
        side.sort(key=lambda row: -row[2] if is_buy else row[2])
        assert sum(filled.get(o, 0) for o, *_ in side) == volume
        got = [(p, s, filled.get(o, 0)) for o, _, p, s in side]
        marginal = [p for p, _, f in got if f]
        worst = (min if is_buy else max)(marginal)
        for p, s, f in got:
            if (p > worst) if is_buy else (p < worst):
                assert f == s  # better than the marginal level: in full
            elif p != worst:
                assert f == 0
        level = [(s, f) for p, s, f in got if p == worst]
        total = sum(s for s, _ in level) // LOT
        share = sum(f for _, f in level) // LOT
        for s, f in level:
            exact_lots = share * (s // LOT) // total
            assert f % LOT == 0 and exact_lots <= f // LOT <= exact_lots + 1
    unfilled = {oid for oid, *_ in book} - {o for o, f in filled.items() if f}
    for o in engine.books[ETH_USDC].bids.best_first():
        assert all(order.oid in unfilled or order.size for order in o)
    assert not engine.books[ETH_USDC].crossed()


def eligible(limit: int, is_buy: bool, price: int) -> bool:
    return limit >= price if is_buy else limit <= price


# ------------------------------------------------------------------ permutations


def run_batch(
    before: list[tuple[int, int, int, str]],
    batch: list[dict[str, Any]],
    split: int,
    blocks: int,
    buy_side: list[bool],
) -> tuple[Any, ...]:
    """Apply `before` (cleared), then the batch's entries over its `blocks` blocks (the
    first `split` in its first block, the rest in its last): a canonical view of what
    happened, order ids replaced by what names the orders."""
    h = funded(blocks)
    first = place_entries(h, before, buy_side)
    log: list[tuple[list[dict[str, Any]], BlockResult]] = []
    log.append((first, h.block(first)))
    for _ in range(blocks - 1):
        log.append(([], h.block([])))
    # The batch: built by the caller with absolute nonces, so both runs sign the same.
    resting = sorted(o.oid for who in TRADERS for o in h.engine.open_orders(who))
    entries = []
    for entry in batch:
        action = entry["action"]
        if action["type"] in ("cancel", "modify"):  # the k-th resting order at the start
            if action["oid"] >= len(resting):
                continue  # (not modulo: two entries on one order would race)
            oid = resting[action["oid"]]
            owner = next(who for who in TRADERS if oid in h.engine.accounts[who].orders)
            action = cancel(oid) if action["type"] == "cancel" else {**action, "oid": oid}
            entry = {**entry, "account": owner, "signer": owner, "action": action}
        entries.append(entry)
    parts = [entries[:split], entries[split:]] if blocks == 2 else [entries]
    for part in parts:
        log.append((part, h.block(part)))
    names: dict[int, Any] = {}
    for entries_, result in log:
        names.update(order_names(entries_, result.events))
    per_entry = {}
    for entries_, result in log[-len(parts) :]:
        for entry, events in zip(entries_, result.events, strict=True):
            key = (entry["account"], entry["nonce"])
            # An entry's `balance` events report the pair after that entry: an
            # account's intermediate balances follow the order of its own entries (the
            # balances after the batch are compared below, and the clearing's events).
            per_entry[key] = [describe(names, e) for e in events if type(e) is not BalanceChanged]
    end = [describe(names, e) for e in log[-1][1].end]
    balances = {
        who: (tuple(a.available), tuple(a.locked)) for who, a in sorted(h.engine.accounts.items())
    }
    residual = sorted(
        ((names[o.oid], o.price, o.size, o.reserved) for who in TRADERS
         for o in h.engine.open_orders(who)),
        key=repr,
    )  # fmt: skip
    root = h.engine.checkpoint().state_root
    return per_entry, end, balances, residual, root, h.engine.next_trade_id


@given(
    before=orders_st,
    batch=orders_st,
    buy_side=sides,
    targets=st.lists(st.integers(0, 15), max_size=6, unique=True),
    blocks=st.sampled_from((1, 2)),
    data=st.data(),
)
@settings(
    max_examples=300 if SLOW else 100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_permuting_a_batch_changes_no_fill(
    before: list[tuple[int, int, int, str]],
    batch: list[tuple[int, int, int, str]],
    buy_side: list[bool],
    targets: list[int],
    blocks: int,
    data: st.DataObject,
) -> None:
    nonce = T0 + 1_000_000  # above every nonce the harness signs before, in the window
    entries: list[dict[str, Any]] = []
    rows: list[tuple[str, Any]] = [("place", row) for row in batch]
    # Resting orders of the batch's start: some cancelled, others modified.
    cut = data.draw(st.integers(0, len(targets)), label="cut")
    rows += [("cancel", k) for k in targets[:cut]]
    rows += [("modify", k) for k in targets[cut:]]
    rows += [("fok", 0), ("bad", 0)]  # refused whatever their place in the batch
    for kind, row in rows:
        nonce += 1
        if kind == "place":
            who, price, size, tif = row
            side = "buy" if buy_side[who] else "sell"
            cloid = nonce - T0 if data.draw(st.booleans(), label="cloid") else None
            expires = data.draw(st.sampled_from((None, T0 + 10**7, T0 + 2 * 10**7)))
            action = place(
                side=side, price=price, size=size, tif=tif, cloid=cloid, expires_ms=expires
            )
            account = TRADERS[who]
        elif kind == "cancel":
            action, account = {"type": "cancel", "market": ETH_USDC, "oid": row}, TRADERS[0]
        elif kind == "modify":
            price, size = data.draw(prices_sizes, label="modify")
            action, account = modify(row, price, size), TRADERS[0]
        elif kind == "fok":
            action, account = place(price=100, size=10, tif="fok"), TRADERS[1]
        else:
            action, account = place(price=101, size=10), TRADERS[2]  # off the tick
        entries.append({"account": account, "signer": account, "nonce": nonce, "action": action})
    split = data.draw(st.integers(0, len(entries)), label="split")
    permuted = data.draw(st.permutations(entries), label="permuted")
    split2 = data.draw(st.integers(0, len(entries)), label="split2")
    one = run_batch(before, entries, split, blocks, buy_side)
    two = run_batch(before, permuted, split2, blocks, buy_side)
    assert one == two
    event("a clearing with trades" if any(e[0] == "Trade" for e in one[1]) else "no trade")


# ------------------------------------------------- streams: funds, snapshots, replay


class AuctionMachine(EngineMachine):
    """The engine's stateful property test (test_properties.py) on a genesis whose
    ETH-USDC is a batch auction market clearing every `BLOCKS` blocks; BTC-USDC stays
    continuous. Between clearings the auction book may be crossed: the full invariants
    (book uncrossed included) are checked at batch boundaries, conservation and
    reservations after every block."""

    BLOCKS = 2

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(auction_genesis(self.BLOCKS))

    def invariants_hold(self) -> None:
        auctions = self.engine.auctions
        assert auctions is not None
        if auctions.height % self.BLOCKS == 0:
            check_invariants(self.engine, self.deposited, self.withdrawn)
        else:
            check_invariants_but_crossing(self.engine, self.deposited, self.withdrawn)

    def _check_replay(self) -> None:
        replica = Engine(auction_genesis(self.BLOCKS))
        outputs: list[Any] = []
        for step in self.log:
            if step[0] == "block":
                result = replica.apply_block(step[1], step[2])
                outputs.append((result.expired, result.events))
            else:
                outputs.append(replica.checkpoint())
        assert outputs == self.outputs


def check_invariants_but_crossing(
    engine: Engine, deposited: list[int], withdrawn: list[int]
) -> None:
    accounts = engine.accounts.values()
    for i in range(len(engine.assets)):
        assert sum(a.available[i] + a.locked[i] for a in accounts) == deposited[i] - withdrawn[i]
        assert all(a.available[i] >= 0 for a in accounts)
    for account in accounts:
        reserved = [0] * len(engine.assets)
        for order in account.orders.values():
            book = order.book
            want = book.reserve(order.price, order.size) if order.is_buy else order.size
            assert order.reserved == want and order.size > 0 and order.live
            reserved[book.quote if order.is_buy else book.base] += order.reserved
        assert reserved == account.locked


AuctionMachine.TestCase.settings = settings(
    max_examples=300 if SLOW else 40,
    stateful_step_count=60 if SLOW else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestAuctionStreams = AuctionMachine.TestCase


class EveryBlockMachine(AuctionMachine):
    BLOCKS = 1


EveryBlockMachine.TestCase.settings = AuctionMachine.TestCase.settings
TestAuctionEveryBlockStreams = EveryBlockMachine.TestCase
