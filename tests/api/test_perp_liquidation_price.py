"""The liquidation price of node/api/perps.py against the engine's own rule, for random
positions: at the price the unit (cross margin or isolated position) is under
maintenance by matching/margin.py's functions, and one price unit on the safe side it is
not; a price is null only when no mark in [0, 2^64) reaches it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from matching.config import U64_MAX
from matching.engine import Engine
from matching.margin import (
    PerpMarket,
    Position,
    cross_equity,
    cross_maintenance,
    isolated_equity,
)
from node.api.perps import cross_base, liquidation_price
from tests.matching import perp_helpers as ph

ACCOUNT = bytes([0x42]) * 20


def under(engine: Engine, pos: Position, mark: int) -> bool:
    """The engine's liquidation test of the position's unit at this mark of its market."""
    market = pos.market
    saved = market.mark
    market.mark = mark
    try:
        if pos.isolated:
            return isolated_equity(pos) < pos.maintenance()
        account = engine.accounts[ACCOUNT]
        assert account.perp is not None
        held = account.perp.positions
        perps = engine.perps
        assert perps is not None
        return cross_equity(held, account.available[perps.coll]) < cross_maintenance(held)
    finally:
        market.mark = saved


@settings(max_examples=300, deadline=None)
@given(
    lots=st.integers(-(10**6), 10**6).filter(bool),
    entry_price=st.integers(1, 10**7),
    mark=st.integers(1, 10**7),
    cash=st.integers(0, 10**12),
    isolated=st.booleans(),
    margin=st.integers(0, 10**11),
    other_lots=st.integers(-(10**4), 10**4),
)
def test_liquidation_price_is_the_engines_boundary(
    lots: int,
    entry_price: int,
    mark: int,
    cash: int,
    isolated: bool,
    margin: int,
    other_lots: int,
) -> None:
    engine = Engine(ph.perp_genesis())
    perps = engine.perps
    assert perps is not None
    account = engine._account(ACCOUNT)
    account.available[perps.coll] = cash
    btc: PerpMarket = perps.markets[ph.BTC_PERP]
    eth: PerpMarket = perps.markets[ph.ETH_PERP]
    btc.mark, eth.mark = mark, 1_000
    pos = perps.position(account, btc)
    pos.size, pos.entry = lots * btc.lot, lots * entry_price
    pos.isolated, pos.margin = isolated, margin if isolated else 0
    other = perps.position(account, eth)  # a cross position in another market
    other.size, other.entry = other_lots * eth.lot, other_lots * 1_000

    found = liquidation_price(pos, cross_base(account, perps.coll))
    if found is None:
        assert not under(engine, pos, 0 if lots > 0 else U64_MAX)
        return
    assert 0 <= found <= U64_MAX
    assert under(engine, pos, found)
    safe = found + 1 if lots > 0 else found - 1
    if 0 <= safe <= U64_MAX:
        assert not under(engine, pos, safe)
