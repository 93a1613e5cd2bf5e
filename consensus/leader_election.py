"""Who proposes in a round: round-robin, or leader reputation from committed history.

Every node must name the same leader for a round without talking to anyone, so an
election may depend only on the round and on committed, agreed data. Safety never depends
on it: replicas vote once a round whoever proposes, so two nodes that disagree on a leader
cost that round, nothing more. This module may not touch the block tree, the pacemaker or
any I/O; the core feeds it committed blocks (`observe_commit`) and asks it questions.

`LeaderReputation` (after Aptos's `LeaderReputation` proposer election) skips members
that failed as leaders and did not take part since. Its inputs are the committed blocks:
each gives its round, its author and the voters of the QC it carries (who voted for its
parent, in the parent's round); the rounds skipped between two consecutive committed
blocks are rounds whose leaders failed. The rule, with W = `window_blocks`,
X = `exclude_rounds`, F = `fallback_rounds` (docs/CONSENSUS.md "Leader reputation"):

- The leader of round r depends only on the committed blocks of round <= r - X: let e be
  the height of the newest of them. Every node that has committed up to round r - X sees
  the same blocks, hence names the same leader; one that has not may disagree, and
  `settled(r)` tells it so.
- The committed blocks are cut into aligned ranges of W heights. The leader for e is
  computed by one pass over the heights [s(e), e], where s(e) is the start of the range
  before e's own: between W + 1 and 2W blocks. In that pass the leader of each skipped
  round is named by the same pass (by round-robin for a round whose own history lies
  before s(e)), so the answer is a pure function of at most 2W committed blocks, and a
  restarted node seeded with its last `history_blocks` committed blocks agrees with one
  that ran from genesis. An unbounded recursion (each failure named by the election of
  its time, all the way back to genesis) would make a suffix of the log useless.
- Candidates at e: every member except those that failed as leader in the window (the
  last W heights up to e) and did not participate (authored a block, or voted in a QC a
  committed block carries) at a later round, and, once the window is full, those that
  did not participate in it at all. The newest block's author always remains (it took
  part after every failure the window holds); were none left, all would be candidates.
- leader(r) = candidates[r mod len(candidates)]; with no committed block at or below
  r - X, or when more than F rounds separate that block from r - X (nothing commits
  with these candidates, or we lag), plain round-robin r mod n, which needs no agreement
  on history to make progress.

Memory: the last 2W + X + 2 committed blocks' (round, author, voters) and their candidate
lists; each new range replays at most 2W blocks once, O(n) each.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from consensus.types import Block

# A node votes in round r after the QC of r - 1 has committed round r - 2, and sends its
# vote to the leader of r + 1: X = 3 is the least at which a node in step names the same
# leaders as the others. One more round tolerates a node that missed a proposal.
EXCLUDE_ROUNDS = 4
# A failed leader costs its round and the one before (whose votes it was to collect):
# two rounds without a commit keep the candidates. A third means they are not working,
# or that this node lags; round-robin over everyone is then what every node that far
# behind names too, and it needs no agreement on history to make progress.
FALLBACK_ROUNDS = 2
MIN_WINDOW_BLOCKS = 20
WINDOW_BLOCKS_PER_MEMBER = 5


def default_window_blocks(n: int) -> int:
    """Long enough that every live member votes in some QC of the window, and that a
    candidate leads at least once in it even when its votes are always the slowest."""
    return max(MIN_WINDOW_BLOCKS, WINDOW_BLOCKS_PER_MEMBER * n)


class LeaderElection(Protocol):
    def leader(self, round_: int) -> int:
        """The best answer this node can give now."""
        ...

    def settled(self, round_: int) -> bool:
        """True when `leader(round_)` is final: every up-to-date node gives the same
        answer, now and later."""
        ...

    def observe_commit(self, blocks: Sequence[Block]) -> None:
        """Committed blocks, oldest first (the core calls this on every Commit)."""
        ...

    def seed(self, blocks: Sequence[Block]) -> None:
        """Forget everything, then learn the last committed blocks (oldest first)."""
        ...


class RoundRobin:
    __slots__ = ("_n",)

    def __init__(self, n: int) -> None:
        assert n >= 1
        self._n = n

    def leader(self, round_: int) -> int:
        return round_ % self._n

    def settled(self, round_: int) -> bool:
        return True

    def observe_commit(self, blocks: Sequence[Block]) -> None:
        pass

    def seed(self, blocks: Sequence[Block]) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the election keeps of a committed block."""

    height: int
    round: int
    author: int
    voted_round: int  # the parent's round, when `voters` voted
    voters: tuple[int, ...]

    @classmethod
    def of(cls, block: Block) -> _Entry:
        return cls(block.height, block.round, block.author, block.qc.round, block.qc.signers)


