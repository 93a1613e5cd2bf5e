"""Deterministic fixed-point maths for the options core (docs/MATCHING.md, "Options").

Every real number here is a Python integer `X` standing for `X / 2**FRAC_BITS` (binary
fixed point, "Q100"): products are floored back with a shift, quotients are floored
integer divisions. Only integer operations are used, so the results are the same bits on
every machine, in every run, interpreted or compiled with mypyc. No floats, no Decimal, no
global state (the constants below are computed once at import by the same integer code).

Functions, methods and documented error bounds (ulp = 2**-100), each checked against
mpmath at 60 digits by tests/matching/test_options_fixedpoint.py:

- `exp(x)`, x ≤ 64 (0 below −72): x = k·ln2 + r with |r| ≤ ln2/2 (k·ln2 taken with 24
  guard bits), a Taylor series in |r| of positive terms (exp(−|r|) = 1/exp(|r|)), then a
  shift by k. Error ≤ 16 ulp relative for x > 0, ≤ 16 ulp absolute for x ≤ 0.
- `ln(x)`, x > 0: x = m·2**k with m in [√½, √2), ln m = 2·atanh((m−1)/(m+1)) (positive
  series; |z| ≤ 0.172 so ~20 terms). Error ≤ 32 ulp absolute.
- `sqrt(x)`: `math.isqrt`, the exact floor.
- `normal_cdf(x)` = N(x): for |x| ≤ 3, ½ ± φ(x)·(x + x³/3 + x⁵/15 + …) (positive terms);
  above 3, the upper tail φ(x) / (x + 1/(x + 2/(x + 3/(x + …)))) (Laplace's continued
  fraction, evaluated from the back at a depth 520/x + 4); 0 or 1 beyond 12. The small tail
  is always computed directly (never as 1 − N), so N(x) for x < 0 keeps its relative
  precision down to the resolution. Error ≤ 128 ulp (≈ 1e-28) absolute.

Bounds on inputs are checked (a `ValueError` names the bad value): callers in the engine
range-check what traders send before it gets here.
"""

from __future__ import annotations

import math
from typing import Final

FRAC_BITS: Final = 100
ONE: Final = 1 << FRAC_BITS
HALF: Final = ONE >> 1

_GUARD: Final = 24  # extra bits for the constants, rounded once to FRAC_BITS
EXP_MAX: Final = 64 * ONE  # exp(64) ≈ 6e27: far beyond any price ratio we take
EXP_ZERO: Final = -72 * ONE  # exp(-72) < 2**-100: the result is 0
CDF_CUTOFF: Final = 12 * ONE  # 1 − N(12) ≈ 1.8e-33 < 2**-100
# The series below 3 (above, its error grows as exp(x²/2) ulps), the continued fraction from
# 3, with a depth 520 / x + 4 that falls with x: 177 at 3, 108 at 5, 47 at 12.
CDF_SERIES_MAX: Final = 3 * ONE
CDF_CF_DEPTH: Final = 520


def _atanh_inv(n: int, bits: int) -> int:
    """atanh(1/n) · 2**bits for an integer n ≥ 2 (series of positive terms, floored)."""
    one = 1 << bits
    power = one // n
    total = power
    k = 1
    n2 = n * n
    while power:
        power //= n2
        total += power // (2 * k + 1)
        k += 1
    return total


def _ln2(bits: int) -> int:
    return 2 * _atanh_inv(3, bits)  # ln 2 = 2·atanh(1/3)


