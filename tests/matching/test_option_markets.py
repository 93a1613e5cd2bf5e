"""Option markets in the engine (docs/MATCHING.md, "Options"): marks, orders and margin,
liquidation of an options portfolio, settlement at expiry, exit values."""

from __future__ import annotations

from matching import portfolio as pf
from matching.config import ConfigError, Genesis
from matching.events import (
    Liquidation,
    LiquidationOrder,
    OptionMark,
    OptionSettled,
    OptionSettlement,
    Reason,
    Rejected,
)
from matching.options import E18
from tests.matching.helpers import FEE, T0
from tests.matching.option_helpers import (
    C50,
    CHAIN,
    INDEX,
    P50,
    OptionHarness,
    option_genesis_dict,
    option_order,
)
from tests.matching.perp_helpers import BTC_PERP, INSURANCE, TRADERS, perp_order

A, B, C, D = TRADERS[:4]


def started(**rules: int) -> OptionHarness:
    h = OptionHarness(**rules)
    h.fund()
    h.index()
    return h


def total_collateral(h: OptionHarness) -> int:
    return sum(sum(h.engine.balance(a, 0)) for a in h.engine.accounts)


def test_genesis_round_trip_and_checks() -> None:
    raw = option_genesis_dict()
    genesis = Genesis.from_dict(raw)
    assert len(genesis.option_markets) == len(CHAIN)
    assert Genesis.from_dict(genesis.to_dict()) == genesis
    bad = option_genesis_dict()
    bad["markets"][-1]["underlying"] = 0  # the spot market
    try:
        Genesis.from_dict(bad)
    except ConfigError as exc:
        assert "underlying" in str(exc)
    else:
        raise AssertionError("a spot underlying was accepted")


def test_marks_follow_the_index_and_keep_put_call_parity() -> None:
    h = started()
    options = h.engine.options
    assert options is not None
    for call, put in ((20, 23), (21, 24), (22, 25)):
        c, p = options.series[call], options.series[put]
        assert c.forward == p.forward == INDEX
        # r = 0: C - P = F - K, within the core's rounding (a few 10^-18 price units)
        parity = c.mark_e18 - p.mark_e18 - (INDEX - c.strike) * E18
        assert abs(parity) <= 10
    result = h.index(55_000)
    marks = [e for e in result.end if type(e) is OptionMark]
    assert [e.market for e in marks] == [m for m, _, _ in CHAIN]
    assert all(e.forward == 55_000 and not e.from_book for e in marks)


def test_committee_vol_moves_the_mark() -> None:
    h = started()
    options = h.engine.options
    assert options is not None
    before = options.series[C50].mark
    h.committee_vols((C50, 1_000_000_000))
    h.index()
    assert options.series[C50].vol == 1_000_000_000
    assert options.series[C50].mark > before
    assert options.series[P50].vol == 800_000_000  # no vol published: the genesis one
    bad = h.block([{"action": {"type": "vols", "member": TRADERS[0], "vols": [[C50, 1]]}}])
    assert bad.events[0][0].code == Reason.UNKNOWN_MEMBER


def test_book_mid_sets_the_mark_vol_within_the_band() -> None:
    h = started()
    options = h.engine.options
    assert options is not None
    mark = options.series[C50].mark
    h.place(A, C50, "buy", mark + 200, 5)
    h.place(B, C50, "sell", mark + 400, 5)
    h.index()
    s = options.series[C50]
    assert s.from_book and 800_000_000 < s.vol <= 900_000_000
    assert s.mark > mark


def test_a_fill_moves_premium_holdings_and_fees() -> None:
    h = started()
    total = total_collateral(h)
    h.place(A, C50, "sell", 5_000, 10)
    events = h.place(B, C50, "buy", 5_000, 4)
    assert h.holding(A, C50) == -4 and h.holding(B, C50) == 4
    assert h.cash(A) == 10_000_000 + 20_000 - 4  # maker fee 2 bps
    assert h.cash(B) == 10_000_000 - 20_000 - 10  # taker fee 5 bps
    assert h.engine.balance(FEE, 0)[0] == 14
    assert any(type(e).__name__ == "OptionPosition" for e in events)
    assert total_collateral(h) == total


def test_orders_check_post_trade_initial_margin() -> None:
    h = OptionHarness()
    h.fund(30_000, (A,))
    h.fund(10_000_000, (B,))
    h.index()
    # Short ATM calls: the worst scenario (+15 %, vol +15 points) is ~11,000 per contract.
    refused = h.place(A, C50, "sell", 4_000, 5)
    assert type(refused[0]) is Rejected and refused[0].code == Reason.INSUFFICIENT_MARGIN
    assert type(h.place(A, C50, "sell", 4_000, 1)[0]).__name__ == "Accepted"
    # Buying needs its premium: 10 calls at 4,000 are over 30,000.
    refused = h.place(A, P50, "buy", 4_000, 10)
    assert type(refused[0]) is Rejected and refused[0].code == Reason.INSUFFICIENT_MARGIN
    # A withdrawal may not take the margin the short call needs.
    h.place(B, C50, "buy", 4_000, 1)
    out = h.one(A, {"type": "withdraw", "asset": 0, "amount": h.cash(A)})
    assert type(out[0]) is Rejected and out[0].code == Reason.INSUFFICIENT_BALANCE


