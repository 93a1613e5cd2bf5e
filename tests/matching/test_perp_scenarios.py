"""Perp scenarios: a liquidation through each path (book, backstop, ADL), a stale oracle,
funding, margin actions, exit values and the position leaf (docs/MATCHING.md)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.config import ConfigError, Genesis
from matching.engine import Engine
from matching.events import (
    Backstop,
    Deleveraged,
    Fill,
    Funding,
    FundingPaid,
    LiquidationFee,
    LiquidationOrder,
    Rejected,
)
from matching.merkle import balance_leaf, position_leaf, verify
from matching.oracle import Oracle
from matching.perp import pro_rata_cuts
from tests.matching.helpers import FEE, kinds
from tests.matching.perp_helpers import (
    BTC_PERP,
    ETH_PERP,
    ETH_USDC,
    INSURANCE,
    MEMBERS,
    TRADERS,
    USDC,
    PerpHarness,
    margin,
    oracle,
    perp_genesis_dict,
    perp_order,
    set_leverage,
    withdraw_action,
)

A, B, C, D = TRADERS[:4]


def setup_long(h: PerpHarness, insurance: int) -> None:
    """A: long 100 lots of BTC-PERP at 1,000 with 11,000 USDC (about 9x); B: the short.
    D quotes 895 / 905 in a fresh block, so the book's mid follows the oracle to 900."""
    deposits = [h.deposit(A, 11_000), h.deposit(B, 1_000_000), h.deposit(D, 1_000_000)]
    if insurance:
        deposits.append(h.deposit(INSURANCE, insurance))
    h.block(deposits)
    h.prices((BTC_PERP, 1_000))
    assert kinds(h.one(B, perp_order("sell", 1_000, 1_000))) == ["Accepted"]
    taker = h.one(A, perp_order("buy", 1_000, 1_000, tif="ioc"))
    assert "Trade" in kinds(taker)
    assert h.position(A) == (1_000, 100_000) and h.position(B) == (-1_000, -100_000)


def move_to_900(h: PerpHarness, bid: int) -> list[Any]:
    h.block([h.entry(D, perp_order("buy", bid, 2_000)), h.entry(D, perp_order("sell", 905, 10))])
    result = h.prices((BTC_PERP, 900))
    return result.end


def test_liquidation_through_the_book() -> None:
    h = PerpHarness()
    setup_long(h, insurance=0)
    end = move_to_900(h, bid=895)
    names = kinds(end)
    assert names[:3] == ["Prices", "Liquidation", "LiquidationOrder"]
    order = next(e for e in end if isinstance(e, LiquidationOrder))
    assert order.account == A and order.size == 1_000
    # equity 11,000 - 50 (fee) - 100 x 100 = 950 -> bankruptcy 900 - 9 = 891
    assert order.bankruptcy_price == 891
    fills = [e for e in end if isinstance(e, Fill) and e.oid == 0]
    assert fills and all(f.price >= 891 for f in fills)
    assert sum(f.size for f in fills) == 1_000 and h.position(A) == (0, 0)
    assert h.position(D) == (1_000, 89_500)
    fee = next(e for e in end if isinstance(e, LiquidationFee))
    # 100 lots x 900 x 1 %, capped by what is left: 11,000 - 50 - 100 x 105 = 450
    assert fee.amount == 450 and h.cash(A) == 0 and h.cash(INSURANCE) == 450
    assert not any(isinstance(e, Backstop | Deleveraged) for e in end)


def test_liquidation_through_the_backstop() -> None:
    h = PerpHarness()
    setup_long(h, insurance=1_000_000)
    end = move_to_900(h, bid=880)  # below the bankruptcy price: the book cannot take it
    backstop = [e for e in end if isinstance(e, Backstop)]
    assert len(backstop) == 1 and backstop[0].size == 1_000 and backstop[0].price == 891
    assert h.position(A) == (0, 0) and h.position(INSURANCE) == (1_000, 89_100)
    assert not any(isinstance(e, Fill) and e.oid == 0 for e in end)
    # A keeps what the bankruptcy price leaves it (rounding), the fee is capped by it
    assert 0 <= h.cash(A) < 100