def _pi(bits: int) -> int:
    # Machin: π/4 = 4·atan(1/5) − atan(1/239), atan by its alternating series (exact ints).
    def atan_inv(n: int) -> int:
        one = 1 << bits
        power = one // n
        total = power
        k = 1
        n2 = n * n
        sign = -1
        while power:
            power //= n2
            total += sign * (power // (2 * k + 1))
            sign = -sign
            k += 1
        return total

    return 4 * (4 * atan_inv(5) - atan_inv(239))


LN2_GUARDED: Final = _ln2(FRAC_BITS + _GUARD)  # k·ln2 for large k without k ulps of error
LN2: Final = LN2_GUARDED >> _GUARD
SQRT2: Final = math.isqrt(2 << (2 * FRAC_BITS))
# 1/√(2π), for φ(x) = exp(−x²/2) / √(2π)
INV_SQRT_2PI: Final = (
    (1 << (2 * (FRAC_BITS + _GUARD))) // math.isqrt(2 * _pi(2 * (FRAC_BITS + _GUARD)))
) >> _GUARD


def from_int(n: int) -> int:
    return n << FRAC_BITS


def from_ratio(num: int, den: int) -> int:
    """num/den as fixed point, floored (den > 0)."""
    return (num << FRAC_BITS) // den


def mul(a: int, b: int) -> int:
    return (a * b) >> FRAC_BITS


def div(a: int, b: int) -> int:
    return (a << FRAC_BITS) // b


def sqrt(x: int) -> int:
    if x < 0:
        raise ValueError(f"sqrt of a negative number ({x})")
    return math.isqrt(x << FRAC_BITS)


def _exp_small(r: int) -> int:
    """exp(r) for 0 ≤ r ≤ ln2/2, Taylor series: every term positive, so the loop ends
    when a floored term reaches 0 (about 22 terms)."""
    total = ONE + r
    term = r
    n = 2
    while term:
        term = ((term * r) >> FRAC_BITS) // n
        total += term
        n += 1
    return total


def exp(x: int) -> int:
    if x > EXP_MAX:
        raise ValueError(f"exp argument too large ({x / ONE:.3g} > 64)")
    if x < EXP_ZERO:
        return 0
    k = (2 * x + LN2) // (2 * LN2)  # the nearest integer to x / ln2
    r = x - ((k * LN2_GUARDED) >> _GUARD)
    m = _exp_small(r) if r >= 0 else (ONE * ONE) // _exp_small(-r)
    return m << k if k >= 0 else m >> -k


def _atanh_series(z: int) -> int:
    """atanh(z) for 0 ≤ z ≤ 0.172 (positive terms)."""
    z2 = (z * z) >> FRAC_BITS
    total = z
    power = z
    n = 3
    while power:
        power = (power * z2) >> FRAC_BITS
        total += power // n
        n += 2
    return total


def ln(x: int) -> int:
    if x <= 0:
        raise ValueError(f"ln of a non-positive number ({x})")
    k = x.bit_length() - 1 - FRAC_BITS  # x = m · 2**k with m in [1, 2)
    m = x >> k if k >= 0 else x << -k
    if m > SQRT2:  # into [√½, √2): the series converges fastest around 1
        k += 1
        m = x >> k if k >= 0 else x << -k
    if m >= ONE:
        s = _atanh_series(((m - ONE) << FRAC_BITS) // (m + ONE))
    else:
        s = -_atanh_series(((ONE - m) << FRAC_BITS) // (m + ONE))
    return ((k * LN2_GUARDED) >> _GUARD) + 2 * s


def ln_int(n: int) -> int:
    """ln of a positive integer."""
    return ln(n << FRAC_BITS)


def gaussian(x: int) -> int:
    """exp(−x²/2): the standard normal density without its 1/√(2π)."""
    return exp(-((x * x) >> (FRAC_BITS + 1)))


def pdf(x: int) -> int:
    """φ(x), the standard normal density."""
    return (gaussian(x) * INV_SQRT_2PI) >> FRAC_BITS


def _upper_tail(x: int, g: int) -> int:
    """1 − N(x) for x ≥ 0, given g = exp(−x²/2)."""
    if x >= CDF_CUTOFF:
        return 0
    phi = (g * INV_SQRT_2PI) >> FRAC_BITS
    if x <= CDF_SERIES_MAX:
        # N(x) − ½ = φ(x)·(x + x³/3 + x⁵/15 + …): positive terms, no cancellation.
        x2 = (x * x) >> FRAC_BITS
        term = x
        total = x
        n = 3
        while term:
            term = ((term * x2) >> FRAC_BITS) // n
            total += term
            n += 2
        return HALF - ((phi * total) >> FRAC_BITS)
    # Laplace: 1 − N(x) = φ(x) / (x + 1/(x + 2/(x + 3/(x + …)))), evaluated from the back
    # with a depth that falls with x (2**-104 relative or better, checked against mpmath).
    f = x
    k = ((CDF_CF_DEPTH << FRAC_BITS) // x) + 4
    while k > 0:
        f = x + (k << (2 * FRAC_BITS)) // f
        k -= 1
    return (phi << FRAC_BITS) // f


def normal_cdf_with_gaussian(x: int, g: int) -> int:
    """N(x) given g = gaussian(x) (a caller that also needs φ(x) computes it once)."""
    if x >= 0:
        return ONE - _upper_tail(x, g)
    return _upper_tail(-x, g)


def normal_cdf(x: int) -> int:
    """N(x), the standard normal distribution function."""
    return normal_cdf_with_gaussian(x, gaussian(x))


def to_decimal(x: int, scale: int) -> int:
    """x as an integer in units of 1/scale, rounded to nearest (ties away from zero)."""
    q = x * scale
    if q >= 0:
        return (q + HALF) >> FRAC_BITS
    return -((-q + HALF) >> FRAC_BITS)