class _Pass:
    """One forward pass over a range of heights: who took part when, who failed when,
    and the candidates after each height. Failures are named by this pass alone."""

    def __init__(self, election: LeaderReputation, start: int) -> None:
        n = election.n
        self.election = election
        self.start = start
        self.part_round = [-1] * n
        self.part_height = [-1] * n
        self.fail_round = [-1] * n
        self.fail_height = [-1] * n
        self.rounds: list[int] = []  # of the heights start, start + 1, ... so far
        self.candidates: list[tuple[int, ...]] = []

    def add(self, entry: _Entry) -> tuple[int, ...]:
        assert entry.height == self.start + len(self.rounds)
        for round_ in self._named_skipped_rounds(entry.voted_round, entry.round):
            member = self._leader(round_)
            if round_ > self.fail_round[member]:
                self.fail_round[member] = round_
                self.fail_height[member] = entry.height
        for voter in entry.voters:
            self._participated(voter, entry.voted_round, entry.height)
        self._participated(entry.author, entry.round, entry.height)
        candidates = self._candidates(entry.height)
        self.rounds.append(entry.round)
        self.candidates.append(candidates)
        return candidates

    def _participated(self, member: int, round_: int, height: int) -> None:
        if round_ > self.part_round[member]:
            self.part_round[member] = round_
            self.part_height[member] = height

    def _leader(self, round_: int) -> int:
        """The leader of a skipped round, as this pass's history names it."""
        candidates = self.election.choose(round_, self.rounds, self.candidates)
        return candidates[round_ % len(candidates)]

    def _named_skipped_rounds(self, parent_round: int, round_: int) -> list[int]:
        """The skipped rounds whose leaders may be some member's latest failure. Past
        X + F rounds into a gap the leaders are plain round-robin, so its last n rounds
        name each of them once more, later: the middle of a long gap adds nothing."""
        election = self.election
        first = parent_round + 1
        early_end = min(round_, first + election.exclude_rounds + election.fallback_rounds)
        late_start = max(early_end, round_ - election.n)
        return [*range(first, early_end), *range(late_start, round_)]

    def _candidates(self, height: int) -> tuple[int, ...]:
        election = self.election
        low = max(self.start, height - election.window_blocks + 1)
        full = height - self.start + 1 >= election.window_blocks
        chosen: list[int] = []
        for member in range(election.n):
            active = self.part_height[member] >= low
            failed = self.fail_height[member] >= low
            if failed and (not active or self.part_round[member] < self.fail_round[member]):
                continue
            if full and not active:
                continue
            chosen.append(member)
        return tuple(chosen) if chosen else election.everyone


