"""Builders shared by the consensus tests: a committee with real Ed25519 keys, and
helpers that sign blocks, votes, QCs and TCs the way honest members would."""

from __future__ import annotations

from consensus.committee import Committee
from consensus.crypto import Ed25519Scheme, Ed25519Signer, sha256
from consensus.leader_election import RoundRobin
from consensus.types import (
    Block,
    QuorumCert,
    TimeoutCert,
    TimeoutMsg,
    Vote,
    VoteData,
    block_signing_bytes,
    compute_block_id,
    genesis_block,
    genesis_qc,
    timeout_signing_bytes,
)
from consensus.verifier import Verifier

CHAIN_ID = b"seqnet-test"


class Kit:
    def __init__(self, n: int = 4) -> None:
        self.signers = [Ed25519Signer(sha256(b"test-key-%d" % i)) for i in range(n)]
        self.committee = Committee(tuple(s.public_key for s in self.signers), CHAIN_ID)
        self.election = RoundRobin(n)
        self.genesis = genesis_block(CHAIN_ID)
        self.genesis_qc = genesis_qc(self.genesis)

    @property
    def n(self) -> int:
        return self.committee.n

    def verifier(self) -> Verifier:
        return Verifier(self.committee, Ed25519Scheme(), self.election)

    def block(
        self,
        round_: int,
        parent: Block,
        qc: QuorumCert | None = None,
        payload: tuple[bytes, ...] = (),
        timestamp_ms: int | None = None,
        author: int | None = None,
    ) -> Block:
        qc = qc if qc is not None else self.qc(parent)
        author = self.election.leader(round_) if author is None else author
        ts = parent.timestamp_ms + 1 if timestamp_ms is None else timestamp_ms
        block_id = compute_block_id(round_, parent.height + 1, ts, author, qc, payload)
        sig = self.signers[author].sign(block_signing_bytes(CHAIN_ID, block_id))
        return Block(round_, parent.height + 1, ts, author, qc, payload, sig)

    def vote(self, block: Block, author: int) -> Vote:
        vd = block.vote_data()
        return Vote(vd, author, self.signers[author].sign(vd.signing_bytes(CHAIN_ID)))

    def qc(self, block: Block, signers: list[int] | None = None) -> QuorumCert:
        if block.round == 0:
            return self.genesis_qc
        signers = sorted(signers if signers is not None else range(self.committee.quorum))
        vd: VoteData = block.vote_data()
        sigs = tuple(self.signers[s].sign(vd.signing_bytes(CHAIN_ID)) for s in signers)
        return QuorumCert(vd, tuple(signers), sigs)

    def timeout(
        self, round_: int, high_qc: QuorumCert, author: int, last_tc: TimeoutCert | None = None
    ) -> TimeoutMsg:
        sig = self.signers[author].sign(timeout_signing_bytes(CHAIN_ID, round_, high_qc.round))
        return TimeoutMsg(round_, high_qc, author, sig, last_tc)

    def tc(self, round_: int, high_qcs: list[QuorumCert]) -> TimeoutCert:
        """A TC signed by members 0..len(high_qcs)-1, member i reporting high_qcs[i]."""
        signers = tuple(range(len(high_qcs)))
        rounds = tuple(qc.round for qc in high_qcs)
        sigs = tuple(
            self.signers[s].sign(timeout_signing_bytes(CHAIN_ID, round_, r))
            for s, r in zip(signers, rounds, strict=True)
        )
        best = max(high_qcs, key=lambda qc: qc.round)
        return TimeoutCert(round_, best, signers, rounds, sigs)

    def chain(self, length: int) -> list[Block]:
        """genesis, then blocks of rounds 1..length, each extending the previous."""
        blocks = [self.genesis]
        for r in range(1, length + 1):
            blocks.append(self.block(r, blocks[-1]))
        return blocks
