"""Safety rules of 2-chain HotStuff (Jolteon / Aptos `safety_rules_2chain.rs`).

The only module that signs. Its two rules, with the record they keep (`SafetyData`):

- Vote for block B of round r only if r > last_voted_round, and either B extends the QC
  of round r - 1 (B.qc.round + 1 == r) or B comes with the TC of round r - 1 and B.qc is
  at least as high as every QC its signers reported (B.qc.round >= max(tc.hqc_rounds)).
- Time out in round r only if r >= last_voted_round, the timeout's QC or the sender's TC
  justifies being in r, and the QC is at least one_chain_round (the highest QC in any
  block we voted for). Timing out r raises last_voted_round to r: no vote in r after it.

Every signing method returns the new `SafetyData` beside the signature. The caller must
persist that record before the signature leaves the node; the core does so by emitting
`PersistSafety` ahead of the `Send`/`Broadcast` that carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consensus.committee import Committee
from consensus.crypto import Signer
from consensus.safety_data import SafetyData
from consensus.types import (
    Block,
    QuorumCert,
    TimeoutCert,
    TimeoutMsg,
    Vote,
    block_signing_bytes,
    timeout_signing_bytes,
)


@dataclass(frozen=True, slots=True)
class Refused:
    """An expected outcome, not an error: the rules forbid signing this."""

    reason: str


class SafetyRules:
    def __init__(
        self,
        committee: Committee,
        me: int,
        signer: Signer,
        data: SafetyData,
        unsafe_skip_vote_rules: bool = False,
    ) -> None:
        assert committee.public_keys[me] == signer.public_key, "signer is not this member"
        self._committee = committee
        self._me = me
        self._signer = signer
        self._data = data
        # Test-only: the simulator's proof that its checker has teeth.
        self._unsafe_skip = unsafe_skip_vote_rules

    @property
    def data(self) -> SafetyData:
        return self._data

    def sign_proposal(
        self,
        round_: int,
        height: int,
        timestamp_ms: int,
        qc: QuorumCert,
        payload: tuple[bytes, ...],
    ) -> Block | Refused:
        # A leader votes for its own block right after, so a proposal in a round we have
        # already voted or timed out in could only be a second, conflicting one.
        if round_ <= self._data.last_voted_round and not self._unsafe_skip:
            return Refused(f"proposal for round {round_} <= last voted round")
        unsigned = Block(round_, height, timestamp_ms, self._me, qc, payload, b"")
        signed = block_signing_bytes(self._committee.chain_id, unsigned.id)
        return unsigned.with_signature(self._signer.sign(signed))

    def vote(self, block: Block, tc: TimeoutCert | None) -> tuple[Vote, SafetyData] | Refused:
        data = self._data
        last = data.last_vote
        if last is not None and last.round == block.round:
            if last.vote_data.block_id == block.id:
                return last, data  # the same vote again (lost, or asked after a restart)
            if not self._unsafe_skip:
                return Refused(f"already voted for another block in round {block.round}")
        if not self._unsafe_skip:
            if block.round <= data.last_voted_round:
                return Refused(f"round {block.round} <= last voted round {data.last_voted_round}")
            if not self._safe_to_vote(block, tc):
                return Refused(f"block of round {block.round} not justified by its QC or TC")
        vote_data = block.vote_data()
        signature = self._signer.sign(vote_data.signing_bytes(self._committee.chain_id))
        vote = Vote(vote_data, self._me, signature)
        self._data = replace(
            data,
            last_voted_round=max(data.last_voted_round, block.round),
            one_chain_round=max(data.one_chain_round, block.qc.round),
            preferred_round=max(data.preferred_round, block.qc.parent_round),
            last_vote=vote,
            round_cert=block.qc if block.round == block.qc.round + 1 else tc,
        )
        return vote, self._data

    def sign_timeout(
        self, round_: int, high_qc: QuorumCert, high_tc: TimeoutCert | None
    ) -> tuple[TimeoutMsg, SafetyData] | Refused:
        data = self._data
        if round_ < data.last_voted_round:
            return Refused(f"timeout for round {round_} below last voted round")
        tc_round = 0 if high_tc is None else high_tc.round
        if not (round_ == high_qc.round + 1 or round_ == tc_round + 1):
            return Refused(f"round {round_} is not justified by QC or TC")
        if high_qc.round < data.one_chain_round:
            return Refused(f"high QC {high_qc.round} below one-chain round")
        signed = timeout_signing_bytes(self._committee.chain_id, round_, high_qc.round)
        signature = self._signer.sign(signed)
        msg = TimeoutMsg(round_, high_qc, self._me, signature, high_tc)
        self._data = replace(
            data,
            last_voted_round=max(data.last_voted_round, round_),
            highest_timeout_round=max(data.highest_timeout_round, round_),
            round_cert=high_qc if round_ == high_qc.round + 1 else high_tc,
        )
        return msg, self._data

    @staticmethod
    def _safe_to_vote(block: Block, tc: TimeoutCert | None) -> bool:
        if block.round == block.qc.round + 1:
            return True
        return (
            tc is not None
            and block.round == tc.round + 1
            and block.qc.round >= max(tc.hqc_rounds, default=0)
        )
