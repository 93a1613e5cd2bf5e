"""Liquidation rounds depend only on the state, never on the liquidation index.

A round's set is exactly the accounts under maintenance when it begins, processed in
address order; an account that a liquidation pushes under maintenance (a maker it fills)
waits for the next round even if the index happened to hold it as a candidate. Here one
engine holds such a maker as an extra (healthy) candidate, as a member restored from a
snapshot may, and must give the same events and state as the engine that ran live.
"""

from __future__ import annotations

from typing import Any

from matching.engine import Engine
from matching.events import Liquidation
from tests.matching.perp_helpers import (
    BTC_PERP,
    MEMBERS,
    TRADERS,
    PerpHarness,
    oracle,
    perp_order,
    set_leverage,
)

# Addresses ascend in this order: the maker M sorts between the two longs A and X.
A, B, M, X, D, E = TRADERS


def _cascade_setup() -> tuple[PerpHarness, list[dict[str, Any]]]:
    """A and X long 100 lots of BTC-PERP at 1,000 at about 9x; the block returned moves
    the index to 900 and, before that, has a trade print at 900 and the maker M (no
    position, just enough collateral) bid 100 lots at 960. A's liquidation sells into M's
    bid: M buys at 960 what is worth 900 and falls under maintenance."""
    h = PerpHarness()
    h.block(
        [
            h.deposit(A, 11_000),
            h.deposit(X, 11_000),
            h.deposit(B, 1_000_000),
            h.deposit(D, 1_000_000),
            h.deposit(E, 1_000_000),
            h.deposit(M, 9_700),
        ]
    )
    h.prices((BTC_PERP, 1_000))
    h.one(M, set_leverage(10))  # M has perp state (and no position) from here on
    h.one(B, perp_order("sell", 1_000, 2_000))
    h.one(A, perp_order("buy", 1_000, 1_000, tif="ioc"))
    h.one(X, perp_order("buy", 1_000, 1_000, tif="ioc"))
    assert h.position(A) == (1_000, 100_000) and h.position(X) == (1_000, 100_000)
    move = [
        h.entry(D, perp_order("sell", 900, 10)),
        h.entry(E, perp_order("buy", 900, 10, tif="ioc")),  # the last trade: 900
        h.entry(M, perp_order("buy", 960, 1_000)),
        h.entry(D, perp_order("buy", 850, 3_000)),
        *(oracle(m, (BTC_PERP, 900)) for m in MEMBERS),
    ]
    return h, move


def test_a_maker_pushed_under_waits_for_the_next_round() -> None:
    h, move = _cascade_setup()
    result = h.block(move)
    assert [type(e).__name__ for e in result.events[2]] == ["Accepted"]  # M's bid rests
    liquidated = [e.account for e in result.end if isinstance(e, Liquidation)]
    # Round 1: A and X (address order); round 2: M, whom A's liquidation filled.
    assert liquidated == [A, X, M]


def test_extra_candidates_do_not_change_the_outcome() -> None:
    h, move = _cascade_setup()
    copy = Engine.restore(h.engine.snapshot())
    assert copy.snapshot() == h.engine.snapshot()
    # The copy holds M (and everybody else) as a candidate at the next block's end.
    copy.perps.touched.update(dict.fromkeys(copy.perps.accounts))
    live = h.block(move)
    restored = copy.apply_block(h.ts, move)
    assert restored.end == live.end
    assert restored == live
    assert copy.digest() == h.engine.digest()
    assert copy.checkpoint() == h.engine.checkpoint()
