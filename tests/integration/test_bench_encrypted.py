"""`seqnet bench cluster --encrypted` runs end to end on a tiny load and reports the keys
docs/BENCHMARKS.md ("Threshold encryption") relies on. No timing thresholds: the
figures belong to the bench."""

from __future__ import annotations

import json

import pytest

from node.bench.cluster import main


@pytest.mark.integration
def test_encrypted_reports_both_kinds_from_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--nodes", "4", "--encrypted", "--duration", "1", "--light-duration", "0.5"]
    assert main([*args, "--clients", "4", "--json"], prog="seqnet bench cluster") == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("committed_per_s", "committed_per_s_encrypted", "ratio_encrypted_vs_plain"):
        assert result[key] > 0, key
    # Every light-load envelope was opened and executed (committed, with a height).
    assert result["light_committed_encrypted"] == result["light_sent_encrypted"] > 0
    assert result["light_committed_plain_same_rate"] == result["light_sent_plain_same_rate"]
    assert "light_latency_ms_p50_added_encrypted" in result
    # The scheme's limit on this machine, from its curve work measured in the same run.
    assert result["encrypted_extra_ms_per_member"] > 0
    assert 0 < result["ratio_encrypted_bound_vs_plain"] < 1
    assert result["ratio_encrypted_vs_bound"] > 0
