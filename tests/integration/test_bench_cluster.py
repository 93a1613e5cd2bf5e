"""`seqnet bench cluster --crash` runs end to end on a tiny load and reports the keys
docs/BENCHMARKS.md relies on. No timing thresholds: the figures belong to the bench."""

from __future__ import annotations

import json

import pytest

from node.bench.cluster import main

PROG = "seqnet bench cluster"


@pytest.mark.integration
def test_crash_reports_both_phases(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--nodes", "4", "--crash", "1", "--duration", "1", "--light-duration", "0.5"]
    assert main([*args, "--settle", "0", "--clients", "4", "--json"], prog=PROG) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["crashed"] == ["node3"]  # the last member; the clients use the others
    for key in ("committed_per_s", "committed_per_s_one_down", "light_latency_ms_p50"):
        assert result[key] > 0, key
    for key in ("ratio_one_down", "light_latency_ms_p50_one_down"):
        assert result[key] > 0, key
    assert result["light_latency_p50_ratio_one_down"] > 0
    # Three members are a quorum: every light-load intent commits with one down.
    assert result["light_committed_one_down"] == result["light_sent_one_down"] > 0


@pytest.mark.parametrize("nodes", [1, 3])
def test_crash_beyond_f_is_refused(nodes: int) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--nodes", str(nodes), "--crash", "1"], prog=PROG)
    assert exit_.value.code == 2
