"""The replica state machine driven by hand: events in, actions out."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from consensus_testkit import Kit

from consensus.actions import (
    Action,
    Broadcast,
    Commit,
    NeedPayload,
    PersistBlock,
    PersistSafety,
    ScheduleTimeout,
    Send,
)
from consensus.core import Core, CoreConfig, Recovery
from consensus.events import MessageReceived, PayloadReady, Start, TimerFired
from consensus.safety_data import SafetyData
from consensus.types import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    TimeoutMsg,
    Vote,
)
from consensus.verifier import Verified
from node.sim.cluster import Knobs, Simulation
from node.sim.plan import FaultPlan


def receive(core: Core, sender: int, msg: Message, now_ms: int = 1000) -> list[Action]:
    return core.handle(MessageReceived(Verified(sender, msg)), now_ms)


def sent(actions: list[Action], kind: type) -> list[Message]:
    out: list[Message] = []
    for a in actions:
        if isinstance(a, Send | Broadcast) and isinstance(a.msg, kind):
            out.append(a.msg)
    return out


def test_single_member_commits_alone() -> None:
    kit = Kit(1)
    core = Core(kit.committee, 0, kit.signers[0])
    actions = core.handle(Start(), 0)
    committed: list[Block] = []
    for step in range(1, 8):
        asks = [a for a in actions if isinstance(a, NeedPayload)]
        assert len(asks) == 1
        actions = core.handle(PayloadReady(asks[0].round, (b"entry-%d" % step,)), step * 10)
        assert not [a for a in actions if isinstance(a, Send | Broadcast)]
        for a in actions:
            if isinstance(a, Commit):
                committed.extend(a.blocks)
    assert [b.height for b in committed] == list(range(1, len(committed) + 1))
    assert len(committed) == 6  # 7 blocks, all certified at once: QC(7) commits 6
    assert committed[0].payload == (b"entry-1",)
    status = core.status()
    assert status.committed_height == 6 and status.round == 8 and status.leader == 0


def test_vote_goes_to_next_leader_after_persisting() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 3, kit.signers[3])
    core.handle(Start(), 0)
    b1 = kit.chain(1)[1]
    actions = receive(core, 1, Proposal(b1, None))
    kinds = [type(a) for a in actions]
    assert kinds.index(PersistBlock) < kinds.index(PersistSafety) < kinds.index(Send)
    (vote,) = sent(actions, Vote)
    send = next(a for a in actions if isinstance(a, Send))
    assert send.to == 2 and isinstance(vote, Vote) and vote.vote_data.block_id == b1.id


def test_restart_from_record_never_signs_a_conflicting_vote() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 3, kit.signers[3])
    core.handle(Start(), 0)
    b1 = kit.chain(1)[1]
    actions = receive(core, 1, Proposal(b1, None))
    record = next(a.data for a in actions if isinstance(a, PersistSafety))
    (vote,) = sent(actions, Vote)
    recovery = Recovery(SafetyData.decode(record.encode()), kit.genesis, (b1,), kit.genesis_qc)
    restarted = Core(kit.committee, 3, kit.signers[3], recovery=recovery)
    restarted.handle(Start(), 2000)
    rival = kit.block(1, kit.genesis, payload=(b"rival",))  # the leader equivocates
    assert sent(receive(restarted, 1, Proposal(rival, None), 2000), Vote) == []
    assert sent(receive(restarted, 1, Proposal(b1, None), 2000), Vote) == [vote]


def test_missing_ancestors_are_fetched_then_committed() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 3, kit.signers[3])
    core.handle(Start(), 0)
    chain = kit.chain(4)
    actions = receive(core, 0, Proposal(chain[4], None))
    (request,) = sent(actions, BlockRequest)
    assert isinstance(request, BlockRequest) and request.block_id == chain[3].id
    assert next(a for a in actions if isinstance(a, Send)).to == 0  # the proposer has it
    # QC(3) proves round 2 committed, above our root, with its ancestors missing: the
    # runtime reads this as "the committee committed past us" and syncs the log.
    assert (core.status().pending_commit_round, core.status().committed_round) == (2, 0)
    actions = receive(core, 0, BlockResponse((chain[3], chain[2], chain[1])))
    assert core.status().pending_commit_round == 0
    persisted = [a.block.round for a in actions if isinstance(a, PersistBlock)]
    assert persisted == [1, 2, 3, 4]
    commits = [b.round for a in actions if isinstance(a, Commit) for b in a.blocks]
    assert commits == [1, 2]  # QC(3) in block 4 proves the 2-chain 2 <- 3
    (vote,) = sent(actions, Vote)
    assert isinstance(vote, Vote) and vote.round == 4
    # An unsolicited response is ignored.
    assert receive(core, 0, BlockResponse((chain[4],))) == []


def test_answers_block_requests_from_its_tree() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 3, kit.signers[3])
    core.handle(Start(), 0)
    b1 = kit.chain(1)[1]
    receive(core, 1, Proposal(b1, None))
    (response,) = sent(receive(core, 2, BlockRequest(b1.id, 5)), BlockResponse)
    assert response == BlockResponse((b1,))


def test_no_vote_for_a_block_from_the_future() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 3, kit.signers[3], CoreConfig(max_clock_skew_ms=500))
    core.handle(Start(), 0)
    b1 = kit.block(1, kit.genesis, timestamp_ms=10_000)
    assert sent(receive(core, 1, Proposal(b1, None), now_ms=9_000), Vote) == []
    assert len(sent(receive(core, 1, Proposal(b1, None), now_ms=9_500), Vote)) == 1


def test_timeouts_form_a_tc_and_move_the_round() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 3, kit.signers[3], CoreConfig(base_timeout_ms=1000))
    start = core.handle(Start(), 0)
    assert ScheduleTimeout(1, 1000) in start
    actions = core.handle(TimerFired(1), 1000)
    assert isinstance(actions[0], PersistSafety)
    (mine,) = sent(actions, TimeoutMsg)
    assert isinstance(mine, TimeoutMsg) and mine.round == 1
    receive(core, 0, kit.timeout(1, kit.genesis_qc, 0), 1001)
    actions = receive(core, 1, kit.timeout(1, kit.genesis_qc, 1), 1002)
    assert core.status().round == 2 and core.status().high_tc_round == 1
    assert any(isinstance(a, ScheduleTimeout) and a.round == 2 for a in actions)


def test_f_plus_one_timeouts_are_joined_at_once() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 3, kit.signers[3])
    core.handle(Start(), 0)
    assert sent(receive(core, 0, kit.timeout(1, kit.genesis_qc, 0), 10), TimeoutMsg) == []
    assert len(sent(receive(core, 1, kit.timeout(1, kit.genesis_qc, 1), 11), TimeoutMsg)) == 1


def test_leader_proposes_after_a_tc_with_the_tc() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 2, kit.signers[2])  # leader of round 2
    core.handle(Start(), 0)
    tc = kit.tc(1, [kit.genesis_qc] * 3)
    actions = receive(core, 0, kit.timeout(2, kit.genesis_qc, 0, tc))
    (ask,) = [a for a in actions if isinstance(a, NeedPayload)]
    actions = core.handle(PayloadReady(ask.round, (b"tx",)), 1001)
    (proposal,) = sent(actions, Proposal)
    assert isinstance(proposal, Proposal) and proposal.tc == tc and proposal.block.round == 2
    kit.verifier().verify(2, proposal)


def test_proposal_leaves_before_the_leaders_sync_and_its_vote_after() -> None:
    kit = Kit(4)
    core = Core(kit.committee, 1, kit.signers[1])  # leader of round 1, next leader is 2
    (ask,) = [a for a in core.handle(Start(), 0) if isinstance(a, NeedPayload)]
    actions = core.handle(PayloadReady(ask.round, (b"tx",)), 10)
    kinds = [type(a) for a in actions]
    proposal = next(i for i, a in enumerate(actions) if sent([a], Proposal))
    vote = next(i for i, a in enumerate(actions) if sent([a], Vote))
    assert proposal == 0 < kinds.index(PersistSafety) < vote
    record = next(a.data for a in actions if isinstance(a, PersistSafety))
    assert record.last_voted_round == 1  # the sync guards the leader's own vote


def quiet_plan(n: int, seed: int = 0) -> FaultPlan:
    return FaultPlan.calm(n, seed, down_ms=(50, 100), safety_ms=400)


@pytest.mark.parametrize(("n", "crypto"), [(1, "fast"), (4, "ed25519"), (7, "fast"), (10, "fast")])
def test_cluster_sizes_commit_in_step(n: int, crypto: str) -> None:
    sim = Simulation(quiet_plan(n), random.Random(0), Knobs(crypto=crypto))
    stats = sim.run()
    assert stats.min_honest_height >= 20, stats
    logs = {tuple(i.disk.log[:20]) for i in sim.instances}
    assert len(logs) == 1


class Scripted:
    """A leader election whose answers a test sets: round-robin unless `leaders` says
    otherwise, settled or not as `settled_from` says; it records the commits it is fed."""

    def __init__(self, n: int, leaders: dict[int, int] | None = None, settled_from: int = 0):
        self.n = n
        self.leaders = dict(leaders or {})
        self.settled_from = settled_from  # rounds below this are settled
        self.committed: list[Block] = []

    def leader(self, round_: int) -> int:
        return self.leaders.get(round_, round_ % self.n)

    def settled(self, round_: int) -> bool:
        return round_ < self.settled_from

    def observe_commit(self, blocks: Sequence[Block]) -> None:
        self.committed.extend(blocks)

    def seed(self, blocks: Sequence[Block]) -> None:
        self.committed = list(blocks)


def test_the_core_feeds_every_commit_to_its_election() -> None:
    kit = Kit(4)
    election = Scripted(4, settled_from=10**9)
    core = Core(kit.committee, 3, kit.signers[3], election=election)
    core.handle(Start(), 0)
    chain = kit.chain(5)
    committed: list[Block] = []
    for block in chain[1:]:
        for action in receive(core, block.author, Proposal(block, None)):
            if isinstance(action, Commit):
                committed.extend(action.blocks)
    assert [b.round for b in committed] == [1, 2, 3]
    assert election.committed == committed


def test_no_vote_for_a_proposal_by_whom_the_election_does_not_name() -> None:
    kit = Kit(4)
    election = Scripted(4, leaders={1: 2}, settled_from=10**9)
    core = Core(kit.committee, 3, kit.signers[3], election=election)
    core.handle(Start(), 0)
    by_one = kit.block(1, kit.genesis, author=1)
    assert sent(receive(core, 1, Proposal(by_one, None)), Vote) == []
    by_two = kit.block(1, kit.genesis, author=2)
    assert len(sent(receive(core, 2, Proposal(by_two, None)), Vote)) == 1


def test_an_unsettled_next_leader_gets_the_vote_from_everyone() -> None:
    """While the election cannot name the next leader for sure, the vote is broadcast:
    whoever leads next has the QC (the QC itself usually carries the deciding commit)."""
    kit = Kit(4)
    settled = Core(kit.committee, 3, kit.signers[3], election=Scripted(4, settled_from=10**9))
    settled.handle(Start(), 0)
    b1 = kit.chain(1)[1]
    actions = receive(settled, 1, Proposal(b1, None))
    assert [a.to for a in actions if isinstance(a, Send) and isinstance(a.msg, Vote)] == [2]
    unsettled = Core(kit.committee, 3, kit.signers[3], election=Scripted(4, settled_from=2))
    unsettled.handle(Start(), 0)
    actions = receive(unsettled, 1, Proposal(b1, None))
    assert [type(a.msg) for a in actions if isinstance(a, Broadcast)] == [Vote]
    assert not [a for a in actions if isinstance(a, Send) and isinstance(a.msg, Vote)]


def test_a_commit_that_changes_the_leader_cancels_our_proposal() -> None:
    kit = Kit(4)
    election = Scripted(4, settled_from=10**9)
    core = Core(kit.committee, 1, kit.signers[1], election=election)
    (ask,) = [a for a in core.handle(Start(), 0) if isinstance(a, NeedPayload)]
    election.leaders[ask.round] = 2  # what a commit in between would do
    assert sent(core.handle(PayloadReady(ask.round, (b"tx",)), 10), Proposal) == []


def test_reputation_cluster_commits_in_step() -> None:
    sim = Simulation(quiet_plan(4), random.Random(0), Knobs(election="reputation"))
    stats = sim.run()
    assert stats.min_honest_height >= 20 and stats.wrong_proposer == 0, stats
