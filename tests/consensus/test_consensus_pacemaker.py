"""Rounds advance only on certificates; timeouts back off while nothing commits."""

from __future__ import annotations

from consensus_testkit import Kit

from consensus.leader_election import RoundRobin
from consensus.pacemaker import NewRound, Pacemaker


def test_enter_only_moves_forward() -> None:
    pm = Pacemaker(1000, 4, start_round=1)
    assert pm.enter(1, 0, 0) is None
    assert pm.enter(3, 100, 0) == NewRound(3, 1100)
    assert pm.round == 3 and not pm.timed_out
    assert pm.enter(2, 200, 0) is None and pm.round == 3


def test_exponential_backoff_capped() -> None:
    pm = Pacemaker(1000, 3, start_round=1)
    # steady state: round r, committed r - 2 -> base timeout
    assert pm.timeout_ms(10, 8) == 1000
    assert pm.timeout_ms(11, 8) == 1000  # the first failed round is not yet backed off
    assert pm.timeout_ms(12, 8) == 1500
    assert pm.timeout_ms(13, 8) == 2250
    assert pm.timeout_ms(14, 8) == 3375
    assert pm.timeout_ms(50, 8) == 3375  # capped


def test_highest_tc_kept() -> None:
    kit = Kit(4)
    qc = kit.qc(kit.chain(1)[1])
    pm = Pacemaker(1000, 3, start_round=1)
    tc5, tc3 = kit.tc(5, [qc] * 3), kit.tc(3, [qc] * 3)
    assert pm.observe_tc(tc5) and not pm.observe_tc(tc3) and pm.high_tc == tc5


def test_round_robin() -> None:
    election = RoundRobin(4)
    assert [election.leader(r) for r in range(6)] == [0, 1, 2, 3, 0, 1]
    assert RoundRobin(1).leader(17) == 0
