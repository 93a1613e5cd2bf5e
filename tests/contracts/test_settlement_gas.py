"""`seqnet bench settlement` runs and the contract stays within the issue's gas targets."""

from __future__ import annotations

import json

import pytest

from node.bench import settlement as bench


def test_bench_json_within_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--json"], prog="seqnet bench settlement") == 0
    result = json.loads(capsys.readouterr().out)
    for key in (
        "gas_checkpoint_k3_n4",
        "gas_checkpoint_k67_n100",
        "gas_claim",
        "gas_deposit",
        "gas_exit",
    ):
        assert isinstance(result[key], int) and result[key] > 21_000
    assert result["gas_checkpoint_k3_n4"] <= 90_000
    assert result["gas_checkpoint_k67_n100"] <= 550_000
    assert result["gas_claim"] <= 80_000
