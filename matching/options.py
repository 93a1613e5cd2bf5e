"""European options: Black's formula (forward form) and its Greeks in integers, the implied
volatility of a price, and the rule for a series' mark volatility (docs/MATCHING.md,
"Options").

Units (integers everywhere, as the rest of the engine):

| quantity | unit |
|---|---|
| forward `F`, strike `K` | price units (collateral engine units per lot, as perps), 1..2**64−1 |
| volatility `vol_e9` | 10⁻⁹ per √year (0.80 = 800_000_000), 0..10 (1,000 %) |
| time to expiry `t_ms` | milliseconds, 0..10 years; a year is 365 days (ACT/365) |
| interest rate `rate_e9` | 10⁻⁹ per year, continuous, \\|r\\| ≤ 1; discount exp(−r·T) |
| price, vega, theta | price units × 10¹⁸ (`E18`); vega per 1.00 of vol, theta per year |
| delta | ∂V/∂F × 10¹⁸ |
| gamma | F·∂²V/∂F² × 10¹⁸ (delta's change per 100 % move: a 1 % move changes delta by gamma/100) |

The arithmetic is binary fixed point with 100 fractional bits (fixedpoint.py): the same
bits interpreted and compiled, in every run. Outputs are floored to 10⁻¹⁸ of their unit.
Precision, against mpmath at 60 digits (tests/matching/test_options_black.py, a grid of
strikes 0.2–5 × F, vols 0.5–300 %, expiries 1 ms–2 years, calls and puts, r = 5 %): price
and delta within 10⁻⁹ relative wherever the exact value is at least 10⁻⁹ (a price in price
units) — deep out of the money included — and absolutely within 10⁻²⁷·max(F, K) + 2·10⁻¹⁸
(price; times D if a negative rate makes D > 1) and 2·10⁻¹⁸ (delta) everywhere; a value
is never negative;
gamma, vega and theta within 10⁻⁹ relative plus 10⁻²⁷ of their natural scale (1/(σ√T),
F√T and Fσ/(2√T)) plus 2·10⁻¹⁸.

Nothing here holds state: the engine passes the forward (the index), the series' mark vol
and the time to expiry in; callers that price many scenarios of one series reuse the parts
that do not move (`Series`, and `black` with a shifted log-moneyness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from matching import fixedpoint as fx
from matching.fixedpoint import FRAC_BITS, ONE

E18: Final = 10**18
VOL_SCALE: Final = 10**9
RATE_SCALE: Final = 10**9
YEAR_MS: Final = 365 * 86_400_000
MAX_PRICE: Final = (1 << 64) - 1
MAX_VOL_E9: Final = 10 * VOL_SCALE
MAX_T_MS: Final = 10 * YEAR_MS
MAX_RATE_E9: Final = RATE_SCALE
_Q2: Final = 2 * FRAC_BITS


@dataclass(frozen=True, slots=True)
class Greeks:
    """An option's value and sensitivities (units in the module docstring)."""

    price: int
    delta: int
    gamma: int
    vega: int
    theta: int


def check_inputs(forward: int, strike: int, vol_e9: int, t_ms: int, rate_e9: int) -> None:
    """A `ValueError` naming the first input outside its documented range."""
    if not 0 < forward <= MAX_PRICE:
        raise ValueError(f"forward {forward} outside 1..2**64-1")
    if not 0 < strike <= MAX_PRICE:
        raise ValueError(f"strike {strike} outside 1..2**64-1")
    if not 0 <= vol_e9 <= MAX_VOL_E9:
        raise ValueError(f"vol_e9 {vol_e9} outside 0..{MAX_VOL_E9}")
    if not 0 <= t_ms <= MAX_T_MS:
        raise ValueError(f"t_ms {t_ms} outside 0..{MAX_T_MS}")
    if not -MAX_RATE_E9 <= rate_e9 <= MAX_RATE_E9:
        raise ValueError(f"rate_e9 {rate_e9} outside ±{MAX_RATE_E9}")


