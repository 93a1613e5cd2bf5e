"""`seqnet bench fairness` runs and reports every figure (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from node.bench import fairness
from node.cli import main as cli_main


def test_bench_fairness_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "fairness", "--json", "--count", "2", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ed25519_verify_per_s"] > 0
    for shape in ("n4_t2", "n7_t3"):
        for op in ("encrypt", "envelope_check", "share_create", "share_verify", "combine", "open"):
            assert result[shape][f"{op}_per_s"] > 0
            assert result[shape][f"{op}_vs_ed25519"] > 0
        assert result[shape]["dkg_ms"] > 0
    assert result["groups"]["secp256k1_mul_vs_ed25519"] > 0


def test_bench_fairness_refuses_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        fairness.main(["--count", "0"])
