"""Leader reputation on its own: fed committed chains built by hand.

`grow` plays a committee whose up members always vote and whose down members never do:
each round's leader (as the election names it) proposes if up, and its block is
committed at once, carrying the votes of the up members for its parent. Signatures are
never checked here, so blocks are cheap to make.
"""

from __future__ import annotations

import random

import pytest

from consensus.leader_election import (
    EXCLUDE_ROUNDS,
    FALLBACK_ROUNDS,
    LeaderElection,
    LeaderReputation,
    RoundRobin,
)
from consensus.types import Block, QuorumCert, genesis_block, genesis_qc

GENESIS = genesis_block(b"election-test")


def block(parent: Block, round_: int, author: int, voters: tuple[int, ...]) -> Block:
    qc = QuorumCert(parent.vote_data(), voters, tuple(bytes(64) for _ in voters))
    if parent.round == 0:
        qc = genesis_qc(parent)
    return Block(round_, parent.height + 1, round_, author, qc, (), b"")


def grow(
    election: LeaderElection,
    chain: list[Block],
    rounds: int,
    down: set[int],
    n: int,
) -> list[int]:
    """Run `rounds` more rounds; return the rounds that failed (their leader was down)."""
    failed = []
    tip = chain[-1] if chain else GENESIS
    start = tip.round + 1 if chain else 1
    for r in range(start, start + rounds):
        leader = election.leader(r)
        if leader in down:
            failed.append(r)
            continue
        voters = tuple(m for m in range(n) if m not in down)
        new = block(tip, r, leader, voters)
        chain.append(new)
        election.observe_commit([new])
        tip = new
    return failed


def test_without_history_it_is_round_robin() -> None:
    election = LeaderReputation(4)
    assert [election.leader(r) for r in range(12)] == [r % 4 for r in range(12)]
    assert all(election.settled(r) for r in range(EXCLUDE_ROUNDS + 1))
    # Further out a block may have been committed that this node has not seen.
    assert not election.settled(EXCLUDE_ROUNDS + 1)


def test_healthy_committee_stays_round_robin() -> None:
    election = LeaderReputation(4)
    chain: list[Block] = []
    assert grow(election, chain, 300, down=set(), n=4) == []
    last = chain[-1].round
    assert [election.leader(r) for r in range(last + 1, last + 9)] == [
        r % 4 for r in range(last + 1, last + 9)
    ]


def test_crashed_member_is_excluded_and_comes_back_when_it_votes() -> None:
    n = 4
    election = LeaderReputation(n)
    chain: list[Block] = []
    grow(election, chain, 50, down=set(), n=n)
    failed = grow(election, chain, 200, down={3}, n=n)
    # It fails as leader at most twice (the rounds before its first failure is committed
    # history older than EXCLUDE_ROUNDS), then never again.
    assert 1 <= len(failed) <= 2 and failed[-1] < chain[0].round + 50 + 2 * n + EXCLUDE_ROUNDS
    tip = chain[-1].round
    assert 3 not in election.candidates(tip + 1)
    assert all(election.leader(r) != 3 for r in range(tip + 1, tip + 1 + EXCLUDE_ROUNDS))
    # Back up: its votes reach the QCs of committed blocks, and it is chosen again.
    grow(election, chain, 2 * EXCLUDE_ROUNDS + 4, down=set(), n=n)
    assert 3 in election.candidates(chain[-1].round + 1)
    before = len(chain)
    grow(election, chain, 3 * n, down=set(), n=n)
    assert any(b.author == 3 for b in chain[before:])


def test_failure_alone_excludes_until_participation() -> None:
    """A member that failed once as leader is skipped until a later QC carries its vote
    (here it votes again at once, so it is skipped only for a few rounds)."""
    n = 4
    election = LeaderReputation(n)
    chain: list[Block] = []
    grow(election, chain, 40, down=set(), n=n)
    failed = grow(election, chain, 8, down={1}, n=n)  # it misses its turn
    assert failed
    skipped = failed[-1]
    grow(election, chain, 2 * EXCLUDE_ROUNDS, down=set(), n=n)
    assert 1 in election.candidates(chain[-1].round + 1)
    assert skipped not in [b.round for b in chain]


def test_silent_member_is_excluded_once_the_window_is_full() -> None:
    """Never seen at all: excluded as inactive once the window is full, even if the
    failure that first excluded it has aged out of the window."""
    n = 4
    election = LeaderReputation(n)
    chain: list[Block] = []
    failed = grow(election, chain, 10 * election.window_blocks, down={2}, n=n)
    assert len(failed) <= 2
    assert 2 not in election.candidates(chain[-1].round + 1)


def test_at_least_one_candidate_and_the_newest_author_stays() -> None:
    rng = random.Random(7)
    n = 7
    election = LeaderReputation(n)
    chain: list[Block] = []
    for _ in range(60):
        down = set(rng.sample(range(n), rng.randint(0, 6)))
        grow(election, chain, rng.randint(1, 15), down=down, n=n)
        if not chain:
            continue
        cutoff_round = chain[-1].round
        candidates = election.candidates(cutoff_round + EXCLUDE_ROUNDS)
        assert candidates
        assert chain[-1].author in candidates


