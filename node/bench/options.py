"""The options core's costs, reported by `seqnet bench matching` (docs/BENCHMARKS.md,
"Options").

- greeks: value, delta, gamma, vega and theta of one series (options.greeks), over a seeded
  mix of strikes (0.5–2 × F), expiries (1 hour – 1 year) and vols (20–200 %), calls and puts.
- risk vectors: one series revalued in every scenario of the risk matrix (portfolio.
  option_risk), what a mark update costs per series (shared by every account).
- portfolio margin: a 50-position account (48 options over 12 strikes × 4 expiries, a
  perp, a spot holding) re-margined after each fill: the fill changes one position's size,
  then portfolio_margin sums all 50 cached risk vectors and takes the worst scenario.
- incremental: the same fills with the account's packed P&L kept (portfolio.packed_pnl)
  and moved by each fill, re-margined by margin_of_packed (how phase 2 can hold it).
- liquidation order: the same account, every position's relief (portfolio.
  liquidation_order).

CPU time of this thread (time.thread_time), as the engine benchmarks: other jobs on a
shared machine delay us without making the code slower. The caller gives the spot stream's
entries/s measured in the same run, so each figure comes with a same-run ratio.
"""

from __future__ import annotations

import random
import time
from typing import Final

from matching import options as op
from matching import portfolio as pf

DAY_MS: Final = 86_400_000
FORWARD: Final = 60_000_000_000  # 60,000 with 6 decimals
PARAMS: Final = pf.RiskParams(
    price_move_bps=1_500,
    price_steps=6,
    vol_shift_e9=150_000_000,
    vol_floor_e9=50_000_000,
    initial_bps=13_000,
    short_option_bps=1_500,
    short_option_min_bps=1_000,
    linear_bps=500,
)


def _greeks_inputs(rng: random.Random, count: int) -> list[tuple[bool, int, int, int]]:
    return [
        (
            rng.random() < 0.5,
            FORWARD * rng.randrange(50, 200) // 100,
            rng.randrange(200_000_000, 2_000_000_000),
            rng.randrange(3_600_000, 365 * DAY_MS),
        )
        for _ in range(count)
    ]


def _account(grid: pf.ScenarioGrid, rng: random.Random) -> list[pf.Position]:
    positions: list[pf.Position] = []
    key = 0
    for days in (7, 30, 90, 180):
        for strike_pct in range(70, 130, 5):
            key += 1
            strike = FORWARD * strike_pct // 100
            vol = 600_000_000 + abs(strike_pct - 100) * 4_000_000  # a smile
            vector = pf.option_risk(grid, key, key % 2 == 0, strike, FORWARD, vol, days * DAY_MS)
            positions.append((vector, rng.randrange(-50, 50) or 1))
    positions.append((pf.linear_risk(grid, 1_000, FORWARD), rng.randrange(-30, 30)))  # perp
    positions.append((pf.linear_risk(grid, 1_001, FORWARD), rng.randrange(0, 10)))  # spot
    return positions


def figures(spot_entries_per_s: float, seed: int = 1, rounds: int = 5) -> dict[str, float]:
    """The options keys of `seqnet bench matching --json` (median of `rounds` runs each)."""
    rng = random.Random(seed)
    clock = time.thread_time

    inputs = _greeks_inputs(rng, 2_000)
    greeks_s: list[float] = []
    for _ in range(rounds):
        t = clock()
        for is_call, strike, vol, t_ms in inputs:
            op.greeks(is_call, FORWARD, strike, vol, t_ms)
        greeks_s.append(clock() - t)

    grid = pf.ScenarioGrid(PARAMS)
    t = clock()
    positions = _account(grid, rng)
    vectors_s = clock() - t
    options_count = sum(1 for v, _ in positions if v.kind != pf.LINEAR)

    fills = [
        (rng.randrange(len(positions)), rng.choice((-3, -2, -1, 1, 2, 3))) for _ in range(2_000)
    ]
    margin_s: list[float] = []
    for _ in range(rounds):
        book = list(positions)
        t = clock()
        for index, lots in fills:
            vector, size = book[index]
            book[index] = (vector, size + lots)  # the fill
            pf.portfolio_margin(grid, book)  # and the account re-margined
        margin_s.append(clock() - t)

    incremental_s: list[float] = []
    for _ in range(rounds):
        packed = pf.packed_pnl(positions)
        t = clock()
        for index, lots in fills:
            packed += lots * positions[index][0].packed  # the fill, kept per account
            pf.margin_of_packed(grid, packed)
        incremental_s.append(clock() - t)

    t = clock()
    order = pf.liquidation_order(grid, positions)
    liquidation_s = clock() - t
    assert len(order) == len(positions)

    greeks_per_s = len(inputs) / sorted(greeks_s)[rounds // 2]
    margin_per_s = len(fills) / sorted(margin_s)[rounds // 2]
    return {
        "greeks_per_s": round(greeks_per_s),
        "portfolio_margin_per_s": round(margin_per_s),
        "portfolio_margin_incremental_per_s": round(
            len(fills) / sorted(incremental_s)[rounds // 2]
        ),
        "portfolio_positions": len(positions),
        "portfolio_scenarios": len(grid),
        "option_risk_vectors_per_s": round(options_count / vectors_s),
        "liquidation_order_ms": round(liquidation_s * 1e3, 3),
        "greeks_ratio_vs_spot": round(greeks_per_s / spot_entries_per_s, 3),
        "portfolio_margin_ratio_vs_spot": round(margin_per_s / spot_entries_per_s, 3),
    }
