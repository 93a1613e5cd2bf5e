"""matching/options.py: Black's formula and its Greeks against mpmath, put-call parity,
monotonicity and signs of the Greeks, implied vol and the mark-vol rule."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import mpmath as mp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import options as op
from matching.options import E18, YEAR_MS

mp.mp.dps = 60
DAY_MS = 86_400_000
F = 60_000_000_000  # a forward of 60,000 with 6 decimals


def reference(
    is_call: bool, forward: int, strike: int, vol_e9: int, t_ms: int, rate_e9: int
) -> tuple[list[mp.mpf], list[mp.mpf]]:
    """Price, delta, gamma (F·Γ), vega, theta at 60 digits, and each one's natural scale."""
    f, k = mp.mpf(forward), mp.mpf(strike)
    sigma = mp.mpf(vol_e9) / 10**9
    t = mp.mpf(t_ms) / YEAR_MS
    r = mp.mpf(rate_e9) / 10**9
    disc = mp.exp(-r * t)
    sv = sigma * mp.sqrt(t)
    d1 = (mp.log(f / k) + sv * sv / 2) / sv
    d2 = d1 - sv
    if is_call:
        value = disc * (f * mp.ncdf(d1) - k * mp.ncdf(d2))
        delta = disc * mp.ncdf(d1)
    else:
        value = disc * (k * mp.ncdf(-d2) - f * mp.ncdf(-d1))
        delta = -disc * mp.ncdf(-d1)
    phi = mp.npdf(d1)
    gamma = disc * phi / sv
    vega = disc * f * phi * mp.sqrt(t)
    theta = r * value - disc * f * phi * sigma / (2 * mp.sqrt(t))
    scales = [max(f, k), mp.mpf(1), 1 / sv, f * mp.sqrt(t), f * sigma / (2 * mp.sqrt(t))]
    return [value, delta, gamma, vega, theta], scales


def check(is_call: bool, forward: int, strike: int, vol_e9: int, t_ms: int, rate_e9: int) -> None:
    g = op.greeks(is_call, forward, strike, vol_e9, t_ms, rate_e9)
    got = [g.price, g.delta, g.gamma, g.vega, g.theta]
    exact, scales = reference(is_call, forward, strike, vol_e9, t_ms, rate_e9)
    case = (is_call, forward, strike, vol_e9, t_ms, rate_e9)
    for i, name in enumerate(["price", "delta", "gamma", "vega", "theta"]):
        e = exact[i] * E18
        error = abs(got[i] - e)
        if i < 2:  # the documented contract on price and delta
            if abs(e) >= 10**9:
                assert error <= abs(e) * mp.mpf(10) ** -9, (name, case, got[i], e)
            floor = scales[i] * E18 * mp.mpf(10) ** -27 if i == 0 else 0
            assert error <= floor + 2, (name, case, got[i], e)
        else:
            bound = abs(e) * mp.mpf(10) ** -9 + scales[i] * E18 * mp.mpf(10) ** -27 + 2
            assert error <= bound, (name, case, got[i], e)


STRIKES = [0.2, 0.5, 0.8, 0.95, 0.999, 1.0, 1.001, 1.05, 1.3, 2.0, 5.0]
VOLS = [5_000_000, 200_000_000, 800_000_000, 3_000_000_000]
EXPIRIES = [1, 60_000, 3_600_000, DAY_MS, 30 * DAY_MS, 2 * YEAR_MS]


@pytest.mark.parametrize("rate_e9", [0, 50_000_000])
def test_grid_against_mpmath(rate_e9: int) -> None:
    """Deep in and out of the money, 1 ms to 2 years, 0.5 % to 300 % vol."""
    for is_call, ratio, vol, t in itertools.product([True, False], STRIKES, VOLS, EXPIRIES):
        check(is_call, F, round(F * ratio), vol, t, rate_e9)


