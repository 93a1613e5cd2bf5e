"""The consensus replica: a pure state machine, events in, actions out.

API for the runtime (node/ drives this; node/sim/ drives it in tests):

    core = Core(committee, me, signer, CoreConfig(), recovery=None | Recovery(...))
    actions = core.handle(Start(), now_ms)                       # once
    actions = core.handle(MessageReceived(verifier.decode(peer, frame)), now_ms)
    actions = core.handle(TimerFired(round), now_ms)             # when a ScheduleTimeout is due
    actions = core.handle(PayloadReady(round, entries), now_ms)  # answers NeedPayload
    core.status()                                                # round, QC, commit height, leader

Events (consensus/events.py): Start, MessageReceived(Verified), TimerFired,
PayloadReady. Actions (consensus/actions.py): PersistSafety, PersistBlock, Send,
Broadcast, Commit, ScheduleTimeout, NeedPayload, Misbehavior.

Ordering contract: carry out the actions in list order. Persist actions always come
first in the list; they must be durable (fsync) before any Send/Broadcast of the same
list leaves the node. That is what makes a restarted node unable to equivocate: a vote
or timeout is never seen by a peer unless the safety record that forbids contradicting
it is on disk. Commits are emitted oldest first, each block exactly once.

Restart: build the core with `Recovery(safety, root, blocks, high_qc)` from storage:
the last durable safety record, the last committed block, the persisted blocks, and
the proof QC of the last commit. After `Start` the core re-derives any commit above
`root` that the recovered QCs prove, then syncs with peers.

Leader election (consensus/leader_election.py): pass one `LeaderReputation(n)` to both
the `Verifier` and the core (default: `RoundRobin`). The core feeds it every block it
commits, before returning the `Commit`. Before building a core from storage (start, or
after a sync that moved the root), seed it with the committed log's tail, newest last:
`election.seed(last election.history_blocks committed blocks)`. The core asks it who
leads a round to propose, to vote (only for that leader's block) and where to send its
vote (to everyone while the answer is not settled); safety never depends on the answer.

The core reads no clock (time is `now_ms`), draws no random numbers and does no I/O.
`BlockRequest`s from peers are answered from the in-memory tree; a runtime with
older blocks on disk may answer them itself with `block_store.serve_request`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.actions import (
    Action,
    Broadcast,
    Commit,
    Misbehavior,
    NeedPayload,
    PersistBlock,
    PersistSafety,
    ScheduleTimeout,
    Send,
    leads_persists,
)
from consensus.block_store import BlockStore, InsertStatus, Orphans
from consensus.committee import Committee
from consensus.crypto import Signer
from consensus.events import Event, MessageReceived, PayloadReady, Start, TimerFired
from consensus.leader_election import LeaderElection, RoundRobin
from consensus.pacemaker import NewRound, Pacemaker
from consensus.safety_data import SafetyData
from consensus.safety_rules import Refused, SafetyRules
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
    genesis_block,
    genesis_qc,
)
from consensus.votes import PendingTimeouts, PendingVotes, TimeoutStatus, VoteStatus


@dataclass(frozen=True, slots=True)
class CoreConfig:
    base_timeout_ms: int = 1000
    max_backoff_exponent: int = 6
    # A proposal's timestamp may be at most this far ahead of our clock for us to vote.
    max_clock_skew_ms: int = 500
    retrieval_batch: int = 64  # blocks asked per BlockRequest
    fetch_retry_ms: int = 200  # ask another peer when a BlockRequest got no answer
    max_future_rounds: int = 100  # votes/timeouts further ahead than this are dropped
    max_orphans: int = 4096
    # Deliberately broken variants, for the simulator's own tests only.
    unsafe_skip_vote_rules: bool = False
    unsafe_one_chain_commit: bool = False


@dataclass(frozen=True, slots=True)
class Recovery:
    safety: SafetyData
    root: Block  # the last committed block
    blocks: tuple[Block, ...] = ()  # persisted blocks; those not above `root` are ignored
    high_qc: QuorumCert | None = None  # the last Commit's proof; optional at genesis


@dataclass(frozen=True, slots=True)
class Status:
    round: int
    leader: int
    high_qc_round: int
    high_tc_round: int
    committed_round: int
    committed_height: int
    committed_id: bytes
    last_voted_round: int
    blocks_in_tree: int
    # The round of a block proven committed (a two-chain QC) that cannot be applied yet
    # because an ancestor is missing; 0 without one. Above `committed_round`, it means
    # the committee has committed past us: if our peers have pruned those ancestors,
    # only the committed log brings them (the runtime starts a log sync).
    pending_commit_round: int = 0


@dataclass(slots=True)
class _RoundWork:
    """Per-round bookkeeping of the leader and the voter; reset on each new round."""

    payload_asked: bool = False
    proposed: bool = False
    pending: tuple[Block, TimeoutCert | None] | None = None  # proposal waiting for parent
    synced_peers: set[int] = field(default_factory=set)


class Core:
    def __init__(
        self,
        committee: Committee,
        me: int,
        signer: Signer,
        config: CoreConfig | None = None,
        election: LeaderElection | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        assert committee.is_member(me)
        self._committee = committee
        self._me = me
        self._config = config = config or CoreConfig()
        self._election = RoundRobin(committee.n) if election is None else election
        if recovery is None:
            genesis = genesis_block(committee.chain_id)
            recovery = Recovery(SafetyData(), genesis, (), genesis_qc(genesis))
        self._safety = SafetyRules(
            committee, me, signer, recovery.safety, config.unsafe_skip_vote_rules
        )
        root = recovery.root
        high_qc = recovery.high_qc
        if high_qc is None and root.round == 0:
            high_qc = genesis_qc(root)
        assert high_qc is not None and high_qc.round >= root.round, "recovery needs a QC"
        self._store = BlockStore(root, high_qc)
        self._orphans = Orphans(config.max_orphans)
        self._recovered = sorted(recovery.blocks, key=lambda b: b.round)
        self._pacemaker = Pacemaker(
            config.base_timeout_ms, config.max_backoff_exponent, start_round=high_qc.round + 1
        )
        self._votes = PendingVotes(committee.quorum)
        self._timeouts = PendingTimeouts(committee.quorum)
        # A commit proven by a QC whose target block is still being fetched.
        self._pending_commit: tuple[bytes, int, QuorumCert] | None = None
        self._work = _RoundWork()
        self._work_round = 0
        self._persisted: SafetyData = recovery.safety
        self._started = False
        self._out: list[Action] = []
        self._now_ms = 0

    # ================================================================ API

    def handle(self, event: Event, now_ms: int) -> list[Action]:
        self._now_ms = now_ms
        if isinstance(event, Start):
            self._on_start()
        elif not self._started:
            pass  # nothing happens before Start
        elif isinstance(event, MessageReceived):
            self._on_message(event.verified.sender, event.verified.msg)
        elif isinstance(event, TimerFired):
            self._on_timer(event.round)
        else:
            assert isinstance(event, PayloadReady)
            self._on_payload(event.round, event.payload)
        out, self._out = self._out, []
        return _persist_first(out)

    def status(self) -> Status:
        root = self._store.root
        high_tc = self._pacemaker.high_tc
        return Status(
            round=self._pacemaker.round,
            leader=self._election.leader(self._pacemaker.round),
            high_qc_round=self._store.high_qc.round,
            high_tc_round=0 if high_tc is None else high_tc.round,
            committed_round=root.round,
            committed_height=root.height,
            committed_id=root.id,
            last_voted_round=self._safety.data.last_voted_round,
            blocks_in_tree=len(self._store),
            pending_commit_round=0 if self._pending_commit is None else self._pending_commit[1],
        )

    @property
    def me(self) -> int:
        return self._me

    # ================================================================ events

    def _on_start(self) -> None:
        if self._started:
            return
        self._started = True
        for block in self._recovered:
            self._add_block(block, source=None, persist=False)
        self._recovered = []
        self._observe_qc(self._store.high_qc, source=None)
        cert = self._safety.data.round_cert
        if isinstance(cert, QuorumCert):
            self._observe_qc(cert, source=None)
        elif cert is not None:
            self._observe_tc(cert, source=None)
        self._new_round(self._pacemaker.restart_timer(self._now_ms, self._store.root.round))

    def _on_message(self, sender: int, msg: Message) -> None:
        if isinstance(msg, Proposal):
            self._on_proposal(sender, msg)
        elif isinstance(msg, Vote):
            self._on_vote(msg)
        elif isinstance(msg, TimeoutMsg):
            self._on_timeout_msg(sender, msg)
        elif isinstance(msg, SyncInfo):
            self._observe_qc(msg.high_qc, sender)
            if msg.high_tc is not None:
                self._observe_tc(msg.high_tc, sender)
        elif isinstance(msg, BlockRequest):
            chain = self._store.chain(msg.block_id, msg.count)
            if chain:
                self._out.append(Send(sender, BlockResponse(chain)))
        else:
            assert isinstance(msg, BlockResponse)
            self._on_block_response(sender, msg)

    def _on_timer(self, round_: int) -> None:
        if round_ != self._pacemaker.round:
            return
        self._local_timeout()
        if self._pacemaker.round == round_:  # else a TC already moved us on (n = 1)
            self._new_round(self._pacemaker.restart_timer(self._now_ms, self._store.root.round))

    def _on_payload(self, round_: int, payload: tuple[bytes, ...]) -> None:
        work = self._work
        if round_ != self._pacemaker.round or not work.payload_asked or work.proposed:
            return
        if self._election.leader(round_) != self._me:
            return  # a commit since we asked changed who leads this round
        high_qc = self._store.high_qc
        parent = self._store.get(high_qc.block_id)
        tc = None
        if high_qc.round + 1 != round_:
            tc = self._pacemaker.high_tc
            if tc is None or tc.round + 1 != round_:
                return  # not justified; cannot happen for a round we entered by certificate
        if parent is None:
            work.payload_asked = False  # ask again once the new high QC's block is here
            return
        timestamp_ms = max(self._now_ms, parent.timestamp_ms + 1)
        signed = self._safety.sign_proposal(
            round_, parent.height + 1, timestamp_ms, high_qc, payload
        )
        if isinstance(signed, Refused):
            return
        work.proposed = True
        self._broadcast(Proposal(signed, tc))
        self._add_block(signed, source=None)
        self._maybe_vote(signed, tc)

    # ================================================================ messages

    def _on_proposal(self, sender: int, proposal: Proposal) -> None:
        block, tc = proposal.block, proposal.tc
        self._observe_qc(block.qc, sender)
        if tc is not None:
            self._observe_tc(tc, sender)
        current = self._pacemaker.round
        if block.round > current:
            return  # its QC/TC would have moved us here; unjustified, drop
        if block.parent_id in self._store and self._election.leader(block.round) != block.author:
            # With its parent here we have seen the commits its QC proves, as its author
            # had; without it we may lag, and `_maybe_vote` asks again once it is in.
            if block.round < current:
                self._send_sync(sender)
            return
        # Keep even a late block: the next leader may hold its QC (from the votes) and
        # need the block to extend it.
        status = self._add_block(block, sender)
        if block.round < current:
            self._send_sync(sender)
        elif status in (InsertStatus.INSERTED, InsertStatus.KNOWN):
            self._maybe_vote(block, tc)
        elif status is InsertStatus.MISSING_PARENT:
            self._work.pending = (block, tc)

    def _on_vote(self, vote: Vote) -> None:
        current = self._pacemaker.round
        # A vote for round r is useful to the leader of r + 1 until it leaves r + 1.
        if vote.round + 1 < current or vote.round > current + self._config.max_future_rounds:
            return
        result = self._votes.add(vote)
        if result.status is VoteStatus.EQUIVOCATION:
            self._out.append(Misbehavior(vote.author, f"equivocating vote in round {vote.round}"))
        elif result.status is VoteStatus.NEW_QC:
            assert result.qc is not None
            self._observe_qc(result.qc, source=vote.author)

    def _on_timeout_msg(self, sender: int, msg: TimeoutMsg) -> None:
        self._observe_qc(msg.high_qc, sender)
        if msg.last_tc is not None:
            self._observe_tc(msg.last_tc, sender)
        current = self._pacemaker.round
        if msg.round < current:
            self._send_sync(sender)
            return
        if msg.round > current + self._config.max_future_rounds:
            return
        self._add_timeout(msg)

    def _add_timeout(self, msg: TimeoutMsg) -> None:
        result = self._timeouts.add(msg)
        if result.status is TimeoutStatus.NEW_TC:
            assert result.tc is not None
            self._observe_tc(result.tc, source=None)
        elif (
            msg.round == self._pacemaker.round
            and result.count > self._committee.f
            and not self._pacemaker.timed_out
        ):
            # f + 1 timeouts include an honest one: the round is lost, join it at once
            # rather than wait for our own timer (Bracha-style echo).
            self._local_timeout()

    def _on_block_response(self, sender: int, response: BlockResponse) -> None:
        newest = response.blocks[0]
        if newest.id not in self._orphans.wanted:
            return  # unsolicited: its id is not anchored to any QC we verified
        for block in reversed(response.blocks):
            if block.id in self._store or block.id in self._orphans:
                continue
            self._add_block(block, sender)

    # ================================================================ certificates

    def _observe_qc(self, qc: QuorumCert, source: int | None) -> None:
        store = self._store
        if qc.round > store.root.round and qc.block_id not in store:
            self._fetch(qc.block_id, qc.round, source)
        store.observe_qc(qc)
        committed = False
        if self._config.unsafe_one_chain_commit:
            committed = self._try_commit(qc.block_id, qc.round, qc)
        elif qc.certifies_two_chain():
            committed = self._try_commit(qc.parent_id, qc.parent_round, qc)
        self._new_round(self._pacemaker.enter(qc.round + 1, self._now_ms, store.root.round))
        if committed:
            self._try_propose()  # the commit may have made us this round's leader

    def _observe_tc(self, tc: TimeoutCert, source: int | None) -> None:
        self._observe_qc(tc.high_qc, source)
        self._pacemaker.observe_tc(tc)
        self._new_round(self._pacemaker.enter(tc.round + 1, self._now_ms, self._store.root.round))

    def _try_commit(self, block_id: bytes, round_: int, proof: QuorumCert) -> bool:
        store = self._store
        if round_ <= store.root.round:
            return False
        if block_id not in store:
            pending = self._pending_commit
            if pending is None or pending[1] < round_:
                self._pending_commit = (block_id, round_, proof)
            return False
        blocks = store.commit(block_id)
        self._election.observe_commit(blocks)
        self._out.append(Commit(blocks, proof))
        self._orphans.prune(store.root.round)
        pending = self._pending_commit
        if pending is not None and pending[1] <= store.root.round:
            self._pending_commit = None
        return True

    def _retry_pending_commit(self) -> None:
        pending = self._pending_commit
        if pending is not None and pending[0] in self._store:
            self._pending_commit = None
            self._try_commit(*pending)

    # ================================================================ rounds

    def _new_round(self, new_round: NewRound | None) -> None:
        if new_round is None:
            return
        if new_round.round != self._work_round:
            self._work = _RoundWork()
            self._work_round = new_round.round
            self._votes.prune_below(new_round.round - 1)
            self._timeouts.prune_below(new_round.round)
        self._out.append(ScheduleTimeout(new_round.round, new_round.deadline_ms))
        self._retry_fetches()
        self._try_propose()

    def _try_propose(self) -> None:
        round_ = self._pacemaker.round
        work = self._work
        if work.payload_asked or self._election.leader(round_) != self._me:
            return
        parent_id = self._store.high_qc.block_id
        if parent_id not in self._store:
            return  # being fetched; retried when it is inserted
        work.payload_asked = True
        self._out.append(NeedPayload(round_, parent_id))

    def _local_timeout(self) -> None:
        signed = self._safety.sign_timeout(
            self._pacemaker.round, self._store.high_qc, self._pacemaker.high_tc
        )
        if isinstance(signed, Refused):
            return
        msg, record = signed
        self._pacemaker.timed_out = True
        self._persist(record)
        self._broadcast(msg)
        self._add_timeout(msg)

    def _maybe_vote(self, block: Block, tc: TimeoutCert | None) -> None:
        if block.round != self._pacemaker.round:
            return
        if block.author != self._election.leader(block.round):
            return  # by what we have committed now; safety does not depend on it
        if block.timestamp_ms > self._now_ms + self._config.max_clock_skew_ms:
            return  # from too far in our future; others will vote or the round times out
        signed = self._safety.vote(block, tc)
        if isinstance(signed, Refused):
            return
        vote, record = signed
        self._persist(record)
        next_round = block.round + 1
        if not self._election.settled(next_round):
            # Who leads next may hang on a commit we do not know yet, typically the one
            # the QC of these very votes proves. Every member aggregates them, so the
            # leader has the QC whoever it turns out to be (it costs n times the votes,
            # in the few rounds after a skip).
            self._broadcast(vote)
            self._on_vote(vote)
            return
        next_leader = self._election.leader(next_round)
        if next_leader == self._me:
            self._on_vote(vote)
        else:
            self._out.append(Send(next_leader, vote))

    def _broadcast(self, msg: Message) -> None:
        if self._committee.n > 1:  # alone, there is nobody to tell
            self._out.append(Broadcast(msg))

    def _persist(self, record: SafetyData) -> None:
        if record is not self._persisted:
            self._persisted = record
            self._out.append(PersistSafety(record))

    def _send_sync(self, peer: int) -> None:
        # Once per peer and round: a lagging peer gets our certificates, not a storm.
        if peer == self._me or peer in self._work.synced_peers:
            return
        self._work.synced_peers.add(peer)
        self._out.append(Send(peer, SyncInfo(self._store.high_qc, self._pacemaker.high_tc)))

    # ================================================================ blocks

    def _add_block(self, block: Block, source: int | None, persist: bool = True) -> InsertStatus:
        status = self._store.insert(block)
        if status is InsertStatus.MISSING_PARENT:
            if self._orphans.add(block):
                self._fetch(block.parent_id, block.qc.round, source)
        elif status is InsertStatus.INVALID:
            self._out.append(Misbehavior(block.author, f"invalid block in round {block.round}"))
        elif status is InsertStatus.INSERTED:
            self._on_inserted(block, persist)
        return status

    def _on_inserted(self, first: Block, persist: bool) -> None:
        stack = [first]
        while stack:
            block = stack.pop()
            if block is not first and self._store.insert(block) is not InsertStatus.INSERTED:
                continue
            self._orphans.wanted.pop(block.id, None)
            if persist or block is not first:
                self._out.append(PersistBlock(block))
            self._observe_qc(block.qc, source=None)
            stack.extend(self._orphans.children_of(block.id))
        self._retry_pending_commit()
        pending = self._work.pending
        if pending is not None and pending[0].id in self._store:
            self._work.pending = None
            self._maybe_vote(*pending)
        self._try_propose()

    def _fetch(self, block_id: bytes, round_: int, source: int | None) -> None:
        if block_id in self._orphans or self._committee.n == 1:
            return
        peer = self._pick_peer(source, 0)
        if self._orphans.want(block_id, round_, peer, self._now_ms):
            self._out.append(Send(peer, BlockRequest(block_id, self._config.retrieval_batch)))
        else:
            self._retry_fetches()

    def _retry_fetches(self) -> None:
        """Ask the next peer for each block whose request went unanswered for a while."""
        due_ms = self._now_ms - self._config.fetch_retry_ms
        for block_id, wanted in self._orphans.wanted.items():
            if wanted.asked_ms > due_ms:
                continue
            wanted.asked_ms = self._now_ms
            wanted.peer = self._pick_peer(wanted.peer, 1)
            request = BlockRequest(block_id, self._config.retrieval_batch)
            self._out.append(Send(wanted.peer, request))

    def _pick_peer(self, hint: int | None, step: int) -> int:
        """`hint` (who showed us the reference) first, then the next members in turn."""
        n = self._committee.n
        peer = (self._election.leader(self._pacemaker.round) if hint is None else hint) + step
        peer %= n
        if peer == self._me:
            peer = (peer + 1) % n
        return peer


def _persist_first(actions: list[Action]) -> list[Action]:
    """Persist actions before the messages they guard (stable), and only the last safety
    record: each record supersedes the previous one, so one fsync covers every signature
    in the list.

    A proposal leads even the persists: the record guards votes and timeouts, not
    proposals, and a leader's own vote for its block stays behind the fsync. So the block
    is on its way to the replicas while the leader syncs. A leader that crashes before the
    sync and proposes again in that round after a restart sends two blocks for one
    round, which voting tolerates (each replica votes once a round, so at most one of
    them can be certified)."""
    lead: list[Action] = []
    persists: list[Action] = []
    rest: list[Action] = []
    last_safety = None
    for action in actions:
        if isinstance(action, PersistSafety):
            last_safety = action
        elif isinstance(action, PersistBlock):
            persists.append(action)
        elif leads_persists(action):
            lead.append(action)
        else:
            rest.append(action)
    if last_safety is not None:
        persists.append(last_safety)
    return lead + persists + rest
