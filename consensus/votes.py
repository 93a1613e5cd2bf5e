"""Aggregation of votes into QCs and of timeouts into TCs (Aptos `pending_votes.rs`).

Adding a vote returns a result, never raises: a duplicate or an equivocating vote is an
expected outcome that the caller may report, not a crash. Votes are counted per exact
`VoteData`, so two blocks of one round can never be mixed into one certificate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from consensus.types import QuorumCert, TimeoutCert, TimeoutMsg, Vote, VoteData


class VoteStatus(enum.Enum):
    NEW_QC = "new_qc"  # this vote completed a quorum: `qc` is set
    NEED_MORE = "need_more"
    DUPLICATE = "duplicate"  # the same vote again
    EQUIVOCATION = "equivocation"  # the author voted for another block in this round
    QC_EXISTS = "qc_exists"  # the round already has its QC; the vote adds nothing


@dataclass(frozen=True, slots=True)
class VoteResult:
    status: VoteStatus
    qc: QuorumCert | None = None
    earlier: Vote | None = None  # the conflicting earlier vote, for EQUIVOCATION


@dataclass(slots=True)
class _RoundVotes:
    by_author: dict[int, Vote] = field(default_factory=dict)
    by_data: dict[VoteData, dict[int, bytes]] = field(default_factory=dict)
    done: bool = False


class PendingVotes:
    def __init__(self, quorum: int) -> None:
        self._quorum = quorum
        self._rounds: dict[int, _RoundVotes] = {}

    def add(self, vote: Vote) -> VoteResult:
        votes = self._rounds.setdefault(vote.round, _RoundVotes())
        earlier = votes.by_author.get(vote.author)
        if earlier is not None:
            if earlier.vote_data == vote.vote_data:
                return VoteResult(VoteStatus.DUPLICATE)
            return VoteResult(VoteStatus.EQUIVOCATION, earlier=earlier)
        votes.by_author[vote.author] = vote
        if votes.done:
            return VoteResult(VoteStatus.QC_EXISTS)
        signatures = votes.by_data.setdefault(vote.vote_data, {})
        signatures[vote.author] = vote.signature
        if len(signatures) < self._quorum:
            return VoteResult(VoteStatus.NEED_MORE)
        votes.done = True
        signers = tuple(sorted(signatures))
        qc = QuorumCert(vote.vote_data, signers, tuple(signatures[s] for s in signers))
        return VoteResult(VoteStatus.NEW_QC, qc=qc)

    def prune_below(self, round_: int) -> None:
        for r in [r for r in self._rounds if r < round_]:
            del self._rounds[r]

    def rounds(self) -> int:
        return len(self._rounds)


class TimeoutStatus(enum.Enum):
    NEW_TC = "new_tc"  # this timeout completed a quorum: `tc` is set
    NEED_MORE = "need_more"
    DUPLICATE = "duplicate"  # this author already timed out in this round
    TC_EXISTS = "tc_exists"


@dataclass(frozen=True, slots=True)
class TimeoutResult:
    status: TimeoutStatus
    count: int  # distinct authors that timed out in the round so far
    tc: TimeoutCert | None = None


@dataclass(slots=True)
class _RoundTimeouts:
    by_author: dict[int, TimeoutMsg] = field(default_factory=dict)
    done: bool = False


class PendingTimeouts:
    def __init__(self, quorum: int) -> None:
        self._quorum = quorum
        self._rounds: dict[int, _RoundTimeouts] = {}

    def add(self, msg: TimeoutMsg) -> TimeoutResult:
        timeouts = self._rounds.setdefault(msg.round, _RoundTimeouts())
        earlier = timeouts.by_author.get(msg.author)
        # An author re-sends its timeout while stuck; keep the one with the highest QC.
        if earlier is None or earlier.high_qc.round < msg.high_qc.round:
            timeouts.by_author[msg.author] = msg
        count = len(timeouts.by_author)
        if timeouts.done:
            return TimeoutResult(TimeoutStatus.TC_EXISTS, count)
        if earlier is not None:
            return TimeoutResult(TimeoutStatus.DUPLICATE, count)
        if count < self._quorum:
            return TimeoutResult(TimeoutStatus.NEED_MORE, count)
        timeouts.done = True
        msgs = [timeouts.by_author[a] for a in sorted(timeouts.by_author)]
        high_qc = max((m.high_qc for m in msgs), key=lambda qc: qc.round)
        tc = TimeoutCert(
            msg.round,
            high_qc,
            tuple(m.author for m in msgs),
            tuple(m.high_qc.round for m in msgs),
            tuple(m.signature for m in msgs),
        )
        return TimeoutResult(TimeoutStatus.NEW_TC, count, tc=tc)

    def prune_below(self, round_: int) -> None:
        for r in [r for r in self._rounds if r < round_]:
            del self._rounds[r]
