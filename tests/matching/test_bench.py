"""`seqnet bench matching` runs end to end on a tiny stream and reports every key."""

from __future__ import annotations

import json

import pytest

from node.bench import matching as bench


def test_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--entries", "3000", "--accounts", "60", "--seed", "3", "--json"]
    assert bench.main(args, prog="seqnet bench matching") == 0
    out = json.loads(capsys.readouterr().out)
    keys = ["entries_per_s", "burst_entries_per_s", "limit_only_entries_per_s"]
    keys += ["peer_entries_per_s", "ratio_vs_peer", "block_ms_p99", "burst_block_ms_p99"]
    keys += ["perp_entries_per_s", "perp_ratio_vs_spot", "liquidation_cascade_ms"]
    for key in keys:
        assert out[key] > 0, key
    assert out["compiled"] in (True, False)
    assert out["cascade_liquidated"] == out["cascade_accounts"] == 60