def test_liquidation_through_adl() -> None:
    h = PerpHarness()
    setup_long(h, insurance=0)  # an empty fund cannot take 100 lots at a loss
    end = move_to_900(h, bid=880)
    adl = [e for e in end if isinstance(e, Deleveraged)]
    assert [(e.account, e.counterparty, e.size, e.price) for e in adl] == [(A, B, 1_000, 891)]
    assert h.position(A) == (0, 0) and h.position(B) == (0, 0)
    # B sold at 1,000 and bought back at 891: +10,900, less its taker... maker fee
    assert h.engine.accounts[B].perp.positions[BTC_PERP].realized == 10_900


def test_adl_ranks_by_profit_and_leverage() -> None:
    h = PerpHarness()
    h.block([h.deposit(t, 200_000) for t in (B, C, D)])
    h.prices((BTC_PERP, 1_000))
    h.one(B, perp_order("sell", 1_000, 500))
    h.one(C, perp_order("sell", 1_000, 500))
    h.block([h.entry(D, perp_order("buy", 1_000, 1_000, tif="ioc"))])
    h.one(B, perp_order("sell", 990, 100))  # adds at a worse price: less profit per unit
    h.one(D, perp_order("buy", 990, 100, tif="ioc"))
    # A: a long liquidated for more than the fund (empty) can take
    h.block([h.deposit(A, 11_000)])
    h.one(C, perp_order("sell", 1_000, 1_000))
    h.one(A, perp_order("buy", 1_000, 1_000, tif="ioc"))
    h.block([h.entry(D, perp_order("sell", 905, 10)), h.entry(D, perp_order("buy", 880, 10))])
    end = h.prices((BTC_PERP, 900)).end
    adl = [e.counterparty for e in end if isinstance(e, Deleveraged)]
    assert adl and adl[0] == C  # the larger, more profitable short goes first


def test_stale_oracle_makes_the_market_reduce_only() -> None:
    h = PerpHarness()
    h.block([h.deposit(A, 100_000), h.deposit(B, 100_000)])
    h.prices((BTC_PERP, 1_000))
    h.one(B, perp_order("sell", 1_000, 100))
    h.one(A, perp_order("buy", 1_000, 100, tif="ioc"))
    h.block([], advance_ms=6_000)  # older than oracle_max_age_ms (5 s): no quorum
    assert not h.engine.perps.markets[BTC_PERP].fresh
    ev = h.one(A, perp_order("buy", 999, 10))
    assert isinstance(ev[0], Rejected) and ev[0].code == "oracle_stale"
    ev = h.one(B, perp_order("sell", 1_001, 10))  # would add to B's short
    assert isinstance(ev[0], Rejected) and ev[0].code == "oracle_stale"
    ev = h.one(A, perp_order("sell", 1_005, 50))  # reduces A's long: allowed, rests
    assert kinds(ev) == ["Accepted"]
    ev = h.one(A, perp_order("sell", 1_005, 60))  # with the open 50 it could flip: refused
    assert isinstance(ev[0], Rejected) and ev[0].code == "oracle_stale"
    h.prices((BTC_PERP, 1_000), members=2)  # 2 of 4 fresh: below the quorum of 3
    assert not h.engine.perps.markets[BTC_PERP].fresh
    h.prices((BTC_PERP, 1_000), members=3)
    assert kinds(h.one(A, perp_order("buy", 999, 10))) == ["Accepted"]


