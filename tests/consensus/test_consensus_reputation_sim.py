"""Leader reputation in the simulator: a crashed leader, a flapping leader, twins.

Scripted runs (no heal phase): the nodes boot, a member goes down and up at set times
of simulated time, and we read the chain the honest nodes committed. A round missing
from that chain is a round that timed out; the leader it was missing is named by an
election fed with the same chain. Counts of rounds, never wall-clock times.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from consensus.leader_election import LeaderReputation
from consensus.types import Block
from node.sim.cluster import Knobs, Simulation, Violation
from node.sim.plan import FaultPlan, make_plan
from node.sim.runner import repro_command, run_seeds


def quiet_plan(n: int = 4, seed: int = 0, twins: tuple[int, ...] = ()) -> FaultPlan:
    return FaultPlan.calm(n, seed, twins=twins)


def scripted(election: str, outages: list[tuple[int, int, int | None]], end_ms: int) -> Simulation:
    sim = Simulation(quiet_plan(), random.Random(1), Knobs(election=election))
    sim.start()
    for key, at_ms, down_ms in outages:
        sim.outage(key, at_ms, down_ms)
    sim.run_until_ms(end_ms)
    return sim


def skipped_rounds(chain: list[Block], first: int, last: int) -> list[int]:
    """Rounds in [first, last] that no committed block holds."""
    held = {b.round for b in chain}
    top = min(last, chain[-1].round)
    return [r for r in range(first, top + 1) if r not in held]


def leaders_of(chain: list[Block], rounds: list[int], n: int) -> list[int]:
    """Who led each round, as the election of that time named it (an election fed with
    the committed chain up to each round is exactly as settled as the nodes were)."""
    election = LeaderReputation(n)
    out = []
    by_round = sorted(rounds)
    i = 0
    for r in by_round:
        while i < len(chain) and chain[i].round < r:
            election.observe_commit([chain[i]])
            i += 1
        out.append(election.leader(r))
    return out


def crashed_leader_run(election: str) -> tuple[int, int, int, int]:
    """Member 3 crashes at 1 s for good: (rounds lost in the first half of the rest of
    the run, rounds lost in the second half, rounds in the second half, blocks)."""
    sim = scripted(election, [(3, 1000, None)], end_ms=12_000)
    chain = sim.canonical_chain()
    crash_round = next(b.round for b in chain if b.timestamp_ms >= 1000)
    last = chain[-1].round
    middle = (crash_round + last) // 2
    first_half = skipped_rounds(chain, crash_round, middle)
    second_half = skipped_rounds(chain, middle + 1, last)
    return len(first_half), len(second_half), last - middle, len(chain)


def test_crashed_leader_stops_costing_rounds() -> None:
    """Round-robin keeps electing the dead member: its round and the one before it (whose
    votes go to it) time out, forever. Reputation excludes it after its first failures:
    in the second half of the run no round times out."""
    rep_first, rep_second, _, rep_blocks = crashed_leader_run("reputation")
    _, rr_second, rr_rounds, rr_blocks = crashed_leader_run("round-robin")
    assert rep_second == 0
    # Before it is excluded it fails once or twice, and each failure loses the round
    # before it too; a round may be lost while the nodes' committed histories catch up.
    assert 1 <= rep_first <= 8
    assert rr_second * 5 >= rr_rounds  # about one round in two
    assert rep_blocks > 2 * rr_blocks


def test_flapping_leader_is_excluded_while_down_and_chosen_again_when_up() -> None:
    """Member 2 goes down and up four times. While down (after its first failures) no
    round times out; once up, its votes reach QCs again and it proposes again."""
    period_ms = 2_000
    outages = [(2, t, period_ms) for t in range(period_ms, 8 * period_ms, 2 * period_ms)]
    sim = Simulation(quiet_plan(), random.Random(1), Knobs())
    sim.start()
    for key, at_ms, down_ms in outages:
        sim.outage(key, at_ms, down_ms)
    boundaries: list[int] = []
    for t in range(period_ms, 9 * period_ms + 1, period_ms):
        sim.run_until_ms(t)
        boundaries.append(sim.canonical_chain()[-1].round)
    chain = sim.canonical_chain()
    for i in range(0, len(boundaries) - 1):
        first, last = boundaries[i] + 1, boundaries[i + 1]
        phase = [b for b in chain if first <= b.round <= last]
        if i % 2 == 0:  # down
            skipped = skipped_rounds(chain, first, last)
            named = leaders_of(chain, skipped, 4)
            # It fails once or twice; each failure also loses the round before it,
            # whose votes went to it.
            assert 1 <= named.count(2) <= 2 and len(skipped) <= 2 * named.count(2), (i, skipped)
            assert skipped_rounds(chain, (first + last) // 2, last) == [], i
            assert not any(b.author == 2 for b in phase[len(phase) // 4 :]), i
        else:  # up: it takes part, and leads again
            assert any(2 in b.qc.signers for b in phase), i
            assert any(b.author == 2 for b in phase), i


@pytest.mark.parametrize("seed", range(6))
def test_twins_under_reputation_stay_safe_and_live(seed: int) -> None:
    """Two instances with one key (they propose two blocks as leader, vote twice): the
    full safety and liveness phases, with faults drawn from the seed."""
    rng = random.Random(seed)
    plan = dataclasses.replace(make_plan(rng, seed, 4), twins=(seed % 4,), silent=())
    sim = Simulation(plan, rng, Knobs())
    try:
        stats = sim.run()
    except Violation as exc:
        pytest.fail(f"seed {seed}: {exc}")
    assert stats.min_honest_height > stats.heal_height


def test_twins_quiet_network_reputation() -> None:
    sim = Simulation(quiet_plan(twins=(1,)), random.Random(5), Knobs())
    sim.start()
    sim.run_until_ms(5_000)
    chain = sim.canonical_chain()
    assert len(chain) > 100
    assert {b.author for b in chain} == {0, 1, 2, 3}


def test_round_robin_sweep_still_passes() -> None:
    for result in run_seeds(0, 40, knobs=Knobs(election="round-robin")):
        assert result.ok, (result.violation, result.repro)
        assert "--election round-robin" in result.repro


def test_repro_names_the_election() -> None:
    assert "--election" not in repro_command(1, 4, Knobs(), None)
    assert "--election round-robin" in repro_command(1, 4, Knobs(election="round-robin"), None)


class _AlwaysSettled(LeaderReputation):
    """A broken election: claims its answer is final even when its history lags."""

    def settled(self, round_: int) -> bool:
        return True


def test_the_agreement_check_has_teeth(monkeypatch: pytest.MonkeyPatch) -> None:
    """An election that trusts a stale history disagrees with the others, and the
    simulator says so (ELECTION) within a few seeds."""
    monkeypatch.setattr("node.sim.cluster.LeaderReputation", _AlwaysSettled)
    for result in run_seeds(0, 50):
        if not result.ok:
            assert result.violation is not None and "ELECTION" in result.violation
            return
    pytest.fail("a lagging election claiming to be settled survived 50 seeds")
