"""Verification at the boundary: an unverified message in, a `Verified` one out.

The runtime calls `Verifier.decode(sender, data)` on every frame from a peer (`sender` is
the committee index the transport authenticated). Either it raises a typed
`errors.InvalidMessage` (drop the message; count, log or disconnect), or it returns a
`Verified` that the core accepts without checking again. The core takes only `Verified`
messages, so a signature is checked exactly once, here.

Signature checks are the cost floor of the protocol, so certificates that were already
verified are remembered (bounded, FIFO): the same QC reaches a node inside a proposal,
in timeouts, in sync messages and in blocks fetched later, and is checked only once.

What is checked here is everything a message claims by itself: signatures, quorum sizes,
round arithmetic, hash links in a block response. What depends on the receiver's state
(is it safe to vote for this?) is the core's business.

The leader of a proposal's round is checked here only when the election's answer is
settled (`LeaderElection.settled`): a reputation election depends on what this node has
committed, and a node that lags would otherwise throw away the very proposal whose QC
lets it catch up; the core checks again once it has processed that QC. Blocks in a
block response are not checked against the election at all: each is certified by a QC
(the requested one by the QC that named it, each parent by its child's), so a quorum has
already accepted its author, and an old round's leader may be past the election's
memory or named differently by a node that was behind at the time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from consensus.committee import Committee
from consensus.crypto import SignatureScheme
from consensus.errors import (
    BadQC,
    BadSignature,
    BadTC,
    Malformed,
    UnknownSigner,
    WrongProposer,
    WrongRound,
    WrongSender,
)
from consensus.leader_election import LeaderElection
from consensus.types import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    SyncInfo,
    TimeoutCert,
    TimeoutMsg,
    Vote,
    block_signing_bytes,
    decode_message,
    genesis_block,
    genesis_qc,
    timeout_signing_bytes,
)

CERT_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Verified:
    """A message whose signatures and self-consistency were checked by `Verifier`.
    Construct one only through `Verifier` (or, in tests, for a message you built)."""

    sender: int
    msg: Message


class Verifier:
    def __init__(
        self,
        committee: Committee,
        scheme: SignatureScheme,
        election: LeaderElection,
    ) -> None:
        self._committee = committee
        self._scheme = scheme
        self._election = election
        self._genesis_qc = genesis_qc(genesis_block(committee.chain_id))
        self._verified_certs: dict[QuorumCert | TimeoutCert, None] = {}
        self.signature_checks = 0  # for benchmarks and tests: verifications performed

    # ------------------------------------------------------------ entry points

    def decode(self, sender: int, data: bytes) -> Verified:
        return self.verify(sender, decode_message(data))

    def verify(self, sender: int, msg: Message) -> Verified:
        self._member(sender, "sender")
        if isinstance(msg, Proposal):
            self._verify_proposal(msg)
        elif isinstance(msg, Vote):
            self._verify_vote(sender, msg)
        elif isinstance(msg, TimeoutMsg):
            self._verify_timeout(sender, msg)
        elif isinstance(msg, SyncInfo):
            self.verify_qc(msg.high_qc)
            if msg.high_tc is not None:
                self.verify_tc(msg.high_tc)
        elif isinstance(msg, BlockResponse):
            self._verify_response(msg)
        else:
            assert isinstance(msg, BlockRequest)
        return Verified(sender, msg)

    # ------------------------------------------------------------ messages

    def _verify_proposal(self, proposal: Proposal) -> None:
        block, tc = proposal.block, proposal.tc
        self._member(block.author, "block author")
        election = self._election
        if election.settled(block.round) and block.author != election.leader(block.round):
            raise WrongProposer(f"{block.author} is not the leader of round {block.round}")
        self.verify_block(block)
        if block.round != block.qc.round + 1 and tc is None:
            raise WrongRound("a proposal not extending the previous round needs a TC")
        if tc is not None:
            if tc.round + 1 != block.round:
                raise WrongRound(f"TC of round {tc.round} for a block of round {block.round}")
            self.verify_tc(tc)

    def _verify_vote(self, sender: int, vote: Vote) -> None:
        self._member(vote.author, "vote author")
        if vote.author != sender:
            raise WrongSender(f"vote by {vote.author} sent by {sender}")
        vd = vote.vote_data
        if not vd.parent_round < vd.round:
            raise WrongRound("vote for a block not above its parent")
        self._check_sig(vote.author, vd.signing_bytes(self._committee.chain_id), vote.signature)

    def _verify_timeout(self, sender: int, msg: TimeoutMsg) -> None:
        self._member(msg.author, "timeout author")
        if msg.author != sender:
            raise WrongSender(f"timeout by {msg.author} sent by {sender}")
        if not msg.high_qc.round < msg.round:
            raise WrongRound("timeout for a round not above its high QC")
        if msg.last_tc is not None and not msg.last_tc.round < msg.round:
            raise WrongRound("timeout carrying a TC of its own round or later")
        signed = timeout_signing_bytes(self._committee.chain_id, msg.round, msg.high_qc.round)
        self._check_sig(msg.author, signed, msg.signature)
        self.verify_qc(msg.high_qc)
        if msg.last_tc is not None:
            self.verify_tc(msg.last_tc)

    def _verify_response(self, response: BlockResponse) -> None:
        # Hash links first (cheap): the requester anchors blocks[0].id to a QC it verified,
        # so the links make the whole chain authentic; signatures are defence in depth.
        blocks = response.blocks
        for child, parent in itertools.pairwise(blocks):
            if child.parent_id != parent.id:
                raise Malformed("block response is not a parent chain")
        for block in blocks:
            self.verify_block(block)

    # ------------------------------------------------------------ parts

    def verify_block(self, block: Block) -> None:
        """A non-genesis block: round arithmetic, a member's signature, parent QC. Not
        its leader: see the module docstring."""
        if block.round == 0 or block.height == 0:
            raise WrongRound("round 0 / height 0 is genesis only; it is never sent")
        if not block.qc.round < block.round:
            raise WrongRound(f"block of round {block.round} above a QC of round {block.qc.round}")
        self._member(block.author, "block author")
        signed = block_signing_bytes(self._committee.chain_id, block.id)
        self._check_sig(block.author, signed, block.signature)
        self.verify_qc(block.qc)

    def verify_qc(self, qc: QuorumCert) -> None:
        if qc in self._verified_certs:
            return
        if not qc.signers:
            if qc != self._genesis_qc:
                raise BadQC("a QC without signatures must be the genesis QC")
            return
        vd = qc.vote_data
        if not vd.parent_round < vd.round:
            raise BadQC("QC for a block not above its parent")
        self._check_quorum(qc.signers, len(qc.signatures), BadQC)
        message = vd.signing_bytes(self._committee.chain_id)
        for signer, signature in zip(qc.signers, qc.signatures, strict=True):
            if not self._valid(signer, message, signature):
                raise BadQC(f"bad signature of {signer} in QC of round {vd.round}")
        self._remember(qc)

    def verify_tc(self, tc: TimeoutCert) -> None:
        if tc in self._verified_certs:
            return
        self._check_quorum(tc.signers, len(tc.signatures), BadTC)
        if len(tc.hqc_rounds) != len(tc.signers):
            raise BadTC("one high QC round per signer")
        if max(tc.hqc_rounds) >= tc.round:
            raise BadTC("a timeout's high QC must be below its round")
        if tc.high_qc.round != max(tc.hqc_rounds):
            raise BadTC("the TC's QC must be the highest its signers reported")
        self.verify_qc(tc.high_qc)
        chain_id = self._committee.chain_id
        for signer, hqc_round, signature in zip(
            tc.signers, tc.hqc_rounds, tc.signatures, strict=True
        ):
            message = timeout_signing_bytes(chain_id, tc.round, hqc_round)
            if not self._valid(signer, message, signature):
                raise BadTC(f"bad signature of {signer} in TC of round {tc.round}")
        self._remember(tc)

    # ------------------------------------------------------------ helpers

    def _member(self, index: int, what: str) -> None:
        if not self._committee.is_member(index):
            raise UnknownSigner(f"{what} {index} is not a committee member")

    def _check_quorum(
        self, signers: tuple[int, ...], n_sigs: int, error: type[BadQC] | type[BadTC]
    ) -> None:
        if len(signers) != n_sigs:
            raise error("one signature per signer")
        if any(a >= b for a, b in itertools.pairwise(signers)):
            raise error("signers must be strictly ascending (no duplicates)")
        for signer in signers:
            self._member(signer, "signer")
        if len(signers) < self._committee.quorum:
            raise error(f"{len(signers)} signers, quorum is {self._committee.quorum}")

    def _valid(self, signer: int, message: bytes, signature: bytes) -> bool:
        self.signature_checks += 1
        return self._scheme.verify(self._committee.public_keys[signer], message, signature)

    def _check_sig(self, signer: int, message: bytes, signature: bytes) -> None:
        if not self._valid(signer, message, signature):
            raise BadSignature(f"bad signature of {signer}")

    def _remember(self, cert: QuorumCert | TimeoutCert) -> None:
        if len(self._verified_certs) >= CERT_CACHE_SIZE:
            del self._verified_certs[next(iter(self._verified_certs))]
        self._verified_certs[cert] = None