@settings(max_examples=200, deadline=None)
@given(
    honest=st.lists(st.integers(900, 1_100), min_size=3, max_size=7),
    wild=st.lists(st.integers(1, 10**12), max_size=3),
)
def test_a_minority_cannot_move_the_index(honest: list[int], wild: list[int]) -> None:
    """n = 3f+1 members, quorum 2f+1; f of them report anything: the index stays within
    the honest members' prices."""
    f = (len(honest) - 1) // 2
    wild = wild[:f]
    members = [bytes([i]) * 20 for i in range(len(honest) + len(wild))]
    oracle_ = Oracle(tuple(members), 2 * f + 1, [0])
    for member, price in zip(members, honest + wild, strict=True):
        oracle_.observe(member, 0, price, 1_000)
    index = oracle_.index(0, 1_000, 10)
    assert index is not None and min(honest) <= index <= max(honest)


def test_index_median_freshness_and_even_count() -> None:
    oracle_ = Oracle(MEMBERS, 3, [BTC_PERP])
    for member, price, seen in zip(MEMBERS, (100, 300, 200, 400), (10, 10, 10, 0), strict=True):
        oracle_.observe(member, BTC_PERP, price, seen)
    assert oracle_.index(BTC_PERP, 10, 10) == 200  # four fresh: the lower median
    assert oracle_.index(BTC_PERP, 11, 10) == 200  # the fourth is too old: 100, 200, 300
    assert oracle_.index(BTC_PERP, 21, 10) is None  # none fresh


def test_oracle_entry_checks() -> None:
    h = PerpHarness()
    stranger = bytes([0x77]) * 20
    cases = {
        "unknown_member": oracle(stranger, (BTC_PERP, 1)),
        "unknown_market": oracle(MEMBERS[0], (ETH_USDC, 1)),
        "bad_price": oracle(MEMBERS[0], (BTC_PERP, 0)),
        "malformed": {"action": {"type": "oracle", "member": MEMBERS[0], "prices": []}},
    }
    result = h.block(list(cases.values()))
    assert [e[0].code for e in result.events] == list(cases)  # type: ignore[union-attr]
    repeated = oracle(MEMBERS[0], (BTC_PERP, 5), (BTC_PERP, 6))
    assert h.block([repeated]).events[0][0].code == "unknown_market"  # type: ignore[union-attr]


def test_funding_is_paid_and_sums_to_zero() -> None:
    h = PerpHarness()
    h.block([h.deposit(t, 100_000) for t in (A, B, C, D)])
    h.prices((BTC_PERP, 1_000))
    h.one(B, perp_order("sell", 1_000, 300))
    h.one(C, perp_order("sell", 1_000, 70))
    h.one(A, perp_order("buy", 1_000, 370, tif="ioc"))
    # the book trades above the index: a positive premium, longs pay
    h.block([h.entry(D, perp_order("buy", 1_010, 10)), h.entry(D, perp_order("sell", 1_030, 10))])
    paid: list[Any] = []
    for _ in range(30):  # past the 60 s boundary
        paid += h.block([oracle(m, (BTC_PERP, 1_000)) for m in MEMBERS], 3_000).end
    rates = [e for e in paid if isinstance(e, Funding)]
    assert rates and rates[0].rate_ppb > 0
    first = [e for e in paid if isinstance(e, FundingPaid)]
    first = first[: len(h.engine.perps.markets[BTC_PERP].holders)]
    by = {e.account: e.amount for e in first}
    assert by[A] < 0 < by[B] and by[C] > 0
    assert sum(by.values()) + rates[0].residue == 0


