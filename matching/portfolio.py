"""Portfolio margin: the risk-matrix requirement of a whole account (options, perps and spot
holdings of one underlying), the standard per-position requirement, and the order in which
closing positions relieves the worst scenario (docs/MATCHING.md, "Options").

Risk matrix (SPAN / Deribit style): the underlying moves by −X … +X in `price_steps` equal
steps each way, and each series' vol is shifted by −Y, 0 and +Y (floored); every position is
revalued in every scenario, and the worst loss of the whole account is its maintenance
margin, `initial_bps / 10⁴` of it the initial margin. A hedge therefore costs only what it
can still lose together, never more than its legs alone (the worst of a sum is at most the
sum of the worsts; property-tested).

Speed: a series' scenario values depend on the market only (index, its mark vol, time),
not on the account, so they are computed once per market state (`option_risk`,
`linear_risk`) and shared; an account's margin is then a weighted sum of those vectors. The
vectors are packed into one integer each, a field of `FIELD_BITS` per scenario ("SIMD within
a register"): the weighted sum of 50 positions is 50 big-integer multiply-adds, exact, and the
fields are read back once. The packing is exact while every field's sum stays within
±2**(FIELD_BITS − 1), which the bounds on sizes, values and positions guarantee (asserted).

Integers only; no state. Loss values are price units × 10¹⁸ per contract (as options.py);
the margins returned are price (collateral) units, rounded up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from matching import fixedpoint as fx
from matching import options as op
from matching.options import E18

BPS: Final = 10_000
FIELD_BITS: Final = 256
_FIELD_MASK: Final = (1 << FIELD_BITS) - 1
_FIELD_HALF: Final = 1 << (FIELD_BITS - 1)
MAX_VALUE_BITS: Final = 128  # |a scenario value change| per contract, × 10¹⁸
MAX_SIZE: Final = (1 << 63) - 1  # |position| in contracts / lots
MAX_POSITIONS: Final = 4_096  # per portfolio: 2**(128 + 63 + 12) < 2**255
MAX_STEPS: Final = 50

CALL: Final = 0
PUT: Final = 1
LINEAR: Final = 2  # a perp position or spot holding of the underlying, in lots


@dataclass(frozen=True, slots=True)
class RiskParams:
    """The margin rules of one underlying."""

    price_move_bps: int  # X: the largest move of the underlying (1500 = 15 %)
    price_steps: int  # moves at ±X·j/steps, j = 0..steps
    vol_shift_e9: int  # Y: vols shifted by −Y, 0, +Y (absolute, 10⁻⁹ per √year)
    vol_floor_e9: int  # a shifted vol is at least this
    initial_bps: int  # initial margin = maintenance × initial_bps / 10⁴ (≥ 10⁴)
    # standard (per-position) mode
    short_option_bps: int  # α: a short option needs max(α·F − out-of-the-money, β·F)
    short_option_min_bps: int  # β
    linear_bps: int  # a perp / spot position needs this share of its notional

    def __post_init__(self) -> None:
        if not 0 < self.price_move_bps < BPS:
            raise ValueError(f"price_move_bps {self.price_move_bps} outside 1..9999")
        if not 0 < self.price_steps <= MAX_STEPS:
            raise ValueError(f"price_steps {self.price_steps} outside 1..{MAX_STEPS}")
        if not 0 <= self.vol_shift_e9 <= op.MAX_VOL_E9:
            raise ValueError(f"vol_shift_e9 {self.vol_shift_e9} outside 0..{op.MAX_VOL_E9}")
        if not 0 <= self.vol_floor_e9 <= op.MAX_VOL_E9:
            raise ValueError(f"vol_floor_e9 {self.vol_floor_e9} outside 0..{op.MAX_VOL_E9}")
        if not BPS <= self.initial_bps <= 10 * BPS:
            raise ValueError(f"initial_bps {self.initial_bps} outside 10000..100000")
        for name in ("short_option_bps", "short_option_min_bps", "linear_bps"):
            if not 0 <= getattr(self, name) <= BPS:
                raise ValueError(f"{name} {getattr(self, name)} outside 0..10000")


class ScenarioGrid:
    """The scenarios of a RiskParams, in a fixed order: vol shift (−Y, 0, +Y) outer, price
    move (−X … +X) inner. Index `base` is the unmoved one."""

    __slots__ = ("base", "bias", "log_factors", "moves_bps", "params", "vol_shifts_e9")

    def __init__(self, params: RiskParams) -> None:
        steps = params.price_steps
        moves = [params.price_move_bps * j // steps for j in range(-steps, steps + 1)]
        # ln(1 + m) once per move: a scenario's log-moneyness is the series' plus this
        factors = [fx.ln_int(BPS + m) - fx.ln_int(BPS) for m in moves]
        shifts = [-params.vol_shift_e9, 0, params.vol_shift_e9]
        self.params = params
        self.moves_bps: list[int] = [m for _ in shifts for m in moves]
        self.log_factors: list[int] = [f for _ in shifts for f in factors]
        self.vol_shifts_e9: list[int] = [v for v in shifts for _ in moves]
        self.base = len(moves) + steps
        self.bias = pack([_FIELD_HALF] * len(self.moves_bps))

    def __len__(self) -> int:
        return len(self.moves_bps)

    def unpack(self, packed: int) -> list[int]:
        """The fields of a sum of packed vectors, each within ±2**(FIELD_BITS − 1): with
        2**(FIELD_BITS − 1) added to every field, the sum's base-2**FIELD_BITS digits are
        the fields (no borrow crosses a field)."""
        count = len(self.moves_bps)
        biased = packed + self.bias
        assert biased >= 0 and biased.bit_length() <= FIELD_BITS * count, "a field overflowed"
        width = FIELD_BITS // 8
        data = biased.to_bytes(width * count, "little")
        return [
            int.from_bytes(data[i * width : (i + 1) * width], "little") - _FIELD_HALF
            for i in range(count)
        ]


def pack(values: Sequence[int]) -> int:
    """Signed values as fields of FIELD_BITS, the first lowest."""
    packed = 0
    for i, v in enumerate(values):
        packed += v << (FIELD_BITS * i)
    return packed


class RiskVector:
    """One instrument's value changes per contract in every scenario of a grid, at one
    market state (price units × 10¹⁸), and what the standard mode needs of it."""

    __slots__ = ("key", "kind", "mark", "packed", "standard_short", "standard_long", "values")

    def __init__(
        self, key: int, kind: int, values: list[int], mark: int, short: int, long: int
    ) -> None:
        for v in values:
            assert abs(v) < 1 << MAX_VALUE_BITS, "scenario value out of range"
        self.key = key
        self.kind = kind
        self.values = values
        self.packed = pack(values)
        self.mark = mark  # value per contract now (× 10¹⁸); 0 for a linear instrument
        self.standard_short = short  # standard maintenance per contract held short (× 10¹⁸)
        self.standard_long = long  # … per contract held long


def option_risk(
    grid: ScenarioGrid,
    key: int,
    is_call: bool,
    strike: int,
    forward: int,
    vol_e9: int,
    t_ms: int,
    rate_e9: int = 0,
) -> RiskVector:
    """A series' risk vector: its value in each scenario less its value now, per contract."""
    op.check_inputs(forward, strike, vol_e9, t_ms, rate_e9)
    params = grid.params
    x = fx.ln_int(forward) - fx.ln_int(strike)
    sqrt_t = op.sqrt_years(t_ms)
    disc = op.discount(rate_e9, t_ms)
    mark = op.black(is_call, forward, strike, x, vol_e9, sqrt_t, disc, False).price
    values: list[int] = []
    scaled_strike = strike * BPS  # a moved forward F·(10⁴ + m)/10⁴ stays exact this way
    for move, factor, shift in zip(
        grid.moves_bps, grid.log_factors, grid.vol_shifts_e9, strict=True
    ):
        vol = min(max(vol_e9 + shift, params.vol_floor_e9), op.MAX_VOL_E9)
        moved = op.black(
            is_call, forward * (BPS + move), scaled_strike, x + factor, vol, sqrt_t, disc, False
        ).price
        values.append(moved // BPS - mark)
    otm = max(strike - forward, 0) if is_call else max(forward - strike, 0)
    short = max(
        params.short_option_bps * forward - otm * BPS, params.short_option_min_bps * forward
    )
    kind = CALL if is_call else PUT
    return RiskVector(key, kind, values, mark, short * E18 // BPS, 0)


def linear_risk(grid: ScenarioGrid, key: int, forward: int) -> RiskVector:
    """A perp position or spot holding of the underlying, per lot (value moves with F)."""
    if not 0 < forward <= op.MAX_PRICE:
        raise ValueError(f"forward {forward} outside 1..2**64-1")
    values = [forward * move * (E18 // BPS) for move in grid.moves_bps]
    standard = forward * grid.params.linear_bps * (E18 // BPS)
    return RiskVector(key, LINEAR, values, 0, standard, standard)


@dataclass(frozen=True, slots=True)
class Margin:
    maintenance: int  # price (collateral) units, rounded up
    initial: int
    worst_scenario: int  # the grid index of the worst loss (−1 in standard mode)


Position = tuple[RiskVector, int]  # (instrument at the current state, signed size)


def _check(positions: Sequence[Position]) -> None:
    if len(positions) > MAX_POSITIONS:
        raise ValueError(f"{len(positions)} positions, over {MAX_POSITIONS}")
    for _, size in positions:
        if not -MAX_SIZE <= size <= MAX_SIZE:
            raise ValueError(f"position size {size} outside ±(2**63 - 1)")


def _ceil_units(amount_e18: int) -> int:
    return -(-amount_e18 // E18)


def _margin(params: RiskParams, loss_e18: int, worst: int) -> Margin:
    maintenance = _ceil_units(max(loss_e18, 0))
    return Margin(maintenance, -(-maintenance * params.initial_bps // BPS), worst)


def packed_pnl(positions: Sequence[Position]) -> int:
    """Σ size × packed vector: the account's scenario P&L, packed. A caller may keep it per
    account and add `size_change * vector.packed` on each fill (re-margining is then one
    `margin_of_packed`); a total that no longer fits its fields fails an assertion."""
    _check(positions)
    total = 0
    for vector, size in positions:
        total += size * vector.packed
    return total


def scenario_pnl(grid: ScenarioGrid, positions: Sequence[Position]) -> list[int]:
    """The account's value change in each scenario of the grid (× 10¹⁸)."""
    return grid.unpack(packed_pnl(positions))


def _worst(pnl: list[int]) -> tuple[int, int]:
    worst = 0
    loss = -pnl[0]
    for i in range(1, len(pnl)):
        if -pnl[i] > loss:
            loss = -pnl[i]
            worst = i
    return loss, worst


def margin_of_packed(grid: ScenarioGrid, packed: int) -> Margin:
    """Risk-matrix margin from an account's packed P&L (`packed_pnl`)."""
    loss, worst = _worst(grid.unpack(packed))
    return _margin(grid.params, loss, worst)


def portfolio_margin(grid: ScenarioGrid, positions: Sequence[Position]) -> Margin:
    """Risk-matrix margin of a whole account: its worst scenario loss."""
    if not positions:
        return Margin(0, 0, grid.base)
    return margin_of_packed(grid, packed_pnl(positions))


def standard_margin(params: RiskParams, positions: Sequence[Position]) -> Margin:
    """Per-position margin: a short option max(α·F − out-of-the-money amount, β·F) per
    contract, a long option nothing (it is paid for), a linear position `linear_bps` of its
    notional. Beyond the positions' mark values, which equity already counts."""
    _check(positions)
    total = 0
    for vector, size in positions:
        total += -size * vector.standard_short if size < 0 else size * vector.standard_long
    return _margin(params, total, -1)


@dataclass(frozen=True, slots=True)
class Relief:
    index: int  # the position's index in the portfolio given
    key: int
    margin_after: int  # maintenance with this position closed (price units)
    relief: int  # maintenance now − margin_after (may be ≤ 0: closing a hedge hurts)


def liquidation_order(grid: ScenarioGrid, positions: Sequence[Position]) -> list[Relief]:
    """Which position to close first: every position, by how much closing it whole lowers
    the risk-matrix maintenance (most first; ties by instrument key, then index). Positions
    whose closing does not lower it come last, in the same order."""
    total = packed_pnl(positions)
    now = _margin(grid.params, _worst(grid.unpack(total))[0], 0).maintenance
    out = []
    for i, (vector, size) in enumerate(positions):
        after = _margin(grid.params, _worst(grid.unpack(total - size * vector.packed))[0], 0)
        out.append(Relief(i, vector.key, after.maintenance, now - after.maintenance))
    out.sort(key=lambda r: (-r.relief, r.key, r.index))
    return out