@given(
    st.booleans(),
    st.integers(min_value=1_000, max_value=10**15),
    st.floats(min_value=-3, max_value=3),
    st.integers(min_value=1_000_000, max_value=op.MAX_VOL_E9),
    st.integers(min_value=1, max_value=op.MAX_T_MS),
    st.integers(min_value=-op.MAX_RATE_E9 // 10, max_value=op.MAX_RATE_E9 // 10),
)
@settings(max_examples=150, deadline=None)
def test_random_points_against_mpmath(
    is_call: bool, forward: int, log_ratio: float, vol: int, t: int, rate: int
) -> None:
    strike = max(1, min(op.MAX_PRICE, round(forward * float(mp.exp(log_ratio)))))
    check(is_call, forward, strike, vol, t, rate)


OPTION = st.tuples(
    st.integers(min_value=1, max_value=op.MAX_PRICE),
    st.integers(min_value=1, max_value=op.MAX_PRICE),
    st.integers(min_value=0, max_value=op.MAX_VOL_E9),
    st.integers(min_value=0, max_value=op.MAX_T_MS),
    st.integers(min_value=-op.MAX_RATE_E9, max_value=op.MAX_RATE_E9),
)


@given(OPTION)
@settings(max_examples=300, deadline=None)
def test_put_call_parity(option: tuple[int, int, int, int, int]) -> None:
    """C − P = D·(F − K) to the output resolution: both are floored to 10⁻¹⁸ and share
    every intermediate, the rest is within the 10⁻²⁷·max(F, K) core error (times D when a
    negative rate makes it > 1; a hair-negative value is clamped to 0 on one side only)."""
    forward, strike, vol, t, rate = option
    call = op.greeks(True, forward, strike, vol, t, rate)
    put = op.greeks(False, forward, strike, vol, t, rate)
    disc = mp.exp(-mp.mpf(rate) / 10**9 * t / YEAR_MS)
    bound = (3 + max(forward, strike) * E18 * mp.mpf(10) ** -27) * max(1, disc)
    assert abs(call.price - put.price - disc * (forward - strike) * E18) <= bound
    assert abs(call.delta - put.delta - disc * E18) <= 3
    assert call.gamma == put.gamma and call.vega == put.vega


@given(OPTION, st.booleans())
@settings(max_examples=300, deadline=None)
def test_greeks_signs_and_bounds(option: tuple[int, int, int, int, int], is_call: bool) -> None:
    forward, strike, vol, t, rate = option
    g = op.greeks(is_call, forward, strike, vol, t, rate)
    disc_e18 = mp.exp(-mp.mpf(rate) / 10**9 * t / YEAR_MS) * E18
    assert g.price >= 0 and g.gamma >= 0 and g.vega >= 0
    if is_call:
        assert 0 <= g.delta <= disc_e18 + 1
        assert g.price <= forward * disc_e18 + 1
    else:
        assert -disc_e18 - 1 <= g.delta <= 0
        assert g.price <= strike * disc_e18 + 1
    if rate == 0:
        assert g.theta <= 0  # with no interest, time only takes value away


def test_never_negative_far_out_of_the_money() -> None:
    """A case whose two terms cancel to a hair under 0 before the clamp."""
    g = op.greeks(True, 15752073973400763118, op.MAX_PRICE, op.MAX_VOL_E9, 60_000)
    assert g.price == 0 and g.delta == 0 and g.vega > 0


def test_monotone_in_strike_vol_forward_and_time() -> None:
    strikes = [F * k // 100 for k in range(40, 260, 7)]
    for t in (3_600_000, 30 * DAY_MS):
        calls = [op.price(True, F, k, 800_000_000, t) for k in strikes]
        puts = [op.price(False, F, k, 800_000_000, t) for k in strikes]
        assert calls == sorted(calls, reverse=True)
        assert puts == sorted(puts)
        deltas = [op.greeks(True, F, k, 800_000_000, t).delta for k in strikes]
        assert deltas == sorted(deltas, reverse=True)  # also: delta rises with the forward
    vols = range(10_000_000, 3_000_000_000, 90_000_000)
    by_vol = [op.price(True, F, F * 11 // 10, v, 30 * DAY_MS) for v in vols]
    assert by_vol == sorted(by_vol) and len(set(by_vol)) == len(by_vol)
    by_time = [op.price(False, F, F * 9 // 10, 800_000_000, d * DAY_MS) for d in range(0, 400, 9)]
    assert by_time == sorted(by_time)


def test_at_expiry_and_zero_vol_is_intrinsic() -> None:
    assert op.greeks(True, F, F - 5, 800_000_000, 0) == op.Greeks(5 * E18, E18, 0, 0, 0)
    assert op.greeks(False, F, F - 5, 800_000_000, 0) == op.Greeks(0, 0, 0, 0, 0)
    assert op.greeks(True, F, F, 0, DAY_MS).delta == E18 // 2
    assert op.greeks(False, F + 7, F, 0, DAY_MS) == op.Greeks(0, 0, 0, 0, 0)


def test_same_bits_every_run() -> None:
    """A pinned value: any change to the arithmetic shows here (and in the compiled-build
    digest, tests/matching/test_options_compiled.py)."""
    g = op.greeks(True, F, F, 800_000_000, 30 * DAY_MS)
    assert g == op.greeks(True, F, F, 800_000_000, 30 * DAY_MS)
    assert g.price == 5477904469107776127628548043
    assert g.delta == 545649203909231467


@given(
    st.booleans(),
    st.integers(min_value=10**6, max_value=10**14),
    st.floats(min_value=-1.5, max_value=1.5),
    st.integers(min_value=10_000_000, max_value=5_000_000_000),
    st.integers(min_value=60_000, max_value=3 * YEAR_MS),
)
@settings(max_examples=40, deadline=None)
def test_implied_vol_inverts_price(
    is_call: bool, forward: int, log_ratio: float, vol: int, t: int
) -> None:
    strike = max(1, round(forward * float(mp.exp(log_ratio))))
    target = op.price(is_call, forward, strike, vol, t)
    iv = op.implied_vol(is_call, forward, strike, target, t)
    if iv is None:  # only where the price cannot tell vols apart (flat at the resolution)
        assert op.price(is_call, forward, strike, 1, t) == target
        return
    # The bracket's end: value(iv) ≤ price < value(iv + 1) ...
    assert op.price(is_call, forward, strike, iv, t) <= target
    assert iv == op.MAX_VOL_E9 or op.price(is_call, forward, strike, iv + 1, t) > target
    # ... so iv is the vol to within the price's own precision over vega (plus one unit).
    noise = max(forward, strike) * E18 // 10**27 + 2
    vega = op.greeks(is_call, forward, strike, vol, t).vega
    assert abs(iv - vol) * vega <= 2 * noise * op.VOL_SCALE + vega or vega < noise


def test_implied_vol_outside_the_bounds() -> None:
    t = 30 * DAY_MS
    intrinsic = (F - F * 9 // 10) * E18
    assert op.implied_vol(True, F, F * 9 // 10, intrinsic - 1, t) is None
    at_intrinsic = op.implied_vol(True, F, F * 9 // 10, intrinsic, t)
    assert at_intrinsic is not None and at_intrinsic < 50_000_000  # no time value to speak of
    assert op.implied_vol(True, F, F, F * E18, t) is None
    assert op.implied_vol(True, F, F, 1000 * E18, 0) is None


RULE = op.MarkVolRule(min_depth=10, max_spread_bps=500, max_deviation_e9=200_000_000)


def test_mark_vol_rule() -> None:
    t = 30 * DAY_MS
    k = F * 11 // 10
    fair = op.price(True, F, k, 700_000_000, t) // E18
    committee = 650_000_000

    def mark(bid: int, bid_depth: int, ask: int, ask_depth: int) -> int:
        return op.mark_vol(RULE, True, F, k, t, committee, bid, bid_depth, ask, ask_depth)

    from_book = mark(fair - 10_000, 10, fair + 10_000, 12)
    assert abs(from_book - 700_000_000) < 1_000_000  # the book's mid sets it
    assert mark(fair - 10_000, 9, fair + 10_000, 12) == committee  # too thin
    assert mark(fair - 10_000, 10, 0, 0) == committee  # one side only
    assert mark(fair // 2, 10, fair * 2, 10) == committee  # too wide
    rich = op.price(True, F, k, 1_500_000_000, t) // E18
    assert mark(rich - 1, 50, rich + 1, 50) == committee + 200_000_000  # clamped to the band
    assert mark(1, 50, 2, 50) == committee  # under intrinsic: no implied vol


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: op.greeks(True, 0, F, 1, 1), "forward 0"),
        (lambda: op.greeks(True, F, 1 << 64, 1, 1), "strike"),
        (lambda: op.greeks(True, F, F, -1, 1), "vol_e9 -1"),
        (lambda: op.greeks(True, F, F, op.MAX_VOL_E9 + 1, 1), "vol_e9"),
        (lambda: op.price(False, F, F, 1, -1), "t_ms -1"),
        (lambda: op.price(False, F, F, 1, op.MAX_T_MS + 1), "t_ms"),
        (lambda: op.price(False, F, F, 1, 1, 2 * op.MAX_RATE_E9), "rate_e9"),
        (lambda: op.mark_vol(RULE, True, F, F, 1, -1, 1, 1, 2, 1), "committee vol_e9"),
    ],
)
def test_bad_input_is_a_clear_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