def test_margin_checks_and_actions() -> None:
    h = PerpHarness()
    h.block([h.deposit(A, 10_000), h.deposit(B, 100_000)])
    h.prices((BTC_PERP, 1_000))
    ev = h.one(A, perp_order("buy", 1_000, 1_000))  # 100,000 at 10x + fee > 10,000
    assert ev[0].code == "insufficient_margin"  # type: ignore[union-attr]
    assert kinds(h.one(A, perp_order("buy", 1_000, 900))) == ["Accepted"]
    # the worst side counts every open order: a second bid no longer fits
    assert h.one(A, perp_order("buy", 990, 200))[0].code == "insufficient_margin"  # type: ignore[union-attr]
    # an ask does not add to the bid side's exposure
    assert kinds(h.one(A, perp_order("sell", 1_100, 900))) == ["Accepted"]
    # the collateral backing the orders cannot be withdrawn or locked by spot
    assert h.one(A, withdraw_action(USDC, 1_000))[0].code == "insufficient_balance"  # type: ignore[union-attr]
    assert h.one(A, set_leverage(0))[0].code == "bad_leverage"  # type: ignore[union-attr]
    assert h.one(A, set_leverage(5))[0].code == "insufficient_margin"  # type: ignore[union-attr]
    assert h.one(A, set_leverage(5, isolated=True))[0].code == "position_open"  # type: ignore[union-attr]
    ev = h.one(A, perp_order("buy", 1_000, 100, reduce_only=True, tif="ioc"))
    assert ev[0].code == "reduce_only_no_position"  # type: ignore[union-attr]
    ev = h.one(A, perp_order("buy", 1_000, 100, reduce_only=True))
    assert ev[0].code == "reduce_only_tif"  # type: ignore[union-attr]
    assert h.one(A, set_leverage(3, market=ETH_USDC))[0].code == "not_perp"  # type: ignore[union-attr]


def test_isolated_position_margin() -> None:
    h = PerpHarness()
    h.block([h.deposit(A, 50_000), h.deposit(B, 100_000)])
    h.prices((BTC_PERP, 1_000))
    assert kinds(h.one(A, set_leverage(5, isolated=True))) == ["LeverageSet"]
    h.one(B, perp_order("sell", 1_000, 500))
    h.one(A, perp_order("buy", 1_000, 500, tif="ioc"))
    pos = h.engine.accounts[A].perp.positions[BTC_PERP]
    assert pos.isolated and pos.margin == 10_000  # 50,000 / 5 moved out of cross
    assert h.cash(A) == 50_000 - 10_000 - 25  # and the taker fee
    assert kinds(h.one(A, margin("add_margin", 1_000)))[0] == "MarginChanged"
    assert pos.margin == 11_000
    assert h.one(A, margin("remove_margin", 2_000))[0].code == "insufficient_margin"  # type: ignore[union-attr]
    assert kinds(h.one(A, margin("remove_margin", 1_000)))[0] == "MarginChanged"
    # closing returns the margin to the cross balance
    h.one(B, perp_order("buy", 1_000, 500))
    h.one(A, perp_order("sell", 1_000, 500, tif="ioc", reduce_only=True))
    assert pos.size == 0 and pos.margin == 0 and h.cash(A) == 50_000 - 25 - 25


def test_exit_values_and_position_leaves() -> None:
    h = PerpHarness()
    setup_long(h, insurance=0)
    h.block([oracle(m, (BTC_PERP, 1_200)) for m in MEMBERS])  # no book: mark from index
    mark = h.engine.perps.markets[BTC_PERP].mark
    checkpoint = h.engine.checkpoint()
    engine = h.engine
    # A's collateral leaf carries its exit value: cash + unrealized PnL at the mark
    exit_a = h.cash(A) + 100 * mark - 100_000
    leaf, proof = engine.balance_proof(A, USDC)  # type: ignore[misc]
    assert leaf == balance_leaf(A, b"\xaa" * 20, exit_a)
    assert verify(proof, checkpoint.state_root, leaf)
    # B (short) is under water there: floored at zero... if it were; here it is not
    exit_b = h.cash(B) - 100 * mark + 100_000
    leaf_b, _ = engine.balance_proof(B, USDC)  # type: ignore[misc]
    assert leaf_b == balance_leaf(B, b"\xaa" * 20, max(0, exit_b))
    pleaf, pproof = engine.position_proof(A, BTC_PERP)  # type: ignore[misc]
    assert pleaf == position_leaf(A, BTC_PERP, 1_000, 100_000, 0)
    assert verify(pproof, checkpoint.state_root, pleaf)
    restored = Engine.restore(engine.snapshot())
    assert restored.snapshot() == engine.snapshot()
    assert restored.checkpoint() == engine.checkpoint()


