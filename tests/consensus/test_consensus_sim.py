"""The deterministic simulator: a seed sweep, reproducibility, and proof of teeth.

The sweep runs seeds 0..SWEEP_SEEDS-1 with n alternating 4 and 7 (`seqnet sim --seeds
400` runs the same ones). A failure names its seed and the command that replays it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from node.sim.cli import main as sim_main
from node.sim.cluster import Knobs
from node.sim.runner import run_seed, run_seeds
from tests.conftest import SIM_JOBS

SWEEP_SEEDS = 400
CHUNK = 50
TEETH_SEEDS = 200  # a broken variant must be caught within this many seeds


@pytest.mark.parametrize("first", range(0, SWEEP_SEEDS, CHUNK))
def test_seed_sweep(first: int) -> None:
    failures = [
        f"seed {r.seed}: {r.violation}\n  plan: {r.plan}\n  reproduce: {r.repro}"
        for r in run_seeds(first, CHUNK, jobs=SIM_JOBS)
        if not r.ok
    ]
    assert not failures, "\n".join(failures)


def test_sweep_covers_both_sizes_and_every_fault() -> None:
    results = list(run_seeds(0, 40))
    assert {r.n for r in results} == {4, 7}
    assert any("twins=[]" not in r.plan for r in results)
    assert any("silent=[]" not in r.plan for r in results)
    assert any(r.stats.crashes for r in results)
    assert any(r.stats.dropped for r in results)
    assert all(r.stats.min_honest_height > r.stats.heal_height for r in results)


def test_real_signatures_sweep() -> None:
    for result in run_seeds(0, 6, knobs=Knobs(crypto="ed25519")):
        assert result.ok, (result.violation, result.repro)


@pytest.mark.parametrize("n", [1, 10])
def test_other_sizes_under_faults(n: int) -> None:
    for result in run_seeds(0, 8, nodes=n):
        assert result.ok, (result.violation, result.repro)


def test_same_seed_same_run() -> None:
    first, second = run_seed(12345), run_seed(12345)
    assert first.digest == second.digest and first.stats == second.stats
    assert run_seed(12346).digest != first.digest


def test_parallel_sweep_matches_sequential() -> None:
    sequential = [r.digest for r in run_seeds(40, 6)]
    assert [r.digest for r in run_seeds(40, 6, jobs=2)] == sequential


def test_same_seed_same_run_across_processes() -> None:
    """Hash randomisation differs per process: no iteration order may depend on it."""
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-m", "node.cli", "sim", "--seed", "7", "--nodes", "7", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        digests.add(json.loads(out)["digest"])
    assert len(digests) == 1
    assert digests == {run_seed(7, nodes=7).digest}


@pytest.mark.parametrize(
    ("knobs", "expect"),
    [
        # Commit on a 1-chain: caught by the fork check (two blocks at one height).
        (Knobs(unsafe_one_chain_commit=True), "committed"),
        # Vote without the voted-round and safe-to-vote rules: a double vote.
        (Knobs(unsafe_skip_vote_rules=True), "voted twice"),
        # Restart without the persisted safety record: a double vote across the crash.
        (Knobs(unsafe_amnesia=True), "voted twice"),
    ],
)
def test_broken_variants_are_caught(knobs: Knobs, expect: str) -> None:
    for result in run_seeds(0, TEETH_SEEDS, knobs=knobs):
        if not result.ok:
            assert result.violation is not None and "SAFETY" in result.violation
            assert expect in result.violation
            assert "--unsafe-" in result.repro
            again = run_seed(result.seed, result.n, knobs)  # and the seed reproduces it
            assert again.violation == result.violation and again.digest == result.digest
            return
    pytest.fail(f"{knobs} survived {TEETH_SEEDS} seeds: the checker has no teeth")


def test_cli_exit_status_and_repro(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main(["--seeds", "3"], prog="seqnet sim") == 0
    assert "3 seeds, 0 failed" in capsys.readouterr().out
    assert sim_main(["--seeds", "100", "--unsafe-one-chain-commit"], prog="seqnet sim") == 1
    err = capsys.readouterr().err
    assert "reproduce with: seqnet sim --seed" in err and "--unsafe-one-chain-commit" in err


@pytest.mark.slow
def test_soak() -> None:
    failures = [r.repro for r in run_seeds(100_000, 5_000) if not r.ok]
    assert not failures, failures
