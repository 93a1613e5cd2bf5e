"""Reduce-only option orders (docs/MATCHING.md, "Options"): IOC, FOK or market only, a
holding on the other side, filled up to the holding (the rest cancelled, reason
`reduce_only`), and a margin check that lets an account under its initial margin close
what it holds when that leaves its free margin no smaller."""

from __future__ import annotations

from typing import Any

from matching.events import Accepted, Cancelled, Reason, Rejected
from tests.matching.option_helpers import C50, INDEX, P50, OptionHarness, option_order
from tests.matching.perp_helpers import TRADERS

A, B, C = TRADERS[:3]


def reduce_only(market: int, side: str, price: int, size: int, tif: str = "ioc") -> dict[str, Any]:
    return {**option_order(market, side, price, size, tif), "reduce_only": True}


def code(events: list[Any]) -> str:
    assert type(events[0]) is Rejected, events
    return str(events[0].code)


def short_two_calls(capital: int = 30_000) -> OptionHarness:
    """A sells 2 ATM calls to B at the mark; C has money to make markets."""
    h = OptionHarness()
    h.fund(capital, (A,))
    h.fund(10_000_000, (B, C))
    h.index()
    options = h.engine.options
    assert options is not None
    mark = options.series[C50].mark
    h.place(B, C50, "buy", mark, 2)
    assert type(h.place(A, C50, "sell", mark, 2)[0]) is Accepted
    assert h.holding(A, C50) == -2
    return h


def test_reduce_only_needs_ioc_and_a_holding_on_the_other_side() -> None:
    h = short_two_calls()
    assert code(h.one(A, reduce_only(C50, "buy", 5_000, 1, "gtc"))) == Reason.REDUCE_ONLY_TIF
    assert code(h.one(A, reduce_only(C50, "buy", 5_000, 1, "post"))) == Reason.REDUCE_ONLY_TIF
    # A is short: a reduce-only sell would add to it; no holding in the put at all.
    assert code(h.one(A, reduce_only(C50, "sell", 5_000, 1))) == Reason.REDUCE_ONLY_NO_POSITION
    assert code(h.one(A, reduce_only(P50, "buy", 5_000, 1))) == Reason.REDUCE_ONLY_NO_POSITION
    assert code(h.one(C, reduce_only(C50, "buy", 5_000, 1))) == Reason.REDUCE_ONLY_NO_POSITION
    assert h.holding(A, C50) == -2


def test_reduce_only_fills_at_most_the_holding() -> None:
    h = short_two_calls()
    h.place(C, C50, "sell", 5_000, 10)
    events = h.one(A, reduce_only(C50, "buy", 5_000, 5))
    assert type(events[0]) is Accepted and events[0].size == 5
    cancelled = [e for e in events if type(e) is Cancelled]
    assert [(e.size, e.reason) for e in cancelled] == [(3, Reason.REDUCE_ONLY)]
    assert h.holding(A, C50) == 0 and h.holding(C, C50) == -2
    # Nothing left to reduce.
    assert code(h.one(A, reduce_only(C50, "buy", 5_000, 1))) == Reason.REDUCE_ONLY_NO_POSITION


def test_fok_reduce_only_takes_the_capped_size() -> None:
    h = short_two_calls()
    h.place(C, C50, "sell", 5_000, 2)  # exactly the holding, not the 4 asked
    events = h.one(A, reduce_only(C50, "buy", 5_000, 4, "fok"))
    assert type(events[0]) is Accepted, events
    assert h.holding(A, C50) == 0


def test_an_account_under_its_initial_margin_may_close_but_not_add() -> None:
    h = short_two_calls()
    h.index(INDEX * 118 // 100)  # the calls rally: A is under initial, over maintenance
    options = h.engine.options
    assert options is not None
    account = h.engine.accounts[A]
    maintenance, initial = options.requirement(account)
    assert maintenance < options.equity(account) < initial
    assert h.holding(A, C50) == -2  # not liquidated
    ask = options.series[C50].mark + 50
    h.place(C, C50, "sell", ask, 5)
    # A plain buy-back counts as an open bid on top of the holding: refused.
    plain = h.one(A, option_order(C50, "buy", ask, 1, "ioc"))
    assert code(plain) == Reason.INSUFFICIENT_MARGIN
    # Reduce-only: its fill leaves more free margin than A has now.
    events = h.one(A, reduce_only(C50, "buy", ask, 1))
    assert type(events[0]) is Accepted, events
    assert h.holding(A, C50) == -1
    # A limit far over the mark (the check takes the limit) would leave less free
    # margin: refused even reduce-only.
    assert code(h.one(A, reduce_only(C50, "buy", ask * 3, 1))) == Reason.INSUFFICIENT_MARGIN
