"""node/bench/options.py reports every options key of `seqnet bench matching` (no timing
threshold here: the figures are recorded in docs/BENCHMARKS.md)."""

from __future__ import annotations

from node.bench import options as bench


def test_options_figures() -> None:
    out = bench.figures(spot_entries_per_s=1_000.0, rounds=1)
    assert out["portfolio_positions"] == 50
    assert out["portfolio_scenarios"] == 39
    for key in (
        "greeks_per_s",
        "portfolio_margin_per_s",
        "portfolio_margin_incremental_per_s",
        "option_risk_vectors_per_s",
        "option_places_per_s",
        "perp_places_per_s",
        "option_block_end_ms",
    ):
        assert out[key] > 0, key
    assert out["liquidation_order_ms"] > 0
    assert out["greeks_ratio_vs_spot"] == round(out["greeks_per_s"] / 1_000.0, 3)
