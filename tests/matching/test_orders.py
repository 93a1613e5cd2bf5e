"""Every order type, cancel form and modify rule of docs/MATCHING.md, one behaviour each."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from matching.events import (
    Accepted,
    BalanceChanged,
    Cancelled,
    Expired,
    Fill,
    Modified,
    Reason,
    Rejected,
    Trade,
)
from tests.matching.helpers import (
    ALICE,
    BOB,
    BTC_USDC,
    CAROL,
    ETH,
    ETH_USDC,
    FEE,
    USDC,
    Harness,
    book_view,
    cancel,
    cancel_all,
    cancel_cloid,
    kinds,
    modify,
    place,
    reserve,
    state_view,
)


@pytest.fixture
def h() -> Harness:
    h = Harness()
    for who in (ALICE, BOB, CAROL):
        h.fund(who, USDC, 1_000_000)
        h.fund(who, ETH, 10_000)
    return h


def oid_of(events: Sequence[object]) -> int:
    accepted = events[0]
    assert isinstance(accepted, Accepted), events
    return accepted.oid


def rejected(events: Sequence[object]) -> str:
    assert len(events) == 1 and isinstance(events[0], Rejected), events
    return events[0].code


# ------------------------------------------------------------------------ resting orders


def test_gtc_buy_rests_and_locks_notional_plus_worst_fee(h: Harness) -> None:
    ev = h.one(ALICE, place(side="buy", price=1000, size=100))
    assert kinds(ev) == ["Accepted", "BalanceChanged"]
    need = reserve(1000, 100)  # 10 lots * 1000 = 10,000 + 30 bps = 10,030
    assert need == 10_030
    assert h.balance(ALICE, USDC) == (1_000_000 - need, need)
    assert ev[1] == BalanceChanged(ALICE, USDC, 1_000_000 - need, need)
    assert book_view(h.engine) == ([(1000, [oid_of(ev)])], [])


def test_gtc_sell_rests_and_locks_base(h: Harness) -> None:
    ev = h.one(BOB, place(side="sell", price=1000, size=100))
    assert h.balance(BOB, ETH) == (9_900, 100)
    assert book_view(h.engine) == ([], [(1000, [oid_of(ev)])])


def test_post_only_rests_when_passive_and_is_rejected_when_crossing(h: Harness) -> None:
    h.one(BOB, place(side="sell", price=1000, size=100))
    assert kinds(h.one(ALICE, place(side="buy", price=995, size=10, tif="post")))[0] == "Accepted"
    before = state_view(h.engine)
    ev = h.one(ALICE, place(side="buy", price=1000, size=10, tif="post"))
    assert rejected(ev) == Reason.POST_ONLY_WOULD_CROSS
    assert state_view(h.engine) == before


# ------------------------------------------------------------------------------ matching


def test_cross_fills_at_maker_price_with_fees(h: Harness) -> None:
    maker = oid_of(h.one(BOB, place(side="sell", price=1000, size=100)))
    ev = h.one(ALICE, place(side="buy", price=1010, size=100))
    taker = oid_of(ev)
    trade = next(e for e in ev if isinstance(e, Trade))
    assert trade == Trade(1, ETH_USDC, 1000, 100, "buy", taker, maker)
    fills = [e for e in ev if isinstance(e, Fill)]
    assert fills == [
        Fill(1, taker, ALICE, ETH_USDC, "buy", 1000, 100, 30, False, 0),
        Fill(1, maker, BOB, ETH_USDC, "sell", 1000, 100, 10, True, 0),
    ]
    assert h.balance(ALICE, USDC) == (1_000_000 - 10_000 - 30, 0)  # limit 1010 reserve refunded
    assert h.balance(ALICE, ETH) == (10_100, 0)
    assert h.balance(BOB, USDC) == (1_000_000 + 10_000 - 10, 0)
    assert h.balance(BOB, ETH) == (9_900, 0)
    assert h.balance(FEE, USDC) == (40, 0)
    assert book_view(h.engine) == ([], [])
    balance_events = {(e.account, e.asset) for e in ev if isinstance(e, BalanceChanged)}
    assert balance_events == {(ALICE, USDC), (ALICE, ETH), (BOB, USDC), (BOB, ETH), (FEE, USDC)}


def test_partial_fill_then_rest_with_remaining_reservation(h: Harness) -> None:
    h.one(BOB, place(side="sell", price=1000, size=40))
    ev = h.one(ALICE, place(side="buy", price=1005, size=100))
    oid = oid_of(ev)
    assert book_view(h.engine) == ([(1005, [oid])], [])
    spent = 1000 * 4 + 1000 * 4 * 30 // 10_000
    assert h.balance(ALICE, USDC) == (1_000_000 - spent - reserve(1005, 60), reserve(1005, 60))
    assert [o.size for o in h.engine.open_orders(ALICE)] == [60]


def test_price_then_time_priority(h: Harness) -> None:
    first = oid_of(h.one(BOB, place(side="sell", price=1000, size=10)))
    second = oid_of(h.one(CAROL, place(side="sell", price=1000, size=10)))
    better = oid_of(h.one(CAROL, place(side="sell", price=995, size=10)))
    ev = h.one(ALICE, place(side="buy", price=1000, size=20, tif="ioc"))
    makers = [e.maker_oid for e in ev if isinstance(e, Trade)]
    assert makers == [better, first]
    assert book_view(h.engine) == ([], [(1000, [second])])


def test_ioc_remainder_is_cancelled_and_nothing_stays_locked(h: Harness) -> None:
    h.one(BOB, place(side="sell", price=1000, size=30))
    ev = h.one(ALICE, place(side="buy", price=1000, size=100, tif="ioc"))
    cancelled = [e for e in ev if isinstance(e, Cancelled)]
    assert cancelled == [Cancelled(oid_of(ev), ALICE, ETH_USDC, 70, Reason.IOC)]
    assert h.balance(ALICE, USDC)[1] == 0
    assert book_view(h.engine) == ([], [])


def test_ioc_that_does_not_cross_is_accepted_then_cancelled(h: Harness) -> None:
    ev = h.one(ALICE, place(side="buy", price=1000, size=10, tif="ioc"))
    assert kinds(ev) == ["Accepted", "Cancelled"]
    assert h.balance(ALICE, USDC) == (1_000_000, 0)


def test_fok_unfillable_is_rejected_without_touching_state(h: Harness) -> None:
    h.one(BOB, place(side="sell", price=1000, size=30))
    h.one(ALICE, place(side="sell", price=1000, size=50))  # own: STP, does not count
    before = state_view(h.engine)
    ev = h.one(ALICE, place(side="buy", price=1000, size=40, tif="fok"))
    assert rejected(ev) == Reason.FOK_UNFILLABLE
    assert state_view(h.engine) == before


def test_fok_fillable_fills_completely(h: Harness) -> None:
    h.one(BOB, place(side="sell", price=1000, size=30))
    h.one(CAROL, place(side="sell", price=1005, size=30))
    ev = h.one(ALICE, place(side="buy", price=1005, size=60, tif="fok"))
    assert sum(e.size for e in ev if isinstance(e, Trade)) == 60
    assert book_view(h.engine) == ([], [])


def test_market_order_respects_worst_price(h: Harness) -> None:
    h.one(BOB, place(side="sell", price=1000, size=10))
    h.one(BOB, place(side="sell", price=1100, size=10))
    ev = h.one(ALICE, place(side="buy", price=1050, size=20, kind="market", tif="ioc"))
    assert [e.price for e in ev if isinstance(e, Trade)] == [1000]
    assert [e.size for e in ev if isinstance(e, Cancelled)] == [10]
    ev = h.one(ALICE, place(side="sell", price=900, size=10, kind="market", tif="fok"))
    assert rejected(ev) == Reason.FOK_UNFILLABLE  # no bids at all


def test_market_order_needs_ioc_or_fok(h: Harness) -> None:
    assert rejected(h.one(ALICE, place(kind="market", tif="gtc"))) == Reason.BAD_TIF
    assert rejected(h.one(ALICE, place(kind="market", tif="post"))) == Reason.BAD_TIF


def test_self_trade_prevention_cancels_the_resting_maker_and_continues(h: Harness) -> None:
    own = oid_of(h.one(ALICE, place(side="sell", price=1000, size=10)))
    other = oid_of(h.one(BOB, place(side="sell", price=1000, size=10)))
    ev = h.one(ALICE, place(side="buy", price=1000, size=10))
    assert Cancelled(own, ALICE, ETH_USDC, 10, Reason.SELF_TRADE) in ev
    assert [e.maker_oid for e in ev if isinstance(e, Trade)] == [other]
    assert h.balance(ALICE, ETH) == (10_010, 0)  # the cancelled sell's lock came back


def test_reduce_only_is_rejected_on_spot(h: Harness) -> None:
    assert rejected(h.one(ALICE, place(reduce_only=True))) == Reason.REDUCE_ONLY_SPOT


def test_insufficient_balance_rejects_the_whole_order(h: Harness) -> None:
    h.one(BOB, place(side="sell", price=1000, size=10))
    before = state_view(h.engine)
    ev = h.one(ALICE, place(side="buy", price=1000, size=1_000_000))
    assert rejected(ev) == Reason.INSUFFICIENT_BALANCE
    assert state_view(h.engine) == before


# --------------------------------------------------------------------------------- expiry


def test_order_expires_at_block_time_and_releases_funds(h: Harness) -> None:
    ev = h.one(ALICE, place(price=1000, size=10, expires_ms=h.ts + 100))
    oid = oid_of(ev)
    assert h.block([], advance_ms=50).expired == []
    result = h.block([], advance_ms=50)
    assert result.expired[0] == Expired(oid, ALICE, ETH_USDC, 10)
    assert h.balance(ALICE, USDC) == (1_000_000, 0)
    assert book_view(h.engine) == ([], [])


def test_order_already_expired_is_rejected(h: Harness) -> None:
    ev = h.one(ALICE, place(expires_ms=h.ts))  # the block's time is h.ts + 1
    assert rejected(ev) == Reason.ALREADY_EXPIRED


# -------------------------------------------------------------------------------- cancels


def test_cancel_by_oid_releases_the_lock(h: Harness) -> None:
    oid = oid_of(h.one(ALICE, place(price=1000, size=100)))
    ev = h.one(ALICE, cancel(oid))
    assert ev == [
        Cancelled(oid, ALICE, ETH_USDC, 100, Reason.USER),
        BalanceChanged(ALICE, USDC, 1_000_000, 0),
    ]
    assert book_view(h.engine) == ([], [])


def test_cancel_unknown_foreign_or_wrong_market_is_rejected(h: Harness) -> None:
    oid = oid_of(h.one(ALICE, place(price=1000, size=100)))
    before = state_view(h.engine)
    assert rejected(h.one(ALICE, cancel(oid + 100))) == Reason.UNKNOWN_ORDER
    assert rejected(h.one(BOB, cancel(oid))) == Reason.UNKNOWN_ORDER  # not Bob's
    assert rejected(h.one(ALICE, cancel(oid, market=BTC_USDC))) == Reason.WRONG_MARKET
    assert state_view(h.engine) == before
    assert kinds(h.one(ALICE, cancel(oid)))[0] == "Cancelled"


def test_cancel_by_cloid_and_duplicate_cloid(h: Harness) -> None:
    oid = oid_of(h.one(ALICE, place(price=1000, size=10, cloid=7)))
    assert rejected(h.one(ALICE, place(price=995, size=10, cloid=7))) == Reason.DUPLICATE_CLOID
    assert oid_of(h.one(BOB, place(price=995, size=10, cloid=7))) > oid  # per account
    assert rejected(h.one(ALICE, cancel_cloid(8))) == Reason.UNKNOWN_ORDER
    ev = h.one(ALICE, cancel_cloid(7))
    assert ev[0] == Cancelled(oid, ALICE, ETH_USDC, 10, Reason.USER)
    assert oid_of(h.one(ALICE, place(price=995, size=10, cloid=7))) > oid  # free again


def test_cancel_all_one_market_or_all(h: Harness) -> None:
    h.fund(ALICE, 2, 1000)  # BTC
    a = oid_of(h.one(ALICE, place(price=1000, size=10)))
    b = oid_of(h.one(ALICE, place(side="sell", price=2000, size=10)))
    c = oid_of(h.one(ALICE, place(market=BTC_USDC, side="sell", price=50, size=3)))
    ev = h.one(ALICE, cancel_all(ETH_USDC))
    assert [e.oid for e in ev if isinstance(e, Cancelled)] == [a, b]
    assert [o.oid for o in h.engine.open_orders(ALICE)] == [c]
    ev = h.one(ALICE, cancel_all(None))
    assert [e.oid for e in ev if isinstance(e, Cancelled)] == [c]
    assert h.balance(ALICE, USDC) == (1_000_000, 0)
    assert rejected(h.one(ALICE, cancel_all(42))) == Reason.UNKNOWN_MARKET


def test_cancels_apply_before_other_entries_of_the_block(h: Harness) -> None:
    maker = oid_of(h.one(BOB, place(side="sell", price=1000, size=10)))
    taker = h.entry(ALICE, place(side="buy", price=1000, size=10))
    pull = h.entry(BOB, cancel(maker))
    result = h.block([taker, pull])
    assert kinds(result.events[1])[0] == "Cancelled"  # applied first
    assert not any(isinstance(e, Trade) for e in result.events[0])


# --------------------------------------------------------------------------------- modify


def test_modify_smaller_size_same_price_keeps_priority(h: Harness) -> None:
    first = oid_of(h.one(ALICE, place(price=1000, size=100)))
    second = oid_of(h.one(BOB, place(price=1000, size=100)))
    ev = h.one(ALICE, modify(first, 1000, 50))
    assert ev[0] == Modified(first, ALICE, ETH_USDC, 1000, 50, True)
    assert book_view(h.engine) == ([(1000, [first, second])], [])
    assert h.balance(ALICE, USDC) == (1_000_000 - reserve(1000, 50), reserve(1000, 50))


@pytest.mark.parametrize(("price", "size"), [(1000, 200), (995, 50), (1005, 100)])
def test_modify_otherwise_loses_priority(h: Harness, price: int, size: int) -> None:
    first = oid_of(h.one(ALICE, place(price=1000, size=100)))
    second = oid_of(h.one(BOB, place(price=price, size=100)))
    ev = h.one(ALICE, modify(first, price, size))
    assert ev[0] == Modified(first, ALICE, ETH_USDC, price, size, False)
    assert book_view(h.engine)[0][0] == (price, [second, first])
    assert h.balance(ALICE, USDC)[1] == reserve(price, size)


def test_modify_that_crosses_takes_liquidity(h: Harness) -> None:
    oid = oid_of(h.one(ALICE, place(price=990, size=100)))
    h.one(BOB, place(side="sell", price=1000, size=40))
    ev = h.one(ALICE, modify(oid, 1000, 100))
    assert [e.size for e in ev if isinstance(e, Trade)] == [40]
    assert book_view(h.engine) == ([(1000, [oid])], [])
    assert [o.size for o in h.engine.open_orders(ALICE)] == [60]


def test_modify_rejections_leave_the_order_alone(h: Harness) -> None:
    oid = oid_of(h.one(ALICE, place(price=990, size=100, tif="post")))
    h.one(BOB, place(side="sell", price=1000, size=40))
    before = state_view(h.engine)
    assert rejected(h.one(ALICE, modify(oid, 1000, 100))) == Reason.POST_ONLY_WOULD_CROSS
    assert rejected(h.one(ALICE, modify(oid, 990, 10**9))) == Reason.INSUFFICIENT_BALANCE
    assert rejected(h.one(ALICE, modify(oid, 991, 100))) == Reason.OFF_TICK
    assert rejected(h.one(BOB, modify(oid, 990, 50))) == Reason.UNKNOWN_ORDER
    assert state_view(h.engine) == before
