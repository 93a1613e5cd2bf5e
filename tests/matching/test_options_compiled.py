"""The options core gives the same bits in every run and in both builds.

`options_digest` hashes the outputs of fixedpoint.py, options.py and portfolio.py over a
seeded set of inputs; GOLDEN_OPTIONS is that digest as first computed (interpreted). When
`./dev setup` has compiled matching/ with mypyc, the same sources also run interpreted in a
subprocess and must give the same digest (as tests/matching/test_compiled.py does for the
engine).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import matching
from matching import fixedpoint as fx
from matching import options as op
from matching import portfolio as pf
from tests.matching.interpreted import interpreted_output

GOLDEN_OPTIONS = "abaff104f58563c272be32ddbba3c1016ca30230899f0877bc894a41a8949ea5"


def options_digest(points: int = 300) -> str:
    rng = random.Random(20261205)
    digest = hashlib.sha256()

    def put(*values: object) -> None:
        digest.update(repr(values).encode())

    for _ in range(points):
        x = rng.randrange(-80 * fx.ONE, 40 * fx.ONE)
        put(fx.exp(x), fx.ln(abs(x) + 1), fx.normal_cdf(x // 4), fx.sqrt(abs(x)))
        forward = rng.randrange(1, 1 << 64)
        strike = max(1, min((1 << 64) - 1, forward * rng.randrange(20, 500) // 100))
        vol = rng.randrange(0, op.MAX_VOL_E9)
        t = rng.choice([0, 1, rng.randrange(1, op.MAX_T_MS)])
        rate = rng.randrange(-op.MAX_RATE_E9, op.MAX_RATE_E9)
        g = op.greeks(rng.random() < 0.5, forward, strike, vol, t, rate)
        put(g.price, g.delta, g.gamma, g.vega, g.theta)
    forward = 60_000_000_000
    for _ in range(20):
        strike = forward * rng.randrange(50, 200) // 100
        t = rng.randrange(60_000, 400 * 86_400_000)
        price = op.price(True, forward, strike, rng.randrange(10**8, 3 * 10**9), t)
        put(op.implied_vol(True, forward, strike, price + rng.randrange(-(10**20), 10**20), t))
    params = pf.RiskParams(1_500, 4, 150_000_000, 50_000_000, 13_000, 1_500, 1_000, 500)
    grid = pf.ScenarioGrid(params)
    vectors = [pf.linear_risk(grid, 0, forward)]
    for key in range(1, 16):
        strike = forward * rng.randrange(60, 150) // 100
        vol = rng.randrange(2 * 10**8, 2 * 10**9)
        t = rng.randrange(1, 200 * 86_400_000)
        vectors.append(pf.option_risk(grid, key, key % 2 == 0, strike, forward, vol, t))
    for v in vectors:
        put(v.values, v.mark, v.standard_short)
    for _ in range(30):
        positions = [(rng.choice(vectors), rng.randrange(-1000, 1000)) for _ in range(8)]
        put(pf.portfolio_margin(grid, positions), pf.standard_margin(params, positions))
        put(pf.liquidation_order(grid, positions))
    return digest.hexdigest()


def test_options_are_the_pinned_ones() -> None:
    assert options_digest() == GOLDEN_OPTIONS


def test_same_digest_twice() -> None:
    assert options_digest(40) == options_digest(40)


def test_compiled_and_interpreted_agree(tmp_path: Path) -> None:
    if matching.compiled():
        assert not op.__file__.endswith(".py"), "options.py is not in the compiled build"
    out = interpreted_output(
        tmp_path,
        "from matching import options; assert options.__file__.endswith('.py'); "
        "from tests.matching.test_options_compiled import options_digest; "
        "print(options_digest())",
    )
    assert out == [options_digest()] == [GOLDEN_OPTIONS]