class LeaderReputation:
    """Reputation from committed blocks; round-robin until there is history."""

    def __init__(
        self,
        n: int,
        exclude_rounds: int = EXCLUDE_ROUNDS,
        window_blocks: int | None = None,
        fallback_rounds: int = FALLBACK_ROUNDS,
    ) -> None:
        assert n >= 1 and exclude_rounds >= 1
        self.n = n
        self.exclude_rounds = exclude_rounds
        self.window_blocks = default_window_blocks(n) if window_blocks is None else window_blocks
        self.fallback_rounds = fallback_rounds
        assert self.window_blocks >= 1 and self.fallback_rounds >= 0
        self.everyone = tuple(range(n))
        self._first_height = 1  # every committed block from here on is known
        self._last_height = 0
        self._last_round = 0
        self._last_id: bytes | None = None
        # Per committed block held, oldest first: what we keep of it, its round, the
        # candidates after it, and whether those are exact (computed from its whole pass).
        self._entries: list[_Entry] = []
        self._rounds: list[int] = []
        self._candidates: list[tuple[int, ...]] = []
        self._exact: list[bool] = []
        self._pass: _Pass | None = None

    @property
    def history_blocks(self) -> int:
        """How many of the last committed blocks `seed` needs to answer as a node that
        ran from genesis does, for every round above the last committed one."""
        return 2 * self.window_blocks + self.exclude_rounds + 2

    # ------------------------------------------------------------ questions

    def leader(self, round_: int) -> int:
        candidates = self.candidates(round_)
        return candidates[round_ % len(candidates)]

    def settled(self, round_: int) -> bool:
        cutoff = round_ - self.exclude_rounds
        if cutoff > self._last_round:
            return False  # a block of a round in between may be committed, unknown here
        i = bisect.bisect_right(self._rounds, cutoff) - 1
        if i < 0:
            # No block at or below the cutoff: it is genesis only if nothing was dropped.
            return self._first_height == 1 and (not self._entries or self._entries[0].height == 1)
        return self._exact[i]

    def candidates(self, round_: int) -> tuple[int, ...]:
        """Whom `leader(round_)` chooses among, in order. Not settled, this is the answer
        if nothing we have not seen was committed: right whenever we lag because nothing
        was."""
        return self.choose(round_, self._rounds, self._candidates)

    def choose(
        self, round_: int, rounds: Sequence[int], candidates: Sequence[tuple[int, ...]]
    ) -> tuple[int, ...]:
        """The candidates for `round_`, given committed blocks' rounds (ascending) and
        the candidates after each: those after the newest block at or below round_ - X,
        unless there is none or it is more than F rounds older than that."""
        cutoff = round_ - self.exclude_rounds
        i = bisect.bisect_right(rounds, cutoff) - 1
        if i < 0 or cutoff - rounds[i] > self.fallback_rounds:
            return self.everyone
        return candidates[i]

    @property
    def committed_height(self) -> int:
        return self._last_height

    @property
    def held_blocks(self) -> int:
        """Committed blocks held: fewer than 2 * `history_blocks`."""
        return len(self._entries)

    # ------------------------------------------------------------ history

    def observe_commit(self, blocks: Sequence[Block]) -> None:
        for block in blocks:
            if block.height <= self._last_height:
                continue  # already known (a seed overlapping the core's first commits)
            if block.height != self._last_height + 1:
                # A hole (the runtime jumped ahead by sync and did not seed us): start
                # over from here; answers are provisional until the ranges fill again.
                self._reset(first_height=block.height)
            elif self._last_id is not None:
                assert block.parent_id == self._last_id, "committed blocks do not chain"
            self._append(_Entry.of(block))
            self._last_id = block.id

    def seed(self, blocks: Sequence[Block]) -> None:
        """From the committed log, newest last: a restarted node passes the last
        `history_blocks` (or all of them, from height 1, if it has fewer)."""
        first = blocks[0].height if blocks else 1
        self._reset(first_height=first)
        self.observe_commit(blocks)

    def _reset(self, first_height: int) -> None:
        assert first_height >= 1
        self._first_height = first_height
        self._last_height = first_height - 1
        self._last_round = 0
        self._last_id = None
        self._entries = []
        self._rounds = []
        self._candidates = []
        self._exact = []
        self._pass = None

    def _range_start(self, height: int) -> int:
        """First height of the range before `height`'s own (ranges: 1..W, W+1..2W, ...)."""
        w = self.window_blocks
        return max(1, w * ((height - 1) // w - 1) + 1)

    def _append(self, entry: _Entry) -> None:
        start = self._range_start(entry.height)
        exact = start >= self._first_height
        start = max(start, self._first_height)
        run = self._pass
        if run is None or run.start != start:
            run = self._pass = _Pass(self, start)
            for old in self._entries:
                if old.height >= start:
                    run.add(old)
        self._entries.append(entry)
        self._rounds.append(entry.round)
        self._candidates.append(run.add(entry))
        self._exact.append(exact)
        self._last_height = entry.height
        self._last_round = entry.round
        excess = len(self._entries) - self.history_blocks
        if excess >= self.history_blocks:  # trim in batches: amortised O(1) per block
            del self._entries[:excess]
            del self._rounds[:excess]
            del self._candidates[:excess]
            del self._exact[:excess]
