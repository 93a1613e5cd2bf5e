"""matching/portfolio.py: the packed sums equal plain sums, a hedge never costs more than
its legs, the liquidation order is the brute-force one, the standard mode and the worked
example of docs/MATCHING.md ("Options")."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import options as op
from matching import portfolio as pf

DAY_MS = 86_400_000
F = 60_000_000_000  # 60,000.000000 (6 decimals)
PARAMS = pf.RiskParams(
    price_move_bps=1_500,
    price_steps=6,
    vol_shift_e9=150_000_000,
    vol_floor_e9=50_000_000,
    initial_bps=13_000,
    short_option_bps=1_500,
    short_option_min_bps=1_000,
    linear_bps=500,
)
GRID = pf.ScenarioGrid(PARAMS)


@cache
def series(key: int) -> pf.RiskVector:
    """A fixed menu of instruments: calls and puts over strikes and expiries, a perp."""
    if key == 99:
        return pf.linear_risk(GRID, 99, F)
    strike = F * (70 + 10 * (key % 7)) // 100
    days = (1, 7, 30, 90)[key // 7 % 4]
    return pf.option_risk(GRID, key, key // 28 % 2 == 0, strike, F, 700_000_000, days * DAY_MS)


KEYS = st.sampled_from([*range(56), 99])
POSITIONS = st.lists(
    st.tuples(KEYS, st.integers(min_value=-(10**6), max_value=10**6)), min_size=1, max_size=12
)


def build(raw: list[tuple[int, int]]) -> list[pf.Position]:
    return [(series(k), size) for k, size in raw]


def test_grid_shape() -> None:
    assert len(GRID) == 3 * 13
    assert GRID.moves_bps[GRID.base] == 0 and GRID.vol_shifts_e9[GRID.base] == 0
    assert GRID.moves_bps[:13] == [
        -1500,
        -1250,
        -1000,
        -750,
        -500,
        -250,
        0,
        250,
        500,
        750,
        1000,
        1250,
        1500,
    ]
    assert set(GRID.vol_shifts_e9) == {-150_000_000, 0, 150_000_000}
    for key in range(56):
        assert series(key).values[GRID.base] == 0  # the unmoved scenario is the mark


@given(POSITIONS)
@settings(max_examples=200, deadline=None)
def test_packed_sums_are_plain_sums(raw: list[tuple[int, int]]) -> None:
    positions = build(raw)
    plain = [sum(size * v.values[s] for v, size in positions) for s in range(len(GRID))]
    assert pf.scenario_pnl(GRID, positions) == plain
    loss = max(-p for p in plain)
    margin = pf.portfolio_margin(GRID, positions)
    assert margin.maintenance == max(0, -(-loss // op.E18))
    assert margin.initial == -(-margin.maintenance * 13_000 // 10_000)


@given(POSITIONS, st.lists(st.tuples(st.integers(0, 11), st.integers(-500, 500)), max_size=20))
@settings(max_examples=100, deadline=None)
def test_incremental_margin_equals_the_full_one(
    raw: list[tuple[int, int]], fills: list[tuple[int, int]]
) -> None:
    positions = build(raw)
    packed = pf.packed_pnl(positions)
    for index, lots in fills:
        i = index % len(positions)
        vector, size = positions[i]
        positions[i] = (vector, size + lots)
        packed += lots * vector.packed  # what phase 2 keeps per account
        assert pf.margin_of_packed(GRID, packed) == pf.portfolio_margin(GRID, positions)


def test_packing_holds_at_the_extremes() -> None:
    big = (1 << pf.MAX_VALUE_BITS) - 1
    vector = pf.RiskVector(1, pf.LINEAR, [big, -big] * 19 + [big], 0, 0, 0)
    positions = [(vector, pf.MAX_SIZE)] * pf.MAX_POSITIONS
    expected = [v * pf.MAX_SIZE * pf.MAX_POSITIONS for v in vector.values]
    assert pf.scenario_pnl(GRID, positions) == expected
    with pytest.raises(ValueError, match="positions"):
        pf.scenario_pnl(GRID, [*positions, (vector, 1)])
    with pytest.raises(ValueError, match="position size"):
        pf.scenario_pnl(GRID, [(vector, pf.MAX_SIZE + 1)])


@given(POSITIONS)
@settings(max_examples=200, deadline=None)
def test_a_hedge_costs_at_most_its_legs(raw: list[tuple[int, int]]) -> None:
    positions = build(raw)
    whole = pf.portfolio_margin(GRID, positions)
    legs = [pf.portfolio_margin(GRID, [p]) for p in positions]
    assert whole.maintenance <= sum(m.maintenance for m in legs)
    assert whole.initial <= sum(m.initial for m in legs)


def test_hedges_are_recognised() -> None:
    call, put, perp = series(2), series(30), series(99)  # 90 % call, 90 % put (1 day), perp
    assert call.kind == pf.CALL and put.kind == pf.PUT and perp.kind == pf.LINEAR
    short_call = pf.portfolio_margin(GRID, [(call, -10)]).maintenance
    assert short_call > 0
    covered = pf.portfolio_margin(GRID, [(call, -10), (perp, 10)]).maintenance
    assert covered < short_call / 2  # it loses only below the strike, less the premium
    # long the put + long the perp + short the call (a conversion) is nearly riskless
    conversion = [(put, 10), (perp, 10), (call, -10)]
    assert pf.portfolio_margin(GRID, conversion).maintenance < short_call / 20
    # a long option alone can lose at most what it is worth
    assert pf.portfolio_margin(GRID, [(call, 10)]).maintenance <= -(-10 * call.mark // op.E18)


def test_standard_mode() -> None:
    otm_call = series(5)  # strike 120 % of F
    itm_call = series(2)  # strike 90 %
    # short 120 % call: max(15 % · F − 20 % · F, 10 % · F) = 10 % of F = 6,000 per contract
    assert pf.standard_margin(PARAMS, [(otm_call, -2)]).maintenance == 2 * F // 10
    # short 90 % call (in the money): 15 % · F = 9,000 per contract
    assert pf.standard_margin(PARAMS, [(itm_call, -1)]).maintenance == F * 15 // 100
    assert pf.standard_margin(PARAMS, [(itm_call, 5)]).maintenance == 0  # long: paid for
    perp = pf.standard_margin(PARAMS, [(series(99), -3)])
    assert perp.maintenance == 3 * F * 5 // 100 and perp.initial == perp.maintenance * 13 // 10
    # a hedge gets no credit in standard mode, and the risk matrix is never above it here
    covered = [(itm_call, -10), (series(99), 10)]
    assert pf.standard_margin(PARAMS, covered).maintenance == 10 * F * 20 // 100
    assert pf.portfolio_margin(GRID, covered).maintenance < 10 * F * 20 // 100


@given(POSITIONS)
@settings(max_examples=100, deadline=None)
def test_liquidation_order_is_the_brute_force_one(raw: list[tuple[int, int]]) -> None:
    positions = build(raw)
    now = pf.portfolio_margin(GRID, positions).maintenance
    order = pf.liquidation_order(GRID, positions)
    assert sorted(r.index for r in order) == list(range(len(positions)))
    for r in order:
        rest = positions[: r.index] + positions[r.index + 1 :]
        after = pf.portfolio_margin(GRID, rest).maintenance if rest else 0
        assert (r.margin_after, r.relief, r.key) == (after, now - after, positions[r.index][0].key)
    assert [r.relief for r in order] == sorted((r.relief for r in order), reverse=True)


def test_liquidation_order_closes_the_naked_leg_first() -> None:
    positions = [(series(99), 10), (series(2), -10), (series(40), -50)]
    first = pf.liquidation_order(GRID, positions)[0]
    assert first.index == 2 and first.relief > 0  # the big short put, not the hedged pair


def test_empty_portfolio_and_bad_params() -> None:
    assert pf.portfolio_margin(GRID, []) == pf.Margin(0, 0, GRID.base)
    assert pf.liquidation_order(GRID, []) == []
    with pytest.raises(ValueError, match="price_move_bps"):
        pf.RiskParams(0, 6, 0, 0, 13_000, 0, 0, 0)
    with pytest.raises(ValueError, match="initial_bps"):
        pf.RiskParams(1500, 6, 0, 0, 9_000, 0, 0, 0)
    with pytest.raises(ValueError, match="price_steps"):
        pf.RiskParams(1500, 0, 0, 0, 13_000, 0, 0, 0)
    with pytest.raises(ValueError, match="forward"):
        pf.linear_risk(GRID, 1, 0)
    with pytest.raises(ValueError, match="strike"):
        pf.option_risk(GRID, 1, True, 0, F, 1, 1)


def test_worked_example() -> None:
    """The example of docs/MATCHING.md ("Options", "Worked example"), figure for figure."""
    grid = pf.ScenarioGrid(
        pf.RiskParams(1_500, 3, 150_000_000, 50_000_000, 13_000, 1_500, 1_000, 500)
    )
    call = pf.option_risk(grid, 1, True, 66_000_000_000, F, 600_000_000, 30 * DAY_MS)
    perp = pf.linear_risk(grid, 2, F)
    assert call.mark == 1_962_156_302_825_645_172_880_864_122
    short_call = pf.portfolio_margin(grid, [(call, -10)])
    hedged = pf.portfolio_margin(grid, [(call, -10), (perp, 3)])
    perp_alone = pf.portfolio_margin(grid, [(perp, 3)])
    assert (short_call.maintenance, short_call.initial) == (54_394_108_778, 70_712_341_412)
    assert grid.moves_bps[short_call.worst_scenario] == 1500
    assert grid.vol_shifts_e9[short_call.worst_scenario] == 150_000_000
    assert (hedged.maintenance, hedged.initial) == (27_394_108_778, 35_612_341_412)
    assert perp_alone.maintenance == 27_000_000_000
    assert pf.standard_margin(grid.params, [(call, -10), (perp, 3)]).maintenance == 69_000_000_000
