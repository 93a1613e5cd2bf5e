"""Verification at the boundary: each kind of invalid message gets its typed error."""

from __future__ import annotations

import dataclasses

import pytest
from consensus_testkit import Kit

from consensus.crypto import Ed25519Scheme
from consensus.errors import (
    BadQC,
    BadSignature,
    BadTC,
    InvalidMessage,
    Malformed,
    UnknownSigner,
    WrongProposer,
    WrongRound,
    WrongSender,
)
from consensus.leader_election import RoundRobin
from consensus.types import BlockResponse, Proposal, QuorumCert, SyncInfo, encode_message
from consensus.verifier import Verifier


@pytest.fixture
def kit() -> Kit:
    return Kit(4)


def test_valid_messages_verify(kit: Kit) -> None:
    verifier = kit.verifier()
    chain = kit.chain(2)
    verified = verifier.decode(1, encode_message(Proposal(chain[2], None)))
    assert verified.msg == Proposal(chain[2], None) and verified.sender == 1
    verifier.verify(3, kit.vote(chain[2], 3))
    verifier.verify(0, kit.timeout(3, kit.qc(chain[2]), 0))
    verifier.verify(0, BlockResponse((chain[2], chain[1])))


def test_vote_errors(kit: Kit) -> None:
    verifier = kit.verifier()
    b1 = kit.chain(1)[1]
    vote = kit.vote(b1, 2)
    with pytest.raises(WrongSender):
        verifier.verify(1, vote)
    with pytest.raises(UnknownSigner):
        verifier.verify(2, dataclasses.replace(vote, author=9))
    with pytest.raises(UnknownSigner):
        verifier.verify(7, vote)
    with pytest.raises(BadSignature):
        verifier.verify(2, dataclasses.replace(vote, signature=kit.vote(b1, 1).signature))
    bad_rounds = dataclasses.replace(
        vote, vote_data=dataclasses.replace(vote.vote_data, parent_round=5)
    )
    with pytest.raises(WrongRound):
        verifier.verify(2, bad_rounds)


def test_proposal_errors(kit: Kit) -> None:
    verifier = kit.verifier()
    chain = kit.chain(2)
    with pytest.raises(WrongProposer):
        verifier.verify(0, Proposal(kit.block(3, chain[2], author=0), None))
    with pytest.raises(BadSignature):
        forged = dataclasses.replace(chain[2], signature=chain[1].signature)
        verifier.verify(0, Proposal(forged, None))
    # Round 4 extends the QC of round 2: it needs the TC of round 3.
    skip = kit.block(4, chain[2])
    with pytest.raises(WrongRound):
        verifier.verify(0, Proposal(skip, None))
    qc2 = kit.qc(chain[2])
    with pytest.raises(WrongRound):
        verifier.verify(0, Proposal(skip, kit.tc(2, [qc2, qc2, qc2])))
    verifier.verify(0, Proposal(skip, kit.tc(3, [qc2, qc2, qc2])))
    with pytest.raises(WrongRound):
        verifier.verify(0, Proposal(kit.block(2, chain[2], qc=qc2), None))  # not above its QC


def test_qc_errors(kit: Kit) -> None:
    verifier = kit.verifier()
    b1 = kit.chain(1)[1]
    good = kit.qc(b1)
    with pytest.raises(BadQC):  # too few
        verifier.verify_qc(kit.qc(b1, [0, 1]))
    with pytest.raises(BadQC):  # duplicate signer
        verifier.verify_qc(
            QuorumCert(good.vote_data, (0, 0, 1), (good.signatures[0],) * 2 + good.signatures[1:2])
        )
    with pytest.raises(BadQC):  # unsorted
        verifier.verify_qc(QuorumCert(good.vote_data, (1, 0, 2), good.signatures))
    with pytest.raises(BadQC):  # a bad signature inside
        sigs = (good.signatures[1], *good.signatures[1:])
        verifier.verify_qc(QuorumCert(good.vote_data, good.signers, sigs))
    with pytest.raises(BadQC):  # no signatures but not genesis
        verifier.verify_qc(QuorumCert(good.vote_data, (), ()))
    with pytest.raises(UnknownSigner):
        verifier.verify_qc(QuorumCert(good.vote_data, (0, 1, 9), good.signatures))
    verifier.verify_qc(kit.genesis_qc)
    with pytest.raises(BadQC):  # a forged QC inside a sync message
        verifier.verify(1, SyncInfo(kit.qc(b1, [0, 1]), None))