def sqrt_years(t_ms: int) -> int:
    """√(t_ms / YEAR_MS) in fixed point (floored, exact)."""
    return math.isqrt((t_ms << _Q2) // YEAR_MS)


def discount(rate_e9: int, t_ms: int) -> int:
    """exp(−r·T) in fixed point."""
    if rate_e9 == 0:
        return ONE
    return fx.exp(-((rate_e9 * t_ms) << FRAC_BITS) // (RATE_SCALE * YEAR_MS))


def black(
    is_call: bool,
    forward: int,
    strike: int,
    log_moneyness: int,
    vol_e9: int,
    sqrt_t: int,
    disc: int,
    with_greeks: bool,
) -> Greeks:
    """The core, on prepared parts: `log_moneyness` = ln(F/K), `sqrt_t` = √T and `disc` =
    exp(−rT), all fixed point; inputs already checked. Without `with_greeks` only price and
    delta are filled (gamma, vega and theta are 0)."""
    sv = (vol_e9 * sqrt_t) // VOL_SCALE  # σ√T
    if sv == 0:  # at expiry, or no volatility: the forward is what it is
        if is_call:
            intrinsic = max(forward - strike, 0)
            in_money = ONE if forward > strike else (fx.HALF if forward == strike else 0)
        else:
            intrinsic = max(strike - forward, 0)
            in_money = -ONE if forward < strike else (-fx.HALF if forward == strike else 0)
        return Greeks(
            (intrinsic * disc * E18) >> FRAC_BITS, (in_money * disc * E18) >> _Q2, 0, 0, 0
        )
    d1 = ((log_moneyness + ((sv * sv) >> (FRAC_BITS + 1))) << FRAC_BITS) // sv
    d2 = d1 - sv
    g1 = fx.gaussian(d1)
    g2 = fx.gaussian(d2)
    # N(±d) straight from the tail that is small, so a far out-of-the-money value keeps its
    # relative precision (no 1 − N).
    if is_call:
        n1 = fx.normal_cdf_with_gaussian(d1, g1)
        n2 = fx.normal_cdf_with_gaussian(d2, g2)
        value = forward * n1 - strike * n2  # price units · ONE
        delta = n1
    else:
        n1 = fx.normal_cdf_with_gaussian(-d1, g1)
        n2 = fx.normal_cdf_with_gaussian(-d2, g2)
        value = strike * n2 - forward * n1
        delta = -n1
    if value < 0:  # a far out-of-the-money value within the error bound of 0; never below
        value = 0
    price = (value * disc * E18) >> _Q2
    delta_e18 = (delta * disc * E18) >> _Q2
    if not with_greeks:
        return Greeks(price, delta_e18, 0, 0, 0)
    phi_disc = (((g1 * fx.INV_SQRT_2PI) >> FRAC_BITS) * disc) >> FRAC_BITS  # D·φ(d1)
    gamma = (phi_disc * E18) // sv
    vega = (forward * phi_disc * sqrt_t * E18) >> _Q2
    # −∂V/∂T with F fixed: r·V − D·F·φ(d1)·σ / (2√T)
    decay = (forward * phi_disc * vol_e9 * E18) // (2 * VOL_SCALE * sqrt_t)
    return Greeks(price, delta_e18, gamma, vega, -decay)


def _rate_part(theta: int, price: int, rate_e9: int) -> int:
    return theta + (price * rate_e9) // RATE_SCALE if rate_e9 else theta


def greeks(
    is_call: bool, forward: int, strike: int, vol_e9: int, t_ms: int, rate_e9: int = 0
) -> Greeks:
    """Value, delta, gamma, vega and theta of a European option on the forward."""
    check_inputs(forward, strike, vol_e9, t_ms, rate_e9)
    x = fx.ln_int(forward) - fx.ln_int(strike)
    out = black(
        is_call, forward, strike, x, vol_e9, sqrt_years(t_ms), discount(rate_e9, t_ms), True
    )
    if rate_e9 == 0:
        return out
    return Greeks(
        out.price, out.delta, out.gamma, out.vega, _rate_part(out.theta, out.price, rate_e9)
    )


def price(
    is_call: bool, forward: int, strike: int, vol_e9: int, t_ms: int, rate_e9: int = 0
) -> int:
    """The value alone (price units × 10¹⁸)."""
    check_inputs(forward, strike, vol_e9, t_ms, rate_e9)
    x = fx.ln_int(forward) - fx.ln_int(strike)
    return black(
        is_call, forward, strike, x, vol_e9, sqrt_years(t_ms), discount(rate_e9, t_ms), False
    ).price


IV_MAX_STEPS: Final = 200


def implied_vol(
    is_call: bool, forward: int, strike: int, price_e18: int, t_ms: int, rate_e9: int = 0
) -> int | None:
    """The largest vol_e9 whose value is ≤ price_e18 (value(v) ≤ price < value(v + 1)), or
    None when no vol in 1..MAX_VOL_E9 brackets it: under the value at the smallest vol
    (intrinsic), at or over the value at 1,000 % (the forward/strike bound), or at expiry.
    Newton steps on vega inside a bracket that only shrinks, a bisection every fourth
    step: deterministic and bounded (~10 valuations typically)."""
    check_inputs(forward, strike, 0, t_ms, rate_e9)
    if t_ms == 0:
        return None
    x = fx.ln_int(forward) - fx.ln_int(strike)
    sqrt_t = sqrt_years(t_ms)
    disc = discount(rate_e9, t_ms)

    def value(vol: int) -> Greeks:
        return black(is_call, forward, strike, x, vol, sqrt_t, disc, True)

    lo, hi = 1, MAX_VOL_E9
    at_lo = value(lo)
    if at_lo.price > price_e18 or value(hi).price <= price_e18:
        return None
    point = at_lo
    vol = lo
    for step in range(IV_MAX_STEPS):
        if hi - lo <= 1:
            return lo
        cand = (lo + hi) // 2
        if step % 4 != 3 and point.vega > 0:
            newton = vol + ((price_e18 - point.price) * VOL_SCALE) // point.vega
            if lo < newton < hi:
                cand = newton
            elif newton <= lo:
                cand = lo + 1
            else:
                cand = hi - 1
        point = value(cand)
        vol = cand
        if point.price <= price_e18:
            lo = cand
        else:
            hi = cand
    raise AssertionError("implied_vol did not converge")  # the bracket halves every 4 steps


@dataclass(frozen=True, slots=True)
class MarkVolRule:
    """When a series' book sets its mark volatility (docs/MATCHING.md, "Mark volatility").

    The book's mid counts only with both sides present, at least `min_depth` lots at each
    best price, and a spread (ask − bid) of at most `max_spread_bps` of the mid; its
    implied vol is then clamped to the committee's vol ± `max_deviation_e9`, so a thin or
    spoofed book moves the mark by at most the band. Otherwise the committee's vol."""

    min_depth: int
    max_spread_bps: int
    max_deviation_e9: int


def mark_vol(
    rule: MarkVolRule,
    is_call: bool,
    forward: int,
    strike: int,
    t_ms: int,
    committee_vol_e9: int,
    best_bid: int,
    bid_depth: int,
    best_ask: int,
    ask_depth: int,
    rate_e9: int = 0,
) -> int:
    """The series' mark vol (vol_e9). A side that does not exist has depth 0; prices are in
    price units, as the book's."""
    if not 0 <= committee_vol_e9 <= MAX_VOL_E9:
        raise ValueError(f"committee vol_e9 {committee_vol_e9} outside 0..{MAX_VOL_E9}")
    if bid_depth < rule.min_depth or ask_depth < rule.min_depth or min(bid_depth, ask_depth) <= 0:
        return committee_vol_e9
    if not 0 < best_bid < best_ask:
        return committee_vol_e9
    mid2 = best_bid + best_ask  # twice the mid: no rounding in the spread test
    if (best_ask - best_bid) * 20_000 > rule.max_spread_bps * mid2:
        return committee_vol_e9
    iv = implied_vol(is_call, forward, strike, mid2 * E18 // 2, t_ms, rate_e9)
    if iv is None:
        return committee_vol_e9
    low = max(committee_vol_e9 - rule.max_deviation_e9, 0)
    high = min(committee_vol_e9 + rule.max_deviation_e9, MAX_VOL_E9)
    return min(max(iv, low), high)
