"""Vote and timeout aggregation: results, not exceptions."""

from __future__ import annotations

from consensus_testkit import Kit

from consensus.votes import PendingTimeouts, PendingVotes, TimeoutStatus, VoteStatus


def test_quorum_of_votes_makes_one_qc() -> None:
    kit = Kit(4)
    b1 = kit.chain(1)[1]
    pending = PendingVotes(kit.committee.quorum)
    assert pending.add(kit.vote(b1, 3)).status is VoteStatus.NEED_MORE
    assert pending.add(kit.vote(b1, 0)).status is VoteStatus.NEED_MORE
    result = pending.add(kit.vote(b1, 2))
    assert result.status is VoteStatus.NEW_QC and result.qc is not None
    assert result.qc.signers == (0, 2, 3) and result.qc.vote_data == b1.vote_data()
    kit.verifier().verify_qc(result.qc)
    assert pending.add(kit.vote(b1, 1)).status is VoteStatus.QC_EXISTS


def test_duplicate_and_equivocating_votes() -> None:
    kit = Kit(4)
    g = kit.genesis
    b1, b1x = kit.block(1, g), kit.block(1, g, payload=(b"x",))
    pending = PendingVotes(kit.committee.quorum)
    first = kit.vote(b1, 0)
    pending.add(first)
    assert pending.add(kit.vote(b1, 0)).status is VoteStatus.DUPLICATE
    result = pending.add(kit.vote(b1x, 0))
    assert result.status is VoteStatus.EQUIVOCATION and result.earlier == first
    # Votes for two blocks of one round never mix into one QC.
    assert pending.add(kit.vote(b1x, 1)).status is VoteStatus.NEED_MORE
    assert pending.add(kit.vote(b1x, 2)).status is VoteStatus.NEED_MORE
    assert pending.add(kit.vote(b1, 3)).status is VoteStatus.NEED_MORE


def test_prune() -> None:
    kit = Kit(4)
    chain = kit.chain(3)
    pending = PendingVotes(kit.committee.quorum)
    for block in chain[1:]:
        pending.add(kit.vote(block, 0))
    pending.prune_below(3)
    assert pending.rounds() == 1


def test_timeouts_make_a_tc_with_the_highest_qc() -> None:
    kit = Kit(4)
    chain = kit.chain(2)
    qc1, qc2 = kit.qc(chain[1]), kit.qc(chain[2])
    pending = PendingTimeouts(kit.committee.quorum)
    assert pending.add(kit.timeout(3, qc1, 0)).status is TimeoutStatus.NEED_MORE
    again = pending.add(kit.timeout(3, qc2, 0))  # re-sent with a higher QC
    assert again.status is TimeoutStatus.DUPLICATE and again.count == 1
    assert pending.add(kit.timeout(3, qc1, 1)).count == 2
    result = pending.add(kit.timeout(3, qc1, 3))
    assert result.status is TimeoutStatus.NEW_TC and result.tc is not None
    tc = result.tc
    assert tc.signers == (0, 1, 3) and tc.hqc_rounds == (2, 1, 1) and tc.high_qc == qc2
    kit.verifier().verify_tc(tc)
    assert pending.add(kit.timeout(3, qc1, 2)).status is TimeoutStatus.TC_EXISTS