def test_tc_errors(kit: Kit) -> None:
    verifier = kit.verifier()
    chain = kit.chain(2)
    qc1, qc2 = kit.qc(chain[1]), kit.qc(chain[2])
    tc = kit.tc(4, [qc1, qc2, qc1])
    verifier.verify_tc(tc)
    with pytest.raises(BadTC):  # claims a lower high QC than a signer reported
        verifier.verify_tc(dataclasses.replace(tc, high_qc=qc1))
    with pytest.raises(BadTC):
        verifier.verify_tc(kit.tc(4, [qc1, qc2]))
    with pytest.raises(BadTC):  # signer reported a QC round other than the one signed
        verifier.verify_tc(dataclasses.replace(tc, hqc_rounds=(1, 2, 2)))
    with pytest.raises(BadTC):
        verifier.verify_tc(kit.tc(2, [qc1, qc2, qc1]))  # a QC of its own round


def test_timeout_errors(kit: Kit) -> None:
    verifier = kit.verifier()
    chain = kit.chain(2)
    qc2 = kit.qc(chain[2])
    with pytest.raises(WrongRound):
        verifier.verify(1, kit.timeout(2, qc2, 1))
    with pytest.raises(WrongSender):
        verifier.verify(2, kit.timeout(3, qc2, 1))
    with pytest.raises(BadSignature):
        msg = kit.timeout(3, qc2, 1)
        verifier.verify(1, dataclasses.replace(msg, round=4))


def test_block_response_must_be_a_parent_chain(kit: Kit) -> None:
    verifier = kit.verifier()
    chain = kit.chain(3)
    with pytest.raises(Malformed):
        verifier.verify(0, BlockResponse((chain[3], chain[1])))
    with pytest.raises(WrongRound):  # genesis is never sent
        verifier.verify(0, BlockResponse((chain[1], chain[0])))


def test_certificates_are_verified_once(kit: Kit) -> None:
    verifier = kit.verifier()
    b1 = kit.chain(1)[1]
    qc = kit.qc(b1)
    verifier.verify_qc(qc)
    checks = verifier.signature_checks
    assert checks == kit.committee.quorum
    # The same QC decoded afresh (new objects, equal value) costs nothing.
    again = QuorumCert(qc.vote_data, tuple(qc.signers), tuple(bytes(s) for s in qc.signatures))
    verifier.verify_qc(again)
    assert verifier.signature_checks == checks


def test_all_errors_are_invalid_message() -> None:
    for error in (BadQC, BadSignature, BadTC, Malformed, UnknownSigner, WrongProposer):
        assert issubclass(error, InvalidMessage)
    assert issubclass(WrongRound, InvalidMessage) and issubclass(WrongSender, InvalidMessage)


class _Unsettled(RoundRobin):
    """Round-robin answers that the node cannot yet vouch for (it lags behind)."""

    def settled(self, round_: int) -> bool:
        return False


def test_the_proposer_is_checked_only_when_the_election_is_settled(kit: Kit) -> None:
    """A lagging node hands a proposal by an unexpected author to the core, which checks
    again once it has processed the proposal's QC (which may settle the question)."""
    chain = kit.chain(2)
    stranger = Proposal(kit.block(3, chain[2], author=0), None)
    with pytest.raises(WrongProposer):
        kit.verifier().verify(0, stranger)
    lagging = Verifier(kit.committee, Ed25519Scheme(), _Unsettled(kit.n))
    assert lagging.verify(0, stranger).msg == stranger
    with pytest.raises(BadSignature):  # everything else is still checked
        forged = dataclasses.replace(stranger.block, signature=chain[1].signature)
        lagging.verify(0, Proposal(forged, None))


def test_fetched_blocks_are_not_checked_against_the_election(kit: Kit) -> None:
    """Each block of a response is certified (by the QC that named it, or its child's):
    a quorum accepted its author, and an old round may be past the election's memory."""
    chain = kit.chain(1)
    odd = kit.block(2, chain[1], author=3)  # round 2's leader is 2
    child = kit.block(3, odd)
    kit.verifier().verify(1, BlockResponse((child, odd, chain[1])))
