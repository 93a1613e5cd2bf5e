"""The two voting rules, the timeout rule, and the record that survives restarts."""

from __future__ import annotations

import pytest
from consensus_testkit import Kit

from consensus.safety_data import SafetyData
from consensus.safety_rules import Refused, SafetyRules
from consensus.types import TimeoutMsg, Vote


@pytest.fixture
def kit() -> Kit:
    return Kit(4)


def rules(kit: Kit, me: int = 3, data: SafetyData | None = None) -> SafetyRules:
    return SafetyRules(kit.committee, me, kit.signers[me], data or SafetyData())


def vote_of(result: object) -> Vote:
    assert isinstance(result, tuple), result
    vote = result[0]
    assert isinstance(vote, Vote)
    return vote


def test_votes_once_per_round(kit: Kit) -> None:
    sr = rules(kit)
    chain = kit.chain(1)
    b1 = chain[1]
    other = kit.block(1, chain[0], payload=(b"other",))
    first = vote_of(sr.vote(b1, None))
    assert sr.data.last_voted_round == 1 and sr.data.last_vote == first
    assert vote_of(sr.vote(b1, None)) == first  # the same vote, re-sent
    assert isinstance(sr.vote(other, None), Refused)


def test_never_votes_at_or_below_last_voted_round(kit: Kit) -> None:
    sr = rules(kit)
    chain = kit.chain(3)
    vote_of(sr.vote(chain[3], None))
    assert isinstance(sr.vote(chain[2], None), Refused)


def test_safe_to_vote_needs_qc_of_previous_round_or_tc(kit: Kit) -> None:
    sr = rules(kit)
    chain = kit.chain(2)
    qc1, qc2 = kit.qc(chain[1]), kit.qc(chain[2])
    b4 = kit.block(4, chain[2], qc=qc2)  # round 3 timed out
    assert isinstance(sr.vote(b4, None), Refused)
    b4_low = kit.block(4, chain[1], qc=qc1)
    # The TC says a signer had QC 2: extending QC 1 could orphan a committed block.
    assert isinstance(sr.vote(b4_low, kit.tc(3, [qc2, qc1, qc1])), Refused)
    vote_of(sr.vote(b4, kit.tc(3, [qc2, qc1, qc1])))
    assert sr.data.one_chain_round == 2 and sr.data.preferred_round == 1


def test_timeout_rules(kit: Kit) -> None:
    sr = rules(kit)
    chain = kit.chain(3)
    qc2 = kit.qc(chain[2])
    vote_of(sr.vote(chain[3], None))  # one_chain_round = 2
    assert isinstance(sr.sign_timeout(3, kit.qc(chain[1]), None), Refused)  # QC below 2
    signed = sr.sign_timeout(3, qc2, None)
    assert isinstance(signed, tuple) and isinstance(signed[0], TimeoutMsg)
    assert sr.data.last_voted_round == 3 and sr.data.highest_timeout_round == 3
    assert sr.data.round_cert == qc2
    assert isinstance(sr.sign_timeout(2, kit.qc(chain[1]), None), Refused)  # below voted
    assert isinstance(sr.sign_timeout(5, qc2, None), Refused)  # round 5 unjustified


def test_timing_out_forbids_voting_in_that_round(kit: Kit) -> None:
    sr = rules(kit)
    chain = kit.chain(2)
    qc1 = kit.qc(chain[1])
    assert isinstance(sr.sign_timeout(2, qc1, None), tuple)
    assert isinstance(sr.vote(chain[2], None), Refused)


def test_proposal_only_above_last_voted_round(kit: Kit) -> None:
    sr = rules(kit, me=1)
    chain = kit.chain(1)
    block = sr.sign_proposal(1, 1, 5, kit.genesis_qc, (b"x",))
    assert not isinstance(block, Refused)
    vote_of(sr.vote(block, None))
    assert isinstance(sr.sign_proposal(1, 1, 6, kit.genesis_qc, (b"y",)), Refused)
    assert chain[1].round == 1


def test_record_round_trip_and_restart_cannot_equivocate(kit: Kit) -> None:
    sr = rules(kit)
    chain = kit.chain(2)
    tc = kit.tc(2, [kit.qc(chain[1])] * 3)
    b3 = kit.block(3, chain[1], qc=kit.qc(chain[1]))
    vote = vote_of(sr.vote(b3, tc))
    record = SafetyData.decode(sr.data.encode())
    assert record == sr.data and record.round_cert == tc and record.last_vote == vote
    restarted = rules(kit, data=record)
    rival = kit.block(3, chain[1], qc=kit.qc(chain[1]), payload=(b"rival",))
    assert isinstance(restarted.vote(rival, tc), Refused)
    assert vote_of(restarted.vote(b3, tc)) == vote


def test_fresh_record_round_trip() -> None:
    assert SafetyData.decode(SafetyData().encode()) == SafetyData()
