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
- engine: option orders through the engine (matching/optionmarkets.py: post-trade
  portfolio margin of the whole account, matching, premium settlement) against perp orders
  of the same shape in the same engine (the localnet genesis: BTC-PERP and its 12-series
  option chain), and the cost of a block's end whose index moved (every series' mark vol,
  mark and risk vector).

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
from matching.config import Genesis
from matching.engine import Engine

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
        **engine_figures(seed),
        "greeks_ratio_vs_spot": round(greeks_per_s / spot_entries_per_s, 3),
        "portfolio_margin_ratio_vs_spot": round(margin_per_s / spot_entries_per_s, 3),
    }


def _engine() -> tuple[Engine, list[bytes], int]:
    """The localnet exchange (BTC-PERP, 12 option series), 4 funded traders, a fresh index;
    returns the engine, the traders and the block time."""
    from node.genesis import INSURANCE_ACCOUNT, default_exchange, option_chain, perp_market

    t0 = 1_765_000_000_000
    traders = [bytes([0x10 + i]) * 20 for i in range(4)]
    members = (bytes([0xD0]) * 20,)
    base = default_exchange(bytes([0xFE]) * 20).to_dict()
    base["markets"] += [perp_market().to_plain(), *(m.to_plain() for m in option_chain(t0))]
    base["insurance_account"] = "0x" + INSURANCE_ACCOUNT.hex()
    base["oracle_members"] = ["0x" + m.hex() for m in members]
    base["oracle_quorum"] = 1
    base["option_rules"] = {}
    engine = Engine(Genesis.from_dict(base))
    deposits = [
        {"action": {"type": "deposit", "deposit_id": i + 1, "account": t, "asset": 1,
                    "amount": 10**15}}
        for i, t in enumerate(traders)
    ]  # fmt: skip
    engine.apply_block(t0, deposits)
    oracle = {"type": "oracle", "member": members[0], "prices": [[2, 970_000]]}
    engine.apply_block(t0 + 100, [{"action": oracle}])
    return engine, traders, t0 + 200


def _places(engine: Engine, traders: list[bytes], ts: int, market: int, rng: random.Random,
            mid: int, tick: int, lot: int, count: int) -> list[dict[str, object]]:  # fmt: skip
    """Resting orders around `mid`, a fifth of them crossing."""
    out: list[dict[str, object]] = []
    for i in range(count):
        side = "buy" if i % 2 else "sell"
        offset = rng.randrange(-2, 10) * tick
        price = mid - offset if side == "buy" else mid + offset
        trader = traders[i % len(traders)]
        action = {"type": "place", "market": market, "side": side, "kind": "limit",
                  "price": price, "size": lot * rng.randrange(1, 4), "tif": "gtc",
                  "reduce_only": False, "cloid": None, "expires_ms": None}  # fmt: skip
        out.append({"account": trader, "signer": trader, "nonce": ts + i, "action": action})
    return out


def engine_figures(seed: int = 1, count: int = 2_000) -> dict[str, float]:
    """Option and perp places per second through the engine (one block of `count` each,
    CPU time), and a block's end with a moved index, in ms."""
    clock = time.thread_time
    rng = random.Random(seed)
    engine, traders, ts = _engine()
    options = engine.options
    assert options is not None
    series = options.series[4]  # the first expiry's at-the-money call
    mid = series.mark // series.book.tick * series.book.tick
    entries = _places(engine, traders, ts, 4, rng, mid, series.book.tick, 1, count)
    t = clock()
    engine.apply_block(ts, entries)
    option_s = clock() - t
    engine, traders, ts = _engine()
    perp = engine.books[2]
    entries = _places(engine, traders, ts, 2, rng, 9_700_000, perp.tick, perp.lot, count)
    t = clock()
    engine.apply_block(ts, entries)
    perp_s = clock() - t
    members = sorted(options.vols.members)
    ends: list[float] = []
    for i in range(5):
        oracle = {"type": "oracle", "member": members[0], "prices": [[2, 970_000 + 10 * i]]}
        t = clock()
        engine.apply_block(ts + 1_000 * (i + 1), [{"action": oracle}])
        ends.append(clock() - t)
    return {
        "option_places_per_s": round(count / option_s),
        "perp_places_per_s": round(count / perp_s),
        "option_block_end_ms": round(sorted(ends)[2] * 1e3, 3),
    }
