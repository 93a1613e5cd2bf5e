"""matching/fixedpoint.py against mpmath at 60 digits: the documented error bounds hold
over seeded grids and hypothesis-chosen points, and bad input gets a clear error."""

from __future__ import annotations

import random

import mpmath as mp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import fixedpoint as fx

ONE = fx.ONE
mp.mp.dps = 60


def real(q: int) -> mp.mpf:
    return mp.mpf(q) / ONE


def ulps(got: int, exact: mp.mpf) -> mp.mpf:
    return abs(real(got) - exact) * ONE


def fixed(x: float) -> int:
    return int(mp.floor(mp.mpf(x) * ONE))


def test_constants() -> None:
    assert ulps(fx.LN2, mp.log(2)) < 1
    assert ulps(fx.INV_SQRT_2PI, 1 / mp.sqrt(2 * mp.pi)) < 1
    assert ulps(fx.SQRT2, mp.sqrt(2)) < 1


@given(st.integers(min_value=-80 * ONE, max_value=64 * ONE))
@settings(max_examples=400)
def test_exp(x: int) -> None:
    exact = mp.exp(real(x))
    error = ulps(fx.exp(x), exact)
    if x > 0:
        assert error <= 16 * exact
    else:
        assert error <= 16


@given(st.integers(min_value=1, max_value=1 << (fx.FRAC_BITS + 90)))
@settings(max_examples=400)
def test_ln(x: int) -> None:
    assert ulps(fx.ln(x), mp.log(real(x))) <= 32


@given(st.integers(min_value=0, max_value=1 << 300))
def test_sqrt_is_the_exact_floor(x: int) -> None:
    root = fx.sqrt(x)
    assert root * root <= x << fx.FRAC_BITS < (root + 1) * (root + 1)


@given(st.integers(min_value=-14 * ONE, max_value=14 * ONE))
@settings(max_examples=400)
def test_normal_cdf(x: int) -> None:
    assert ulps(fx.normal_cdf(x), mp.ncdf(real(x))) <= 128


def test_normal_cdf_seeded_grid_and_branch_edges() -> None:
    rng = random.Random(7)
    points = [rng.uniform(-13, 13) for _ in range(1500)]
    points += [s * e for e in (2.999, 3.0, 3.001, 11.999, 12.0, 12.001) for s in (-1, 1)]
    for p in points:
        x = fixed(p)
        got = fx.normal_cdf(x)
        exact = mp.ncdf(real(x))
        assert ulps(got, exact) <= 128, p
        assert 0 <= got <= ONE
        # the small tail keeps its relative precision down to the resolution
        if x < 0 and exact > mp.mpf(10) ** -20:
            assert abs(real(got) / exact - 1) < mp.mpf(10) ** -8, p


def test_normal_cdf_is_monotone_and_symmetric() -> None:
    xs = [fixed(i / 64) for i in range(-64 * 13, 64 * 13)]
    values = [fx.normal_cdf(x) for x in xs]
    assert values == sorted(values)
    for x in xs[::17]:
        assert abs(fx.normal_cdf(x) + fx.normal_cdf(-x) - ONE) <= 256


def test_pdf() -> None:
    for p in (-9.0, -1.5, 0.0, 0.3, 4.0):
        x = fixed(p)
        assert ulps(fx.pdf(x), mp.npdf(real(x))) <= 16


def test_to_decimal_rounds_to_nearest() -> None:
    assert fx.to_decimal(ONE // 3, 10**6) == 333_333
    assert fx.to_decimal(2 * ONE // 3, 10**6) == 666_667
    assert fx.to_decimal(-(2 * ONE // 3), 10**6) == -666_667


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fx.ln(0), "ln of a non-positive"),
        (lambda: fx.ln(-5), "ln of a non-positive"),
        (lambda: fx.exp(65 * ONE), "exp argument too large"),
        (lambda: fx.sqrt(-1), "sqrt of a negative"),
    ],
)
def test_bad_input_is_a_clear_error(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
