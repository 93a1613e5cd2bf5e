"""`seqnet bench catchup` runs end to end (real sockets, four members in process) and
reports the keys docs/BENCHMARKS.md relies on. No timing is asserted here."""

from __future__ import annotations

import json

import pytest

from node.bench.catchup import main


def test_bench_catchup_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--empty", "300", "--blocks", "4", "--entries", "50"]
    assert main(argv, prog="seqnet bench catchup") == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "blocks_per_s",
        "entries_per_s",
        "engine_replay_entries_per_s",
        "blocks_per_cpu_s",
        "entries_per_cpu_s",
        "engine_replay_entries_per_cpu_s",
    ):
        assert result[key] > 0, key
    assert result["ratio_vs_engine"] > 0 and result["catch_up_s"] > 0
    assert result["ratio_vs_engine_cpu"] > 0
