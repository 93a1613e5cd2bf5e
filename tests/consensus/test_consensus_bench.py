"""`seqnet bench consensus` runs and reports the keys docs/BENCHMARKS.md relies on."""

from __future__ import annotations

import json

import pytest

from node.bench.consensus import main


def test_bench_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "--blocks", "20", "--batch", "10"], prog="seqnet bench consensus") == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("blocks_per_s", "entries_per_s", "verify_per_s", "overhead_ratio"):
        assert result[key] > 0
    # n = 4, q = 3: 3 proposal signatures + 3 x 3 QC signatures + 3 votes per block.
    assert 14 <= result["verifications_per_block"] <= 16