def test_hedged_portfolio_needs_at_most_its_legs_standalone() -> None:
    h = started()
    options = h.engine.options
    assert options is not None
    mark = options.series[C50].mark
    # A: short 10 C50 and long 10 C55 (a call spread); the legs alone: C short 10 C50,
    # D long 10 C55 (a long option needs nothing beyond its value).
    h.place(B, C50, "buy", mark, 20)
    h.place(A, C50, "sell", mark, 10)
    h.place(C, C50, "sell", mark, 10)
    mark55 = options.series[22].mark
    h.place(B, 22, "sell", mark55, 20)
    h.place(A, 22, "buy", mark55, 10)
    h.place(D, 22, "buy", mark55, 10)
    h.index()
    accounts = h.engine.accounts
    spread = options.requirement(accounts[A])[0]
    legs = options.requirement(accounts[C])[0] + options.requirement(accounts[D])[0]
    assert 0 < spread <= legs
    # With a perp hedge: C's short calls plus a long perp need at most the two alone,
    # and less than the calls alone (the perp offsets their delta).
    calls_alone = options.requirement(accounts[C])[0]
    h.one(D, perp_order("sell", INDEX, 30, BTC_PERP))
    h.one(C, perp_order("buy", INDEX, 30, BTC_PERP))
    h.index()
    perp_alone = pf.portfolio_margin(options.grid, [(options.linear[BTC_PERP], 3)]).maintenance
    hedged = options.requirement(accounts[C])[0]
    assert hedged <= calls_alone + perp_alone
    assert hedged < calls_alone


def test_a_portfolio_under_water_is_liquidated_in_that_block() -> None:
    h = OptionHarness()
    h.fund(20_000, (A,))
    h.fund(10_000_000, (B, C))
    h.block([h.deposit(INSURANCE, 1_000_000)])
    h.index()
    options = h.engine.options
    assert options is not None
    mark = options.series[P50].mark
    h.place(B, P50, "buy", mark, 2)
    assert type(h.place(A, P50, "sell", mark, 2)[0]).__name__ == "Accepted"
    assert h.holding(A, P50) == -2
    h.place(C, P50, "sell", 12_000, 5)  # someone to buy back from after the crash
    crash = h.index(40_000)
    liquidations = [e for e in crash.end if type(e) is Liquidation]
    assert [e.account for e in liquidations] == [A]
    assert liquidations[0].equity < liquidations[0].maintenance
    assert any(type(e) is LiquidationOrder and e.market == P50 for e in crash.end)
    assert h.holding(A, P50) == 0
    assert h.holding(C, P50) + h.holding(INSURANCE, P50) == -2


def test_expiry_settles_at_the_twap_and_the_series_leaves_the_book() -> None:
    expiry = T0 + 600_000
    h = OptionHarness(expiry, twap_ms=60_000)
    h.fund()
    h.index()
    total = total_collateral(h)
    h.place(A, C50, "sell", 100, 3)
    h.place(B, C50, "buy", 100, 3)
    h.place(A, P50, "sell", 100, 1)
    h.place(C, P50, "buy", 100, 1)
    h.place(D, C50, "buy", 50, 2)  # left resting: cancelled at expiry
    h.block([], advance_ms=expiry - 120_000 - h.ts)
    h.index(51_000)
    samples = 0
    while h.ts < expiry - 10_000:
        before = h.ts
        h.block([], advance_ms=9_000)
        h.index(52_000)
        samples += before + 9_000 >= expiry - 60_000
    result = h.block([], advance_ms=expiry - h.ts)
    settlement = [e for e in result.end if type(e) is OptionSettlement]
    assert [e.market for e in settlement] == [m for m, _, _ in CHAIN]
    c50 = next(e for e in settlement if e.market == C50)
    assert c50.price == 52_000 and c50.samples >= 6
    paid = {(e.account, e.market): e.amount for e in result.end if type(e) is OptionSettled}
    assert paid == {(A, C50): -6_000, (B, C50): 6_000, (A, P50): 0, (C, P50): 0}
    assert h.holding(B, C50) == 0 and h.holding(A, C50) == 0
    book = h.engine.books[C50]
    assert not book.bids.keys and not book.asks.keys
    late = h.one(B, option_order(C50, "buy", 100, 1))
    assert type(late[0]) is Rejected and late[0].code == Reason.SERIES_EXPIRED
    assert total_collateral(h) == total


def test_exit_values_count_options_at_mark() -> None:
    h = started()
    total = total_collateral(h)
    h.place(A, C50, "sell", 5_000, 10)
    h.place(B, C50, "buy", 5_000, 10)
    h.index()
    h.engine.checkpoint()
    options = h.engine.options
    assert options is not None
    exits = h.engine.state.exit_values
    accounts = h.engine.accounts
    value = options.series[C50].mark_e18 * 10
    assert exits[accounts[B]] == h.cash(B) + value // E18
    assert exits[accounts[A]] == h.cash(A) + (-value) // E18
    assert sum(exits.values()) + h.engine.balance(FEE, 0)[0] <= total
    # the holdings are leaves of the state tree
    assert h.engine.position_proof(A, C50) is None  # option leaves are not perp positions
    oa = options.accounts[accounts[A]]
    assert oa.holdings[C50].leaf >= 0
    assert h.engine.state.proof_at(oa.holdings[C50].leaf) is not None