def test_no_commit_for_long_falls_back_to_round_robin() -> None:
    """When the candidates do not produce commits, round-robin over everyone takes
    over: it needs no agreement on history to reach three honest leaders in a row."""
    n = 4
    election = LeaderReputation(n)
    chain: list[Block] = []
    grow(election, chain, 50, down=set(), n=n)
    grow(election, chain, 100, down={0}, n=n)
    tip = chain[-1].round
    assert 0 not in election.candidates(tip + EXCLUDE_ROUNDS)
    stalled = tip + EXCLUDE_ROUNDS + FALLBACK_ROUNDS + 1
    assert election.candidates(stalled) == (0, 1, 2, 3)
    assert [election.leader(r) for r in range(stalled, stalled + 4)] == [
        r % n for r in range(stalled, stalled + 4)
    ]


def test_same_blocks_same_leaders_however_they_arrive() -> None:
    n = 7
    reference = LeaderReputation(n)
    chain: list[Block] = []
    rng = random.Random(3)
    for _ in range(40):
        grow(reference, chain, rng.randint(1, 20), set(rng.sample(range(n), 2)), n)
    batched = LeaderReputation(n)
    i = 0
    while i < len(chain):
        step = rng.randint(1, 9)
        batched.observe_commit(chain[i : i + step])
        i += step
    tip = chain[-1].round
    rounds = range(tip - 20, tip + EXCLUDE_ROUNDS + 1)
    assert [batched.leader(r) for r in rounds] == [reference.leader(r) for r in rounds]


@pytest.mark.parametrize("n", [4, 7])
def test_seeded_from_the_log_tail_agrees_with_a_node_from_genesis(n: int) -> None:
    reference = LeaderReputation(n)
    chain: list[Block] = []
    rng = random.Random(n)
    for _ in range(80):
        grow(reference, chain, rng.randint(1, 12), set(rng.sample(range(n), (n - 1) // 3)), n)
    assert len(chain) > 3 * reference.history_blocks
    tip = chain[-1].round
    ahead = range(tip + 1, tip + EXCLUDE_ROUNDS + 1)  # every round a restarted node needs
    seeded = LeaderReputation(n)
    seeded.seed(chain[-seeded.history_blocks :])
    assert all(seeded.settled(r) for r in ahead)
    assert [seeded.leader(r) for r in ahead] == [reference.leader(r) for r in ahead]
    # Then both follow the same commits and keep agreeing.
    more: list[Block] = list(chain)
    grow(reference, more, 60, {1}, n)
    seeded.observe_commit(more[len(chain) :])
    tip = more[-1].round
    ahead = range(tip + 1, tip + EXCLUDE_ROUNDS + 1)
    assert [seeded.leader(r) for r in ahead] == [reference.leader(r) for r in ahead]


def test_a_short_seed_says_it_is_not_settled() -> None:
    n = 4
    reference = LeaderReputation(n)
    chain: list[Block] = []
    grow(reference, chain, 4 * reference.history_blocks, {2}, n)
    short = LeaderReputation(n)
    short.seed(chain[-reference.window_blocks :])
    tip = chain[-1].round
    assert not any(short.settled(r) for r in range(tip + 1, tip + EXCLUDE_ROUNDS + 1))
    # ... until it has committed two ranges of its own.
    grow(reference, chain, 3 * reference.history_blocks, {2}, n)
    short.observe_commit(chain[-3 * reference.history_blocks :])
    tip = chain[-1].round
    ahead = range(tip + 1, tip + EXCLUDE_ROUNDS + 1)
    assert all(short.settled(r) for r in ahead)
    assert [short.leader(r) for r in ahead] == [reference.leader(r) for r in ahead]


def test_a_hole_in_the_commits_restarts_the_history_unsettled() -> None:
    n = 4
    election = LeaderReputation(n)
    chain: list[Block] = []
    grow(election, chain, 100, set(), n)
    jumped = LeaderReputation(n)
    jumped.observe_commit(chain[:10])
    jumped.observe_commit(chain[50:60])  # heights 11..50 never seen: a sync jumped them
    assert jumped.committed_height == 60
    assert not jumped.settled(chain[59].round + 1)


def test_a_fork_in_committed_history_is_a_broken_invariant() -> None:
    election = LeaderReputation(4)
    b1 = block(GENESIS, 1, 1, ())
    election.observe_commit([b1])
    with pytest.raises(AssertionError):
        election.observe_commit([block(block(GENESIS, 2, 2, ()), 3, 3, (0, 1, 2))])


def test_memory_is_bounded() -> None:
    n = 4
    election = LeaderReputation(n)
    chain: list[Block] = []
    for i in range(50):
        grow(election, chain, 100, {i % n}, n)
        chain = chain[-1:]  # the test keeps only the tip; the election its window
        assert election.held_blocks < 2 * election.history_blocks
    assert election.committed_height > 20 * election.history_blocks


def test_settled_answers_never_change() -> None:
    """What a node has settled for a round stays its answer as history grows."""
    n = 7
    election = LeaderReputation(n)
    chain: list[Block] = []
    rng = random.Random(11)
    answered: dict[int, int] = {}
    for _ in range(100):
        grow(election, chain, rng.randint(1, 10), set(rng.sample(range(n), 2)), n)
        tip = chain[-1].round
        for r in range(tip - 10, tip + EXCLUDE_ROUNDS + 3):
            if election.settled(r):
                assert answered.setdefault(r, election.leader(r)) == election.leader(r)


def test_round_robin_is_a_leader_election() -> None:
    election: LeaderElection = RoundRobin(3)
    election.seed([])
    election.observe_commit([])
    assert [election.leader(r) for r in range(4)] == [0, 1, 2, 0]
    assert election.settled(10**9)