def test_exit_values_never_exceed_the_collateral() -> None:
    """A deficit (an account under water at the checkpoint's mark) is taken from the
    insurance fund's leaf: the sum of exit values is at most the collateral held."""
    h = PerpHarness()
    setup_long(h, insurance=50_000)
    engine = h.engine
    market = engine.perps.markets[BTC_PERP]
    market.mark = 700  # as if the mark had gapped between two checks
    values = engine.perps.exit_values()
    held = sum(a.available[USDC] + a.locked[USDC] for a in engine.accounts.values())
    assert values[engine.accounts[A]] == 0
    insurance = engine.accounts[INSURANCE]
    assert values[insurance] == 50_000 - (100_000 - 70_000 - h.cash(A))
    total = sum(values.get(a, a.available[USDC] + a.locked[USDC]) for a in engine.accounts.values())
    assert total == held


def test_exit_values_when_the_fund_cannot_cover_the_deficit() -> None:
    """What the fund cannot cover is taken from the unrealized gains (here the short's),
    never left as a claim the contract could not pay: the sum stays the collateral held.
    The old rule floored the fund's leaf at zero and the sum exceeded the collateral."""
    h = PerpHarness()
    setup_long(h, insurance=1_000)
    engine = h.engine
    engine.perps.markets[BTC_PERP].mark = 700
    values = engine.perps.exit_values()
    held = sum(a.available[USDC] + a.locked[USDC] for a in engine.accounts.values())
    deficit = 100_000 - 70_000 - h.cash(A)
    assert values[engine.accounts[A]] == 0 and values[engine.accounts[INSURANCE]] == 0
    shortfall = deficit - 1_000
    assert values[engine.accounts[B]] == h.cash(B) + 30_000 - shortfall
    total = sum(values.get(a, a.available[USDC] + a.locked[USDC]) for a in engine.accounts.values())
    assert total == held


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=8), st.integers(0, 10**7))
def test_spread_is_exact_and_bounded(amounts: list[int], need: int) -> None:
    cuts = pro_rata_cuts(amounts, need)
    assert sum(cuts) == min(need, sum(amounts))
    assert all(0 <= c <= a for c, a in zip(cuts, amounts, strict=True))


def test_position_leaf_vector() -> None:
    """The encoding of docs/MATCHING.md: 6 words behind a tag, never 96 bytes."""
    account = bytes.fromhex("00000000000000000000000000000000000000aa")
    leaf = position_leaf(account, 7, -1_000, -100_000, 0)
    assert leaf.hex() == POSITION_LEAF_VECTOR
    assert leaf != balance_leaf(account, account, 0)


POSITION_LEAF_VECTOR = "c399956d3a7b6afaaf1dd5099d9e00646de0800509a0e28b67089026d46264fb"


def test_genesis_checks() -> None:
    raw = perp_genesis_dict()
    assert (
        Genesis.from_dict(raw).to_dict()
        == Genesis.from_dict(Genesis.from_dict(raw).to_dict()).to_dict()
    )
    bad = perp_genesis_dict(margin_tiers=[[100, 500, 600]])
    with pytest.raises(ConfigError):
        Genesis.from_dict(bad)
    bad = perp_genesis_dict(max_leverage=50)  # 2 % initial under 2 x 5 % maintenance
    with pytest.raises(ConfigError):
        Genesis.from_dict(bad)
    no_members = perp_genesis_dict()
    del no_members["oracle_members"]
    with pytest.raises(ConfigError):
        Genesis.from_dict(no_members)


def test_fee_account_and_eth_perp_untouched() -> None:
    h = PerpHarness()
    assert h.engine.perps is not None and ETH_PERP in h.engine.perps.markets
    assert FEE in h.engine.accounts and INSURANCE in h.engine.accounts
