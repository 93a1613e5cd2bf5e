"""One committee member at run time: the trio shell around the two pure cores.

Tasks (one nursery, see `Node.run`):
- transport: authenticated links to the other members (node/net/transport.py);
- dispatcher: reads peer messages, verifies them at the boundary (consensus signatures
  by `consensus.Verifier`, trader signatures of every payload entry by coincurve in a
  worker thread) and queues the verified ones for the consensus task;
- consensus: the only task that touches `Core`; it feeds events in and carries the
  actions out in order, persisting the safety record and new blocks (fsync) before any
  vote or timeout that follows them leaves the node;
- timer: one deadline, replaced by each `ScheduleTimeout`;
- proposer: answers `NeedPayload` with a batch from the mempool (cancels first);
- sync: when a proposal shows that we are far behind, fetches committed blocks from a
  peer, checks them by their QCs, executes them and restarts the core above them.

Execution: committed blocks go through the matching engine in order, exactly once each
(heights at or below `exec_height` are skipped, which makes a replayed `Commit` after a
crash harmless), are appended to the committed log, and wake clients waiting for them.

Peer messages are msgpack lists `[kind, …]`: `c` consensus message bytes, `i` forwarded
signed intents, `cps` checkpoint signatures, `sr`/`sp` committed-log sync request/response
(docs/PROTOCOL.md §9).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import structlog
import trio

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
from consensus.committee import Committee
from consensus.core import Core, CoreConfig, Recovery
from consensus.crypto import Ed25519Scheme, Ed25519Signer, sha256
from consensus.errors import InvalidMessage as ConsensusError
from consensus.events import Event, MessageReceived, PayloadReady, Start, TimerFired
from consensus.leader_election import RoundRobin
from consensus.safety_data import SafetyData
from consensus.types import (
    Block,
    Proposal,
    QuorumCert,
    SyncInfo,
    TimeoutMsg,
    Vote,
    VoteData,
    block_signing_bytes,
    encode_message,
    genesis_block,
    genesis_qc,
)
from consensus.verifier import Verified, Verifier
from matching.accounts import NONCE_FUTURE_MS, NONCE_PAST_MS
from matching.engine import BlockResult, Engine
from matching.events import Reason, Rejected
from node.api_facade import SubmitResult
from node.caches import ByteLRU
from node.chain_watcher import ChainWatcher, WatcherOptions
from node.checkpointer import Checkpointer, CheckpointerOptions, SignatureResult
from node.config import verify_threads_for
from node.genesis import NodeSetup
from node.intents import (
    MAX_INTENT_MSGPACK_BYTES,
    Entry,
    IntentError,
    SignedIntent,
    check_signer,
    pack_intent,
    unpack_intent,
    verify_intent,
)
from node.log import LogGate
from node.mempool import AddResult, Mempool, PoolItem
from node.net.transport import Peer, Transport, TransportConfig
from node.payload import (
    TAG_DEPOSIT,
    TAG_INTENT,
    BadEntry,
    decode_committed,
    decode_deposit,
    decode_entry,
    deposit_engine_entry,
    deposit_entry,
    encode_committed,
    intent_entry,
)
from node.peer_messages import (
    MAX_SYNC_BLOCKS,
    SYNC_REPLIES,
    CheckpointSignature,
    ConsensusBytes,
    ForwardedIntents,
    PeerMessage,
    PeerProtocolError,
    SnapshotChunk,
    SnapshotChunkRequest,
    SnapshotInfo,
    SnapshotInfoRequest,
    SyncReply,
    SyncRequest,
    decode_peer_message,
)
from node.ratelimit import NO_WAIT, RateLimit, TokenBuckets
from node.seam import Clock, NodeStorage, PeerNetwork, wall_ms
from node.storage import WriteBatch

log = structlog.get_logger("seqnet.node")

CANCEL_TYPES = frozenset(("cancel", "cancel_cloid", "cancel_all"))


@dataclass(frozen=True, slots=True)
class NodeOptions:
    idle_block_interval_ms: int = 250  # leader waits this long for entries when idle
    batch_wait_ms: int = 0  # extra wait to fill a block when entries are few
    max_block_bytes: int = 3 << 20
    snapshot_interval_blocks: int = 1000
    wal_checkpoint_interval_s: float = 1.0  # 0: none (a store without a WAL)
    sync_gap_rounds: int = 8  # a verified QC this many rounds above ours starts a log sync
    sync_batch_bytes: int = 2 << 20
    sync_timeout_s: float = 3.0
    join_wait_s: float = 1.0  # at start: how long to wait for a first peer to sync from
    snapshot_sync_gap_blocks: int = 5_000  # further behind than this: install a snapshot
    max_snapshot_bytes: int = 1 << 30
    verified_cache_bytes: int = 128 << 20  # verified entries waiting for their block
    bad_entry_cache_bytes: int = 16 << 20  # entries whose signature failed, by bytes
    sync_serve_per_s: float = 200.0  # sync and snapshot requests served per peer
    result_cache: int = 200_000
    max_forward_batch: int = 512
    inbox: int = 4096
    inbox_bytes: int = 64 << 20  # consensus messages waiting for the consensus task
    clock_skew_ms: int = 0  # test-only: pretend our clock is off by this much
    # test-only misbehaviour on dev chains (fault suite): "equivocate" (as leader, also
    # send a conflicting block to half the peers) or "double-vote" (vote twice a round)
    byzantine: str | None = None


class Node:
    def __init__(
        self,
        setup: NodeSetup,
        storage: NodeStorage,
        options: NodeOptions | None = None,
        *,
        network: PeerNetwork | None = None,
        clock: Clock = wall_ms,
    ) -> None:
        """`network` and `clock` are the I/O seam (node/seam.py): by default the TCP
        transport to the members in genesis and the wall clock."""
        self.setup = setup
        self._clock = clock
        self.options = options or NodeOptions()
        configured = setup.config.verify_threads
        self._verify_threads = (
            configured if configured is not None else verify_threads_for(members_on_host=1)
        )
        genesis = setup.genesis
        self.genesis = genesis
        self.domain = genesis.domain()
        self.genesis_hash = genesis.genesis_hash()
        self.me = setup.index
        self.n = len(genesis.members)
        self.committee = Committee(
            tuple(m.ed25519_pubkey for m in genesis.members), self.genesis_hash
        )
        self.election = RoundRobin(self.n)
        self.verifier = Verifier(self.committee, Ed25519Scheme(), self.election)
        self.signer = Ed25519Signer(bytes(setup.keys.identity))
        self.core_config = CoreConfig(base_timeout_ms=genesis.consensus.round_timeout_ms)
        self.storage = storage
        self.mempool = Mempool()
        self.watcher: ChainWatcher | None = None
        self.checkpointer: Checkpointer | None = None
        self._nursery: trio.Nursery | None = None
        self.engine, self.exec_height = self._restore_engine()
        self.core = self._build_core()
        self.transport: PeerNetwork = network or Transport(
            me=self.me,
            signing_key=setup.keys.identity,
            peers=self._peers(),
            genesis_hash=self.genesis_hash,
            config=TransportConfig(),
        )
        self.watcher, self.checkpointer = self._settlement()
        self._inbox_send, self._inbox = trio.open_memory_channel[Event](self.options.inbox)
        self._inbox_bytes = 0
        self._inbox_sizes: dict[int, int] = {}  # id(event) -> bytes, while it waits
        self._inbox_drained = trio.Event()
        # packed payload entry -> verified entry map (the engine's input), bounded LRU
        self._verified: ByteLRU[bytes, Entry] = ByteLRU(self.options.verified_cache_bytes)
        # entry bytes -> why its signature failed
        self._bad_entries: ByteLRU[bytes, str] = ByteLRU(self.options.bad_entry_cache_bytes)
        rate = self.options.sync_serve_per_s
        self._serving = TokenBuckets(RateLimit(rate, burst=rate), max_keys=self.n)
        self._peer_log = LogGate(interval_s=10.0)
        # blocks not committed yet: block id -> (parent id, intent ids, last deposit id or 0)
        self._inflight: dict[bytes, tuple[bytes, frozenset[bytes], int]] = {}
        # recent blocks: id -> (parent id, carried entries), for the proposer's pacing
        self._recent: OrderedDict[bytes, tuple[bytes, bool]] = OrderedDict()
        self._block_listeners: list[Callable[[ExecutedBlock], None]] = []
        self._joining = False
        self._snapshot_cache: tuple[int, bytes, bytes] | None = None
        self.halted: str | None = None
        self._max_peer_round = 0
        # None: no guard; -1: observing peers' rounds; R: withhold our signatures <= R
        self._guard_round: int | None = -1 if storage.load_safety() is None else None
        if self.options.byzantine is not None and genesis.chain_id != DEV_CHAIN_ID:
            raise ValueError("byzantine test modes run only on the dev chain id")
        self._storage_lock = trio.Lock()  # FIFO: committed-log writes in execution order
        # Outcomes of committed intents: height, and the engine's refusal if it refused.
        # Kept compact (one per committed intent); SubmitResults are built when asked.
        self._results: OrderedDict[bytes, tuple[int, Rejected | None]] = OrderedDict()
        self._waiters: dict[bytes, trio.Event] = {}
        self._mempool_nonempty = trio.Event()
        self._timer: tuple[int, int] | None = None  # (round, at_ms)
        self._timer_changed = trio.Event()
        self._proposing: int | None = None
        self._syncing = False
        self._sync_replies: trio.MemorySendChannel[tuple[int, Any]] | None = None
        self._highest_seen_height = self.exec_height
        self._ready = False
        self.started_ms = clock()
        self.counters: dict[str, int] = {
            "blocks_committed": 0,
            "entries_committed": 0,
            "proposals_rejected": 0,
            "peer_messages_rejected": 0,
            "intents_admitted": 0,
            "syncs": 0,
            "votes_sent": 0,
            "snapshot_syncs": 0,
            "sync_requests_throttled": 0,
            "timeouts": 0,
        }

    def _settlement(self) -> tuple[ChainWatcher | None, Checkpointer | None]:
        """The chain watcher and checkpointer, when this node is wired to a chain."""
        chain = self.setup.config.chain
        contract = self.genesis.settlement_contract
        if chain is None or contract is None:
            return None, None
        from web3 import HTTPProvider, Web3

        from contracts.settlement import Settlement

        def settlement() -> Settlement:
            return Settlement(
                Web3(HTTPProvider(chain.url, request_kwargs={"timeout": 10})), contract
            )

        watcher = ChainWatcher(
            settlement(),
            self.genesis.exchange.assets,
            WatcherOptions(
                confirmations=chain.confirmations,
                poll_interval_s=chain.poll_interval_s,
                start_block=chain.start_block,
            ),
        )
        checkpointer = Checkpointer.from_genesis(
            self.genesis,
            self.me,
            self.setup.keys.settlement.secret,
            settlement(),
            self.transport.broadcast,
            CheckpointerOptions(takeover_s=chain.takeover_s, poll_interval_s=chain.poll_interval_s),
        )
        return watcher, checkpointer

    def _peers(self) -> dict[int, Peer]:
        overrides = self.setup.config.peer_addresses
        peers = {}
        for i, m in enumerate(self.genesis.members):
            where = overrides.get(m.name)
            host, port = (m.host, m.consensus_port) if where is None else (where.host, where.port)
            peers[i] = Peer(host, port, m.ed25519_pubkey)
        return peers

    # ------------------------------------------------------------ recovery

    def _restore_engine(self) -> tuple[Engine, int]:
        snap = self.storage.latest_snapshot()
        if snap is None:
            engine, height = Engine(self.genesis.exchange), 0
        else:
            height, data = snap
            engine = Engine.restore(data)
        replayed = 0
        for h, record in self.storage.iter_committed(height + 1):
            block, signers = decode_committed(record)
            assert block.height == h, f"committed log height {h} holds block height {block.height}"
            entries = [_recorded_entry(e, s) for e, s in zip(block.payload, signers, strict=True)]
            self._run_block(engine, block, entries, live=False)
            height = h
            replayed += 1
        log.info(
            "engine restored", height=height, from_snapshot=snap is not None, replayed=replayed
        )
        return engine, height

    def _build_core(self, root: tuple[Block, QuorumCert] | None = None) -> Core:
        safety_raw = self.storage.load_safety()
        safety = SafetyData() if safety_raw is None else SafetyData.decode(safety_raw)
        if root is None:
            raw = self.storage.load_meta("root")
            if raw is None:
                genesis = genesis_block(self.committee.chain_id)
                root = (genesis, genesis_qc(genesis))
            else:
                block_wire, qc_wire = msgpack.unpackb(raw, raw=False)
                root = (Block.from_wire(block_wire), QuorumCert.from_wire(qc_wire))
        block, qc = root
        blocks = tuple(
            Block.from_wire(msgpack.unpackb(b, raw=False))
            for b in self.storage.load_blocks(block.round + 1)
        )
        recovery = Recovery(safety, block, blocks, qc)
        return Core(self.committee, self.me, self.signer, self.core_config, self.election, recovery)

    # ------------------------------------------------------------ run

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.transport.run)
            nursery.start_soon(self._dispatcher)
            nursery.start_soon(self._timer_task)
            if self.options.wal_checkpoint_interval_s > 0:
                nursery.start_soon(self._wal_checkpoints)
            if self.watcher is not None:
                self.watcher.applied(self.engine.last_deposit_id)
                nursery.start_soon(self.watcher.run)
            if self.checkpointer is not None:
                # The replayed checkpoints first: catch-up below hands it the live ones,
                # each exactly once and in order.
                for cp in self.engine.withdrawal_trees.checkpoints():
                    self.checkpointer.on_checkpoint(cp)
            await self._catch_up_first()
            if self.checkpointer is not None:
                nursery.start_soon(self.checkpointer.run)
            nursery.start_soon(self._consensus_task)
            if self._guard_round is not None:
                nursery.start_soon(self._guard_window)
            await self._inbox_send.send(Start())
            task_status.started()

    async def _catch_up_first(self) -> None:
        """Before joining consensus, catch up from peers: the committed log (or, far
        behind, a snapshot f + 1 peers agree on). Consensus messages are dropped meanwhile
        (the core resyncs afterwards). With no peer reachable (a committee starting
        together) it gives up quickly."""
        if self.n == 1:
            return
        self._joining = True
        try:
            with trio.move_on_after(self.options.join_wait_s):
                while not self.transport.connected_peers():
                    await trio.sleep(0.05)
            peers = sorted(self.transport.connected_peers())
            if peers:
                self._syncing = True
                await self._sync(peers[0], give_up_after=len(peers))
        finally:
            self._joining = False

    def now_ms(self) -> int:
        return self._clock() + self.options.clock_skew_ms

    async def _wal_checkpoints(self) -> None:
        """SQLite's fsyncs, off the event loop: the WAL is copied into the database from
        a worker thread, so no round waits for it (storage.py)."""
        while True:
            await trio.sleep(self.options.wal_checkpoint_interval_s)
            try:
                await trio.to_thread.run_sync(self.storage.checkpoint_wal)
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed", error=str(exc))

    async def _consensus_task(self) -> None:
        async for event in self._inbox:
            self._inbox_release(event)
            if self.halted is not None:
                continue  # storage failed: never sign from state we could not persist
            if isinstance(event, MessageReceived):
                self._observe_round(event.verified.msg)
            elif isinstance(event, TimerFired):
                self.counters["timeouts"] += 1
            try:
                actions = self.core.handle(event, self.now_ms())
            except Exception as exc:
                if not isinstance(event, MessageReceived) or event.verified.sender == self.me:
                    raise  # our own event broke an invariant of the core: stop
                # A verified message from a peer that the core could not take is a bug of
                # ours that the peer reached: contained to that peer, never the process.
                self._peer_fault(event.verified.sender, exc)
                continue
            try:
                await self._execute(actions)
            except (sqlite3.Error, OSError) as exc:
                self._halt(f"storage write failed: {exc}")

    def _halt(self, reason: str) -> None:
        """Stop voting, proposing and executing; keep serving status so operators see
        why (readyz turns 503). A restart after the operator fixed the disk resumes."""
        self.halted = reason
        self._ready = False
        log.error("node halted", reason=reason, alarm="storage_failure")

    def _observe_round(self, msg: object) -> None:
        round_ = _round_of(msg)
        if round_ is not None and round_ > self._max_peer_round:
            self._max_peer_round = round_

    def _guarded(self, msg: object) -> bool:
        """Whether to withhold one of our own signed messages. A node that started
        without a safety record (a wiped data directory) cannot know what it signed
        before: if the committee was already past round 2 when it came up, it stays
        silent up to the highest round it has seen from peers plus one, rounds in which
        it may have voted before the wipe."""
        if self._guard_round is None:
            return False
        round_ = _round_of(msg)
        if round_ is None:
            return False
        if self._guard_round < 0:  # still observing
            return True
        return round_ <= self._guard_round

    def _misbehave(self, msg: object) -> None:
        """Test-only Byzantine behaviour (dev chain only): sign a second, conflicting
        message in the same round and send it to the odd-numbered peers. Honest nodes
        must stay safe; the fault suite checks they never commit both."""
        chain_id = self.committee.chain_id
        others = [i for i in range(self.n) if i != self.me and i % 2 == 1]
        twin: Proposal | Vote | None = None
        modes = set((self.options.byzantine or "").split(","))
        if "equivocate" in modes and isinstance(msg, Proposal):
            b = msg.block
            if b.author == self.me:
                draft = Block(b.round, b.height, b.timestamp_ms + 1, b.author, b.qc, (), bytes(64))
                signature = self.signer.sign(block_signing_bytes(chain_id, draft.id))
                block = Block(b.round, b.height, b.timestamp_ms + 1, b.author, b.qc, (), signature)
                twin = Proposal(block, msg.tc)
        elif "double-vote" in modes and isinstance(msg, Vote) and msg.author == self.me:
            data = VoteData(
                sha256(msg.vote_data.block_id),
                msg.vote_data.round,
                msg.vote_data.parent_id,
                msg.vote_data.parent_round,
            )
            twin = Vote(data, self.me, self.signer.sign(data.signing_bytes(chain_id)))
        if twin is not None:
            log.warning("byzantine test mode: sent a conflicting message", kind=type(twin).__name__)
            for peer in others:
                self.transport.send(peer, ["c", encode_message(twin)])

    async def _guard_window(self) -> None:
        await trio.sleep(2 * self.genesis.consensus.round_timeout_ms / 1000)
        if self._max_peer_round <= 2:
            self._guard_round = None  # a fresh committee: nothing to guard
        else:
            self._guard_round = self._max_peer_round + 1
            log.warning(
                "no safety record: withholding votes up to a round seen from peers",
                until_round=self._guard_round,
            )

    async def _execute(self, actions: Sequence[Action]) -> None:
        """Carry out one event's actions in the core's order, with two exceptions that
        keep execution off a round's critical path: a payload we can fill at once goes
        straight back into the core (our proposal leaves without a task hop), and the
        committed blocks run through the engine last, after the votes and the proposal
        are on their way. Neither changes what is signed or persisted, or in what order:
        the core's next event still sees every commit applied."""
        commits: list[Commit] = []
        payload = await self._carry_out(actions, commits, inline=True)
        if payload is not None:
            # Once per event: alone (a committee of one) our proposal certifies itself
            # and asks for the next at once; that one goes through a task, after the
            # commits below, so the loop and the engine keep up.
            await self._carry_out(self.core.handle(payload, self.now_ms()), commits, inline=False)
        for commit in commits:
            await self._commit(commit.blocks, commit.proof)

    async def _carry_out(
        self, actions: Sequence[Action], commits: list[Commit], inline: bool
    ) -> PayloadReady | None:
        """Persist and act in order; collect the commits. Returns our block's payload when
        `inline` and it could be filled at once (else a task fills it later)."""
        blocks: list[tuple[bytes, int, bytes]] = []
        safety: SafetyData | None = None
        proposed = False
        payload: PayloadReady | None = None
        for action in actions:
            if isinstance(action, PersistSafety):
                safety = action.data
            elif isinstance(action, PersistBlock):
                b = action.block
                blocks.append((b.id, b.round, msgpack.packb(b.to_wire(), use_bin_type=True)))
                self._track_inflight(b)
            elif isinstance(action, Commit):
                commits.append(action)
            else:
                if safety is not None or blocks:
                    await self._persist(safety, blocks, proposed)
                    safety, blocks, proposed = None, [], False
                if isinstance(action, NeedPayload):
                    payload = self._need_payload(action, inline) or payload
                else:
                    await self._act(action)
                proposed = proposed or leads_persists(action)
        if safety is not None or blocks:
            await self._persist(safety, blocks, proposed)
        return payload

    def _need_payload(self, action: NeedPayload, inline: bool) -> PayloadReady | None:
        """Fill our block now when `inline` and work is waiting; else (idle, a batching
        wait, or not inline) in a task that feeds the core through the inbox."""
        if self._proposing == action.round:
            return None
        self._proposing = action.round
        if inline and not self._idle(action.parent_id) and not self.options.batch_wait_ms:
            return self._fill(action.round, action.parent_id)
        assert self._nursery is not None
        self._nursery.start_soon(self._propose, action.round, action.parent_id)
        return None

    async def _persist(
        self, safety: SafetyData | None, blocks: list[tuple[bytes, int, bytes]], proposed: bool
    ) -> None:
        # Inline rather than in a worker thread: this is on the critical path of every
        # round, and trio's thread hand-off costs more CPU than the fdatasync's wait
        # (docs/BENCHMARKS.md, cluster latency). When the core put our proposal ahead of
        # this persist, let the peer writers (woken by it) run first: two scheduler
        # batches, so the block is on the wire while we sync.
        if proposed:
            await trio.sleep(0)
            await trio.sleep(0)
        async with self._storage_lock:
            self.storage.write(
                WriteBatch(safety=None if safety is None else safety.encode(), blocks=blocks)
            )

    async def _act(self, action: Action) -> None:
        if isinstance(action, Send | Broadcast) and self._guarded(action.msg):
            return
        if self.options.byzantine is not None and isinstance(action, Send | Broadcast):
            self._misbehave(action.msg)
        if isinstance(action, Send) and isinstance(action.msg, Vote):
            self.counters["votes_sent"] += 1
        if isinstance(action, Send):
            if action.to == self.me:
                await self._inbox_send.send(MessageReceived(Verified(self.me, action.msg)))
            else:
                self.transport.send(action.to, ["c", encode_message(action.msg)])
        elif isinstance(action, Broadcast):
            self.transport.broadcast(["c", encode_message(action.msg)])
        elif isinstance(action, ScheduleTimeout):
            self._timer = (action.round, action.at_ms)
            self._timer_changed.set()
        elif isinstance(action, Misbehavior):
            log.warning("peer misbehaviour", author=action.author, what=action.what)

    async def _timer_task(self) -> None:
        while True:
            self._timer_changed = trio.Event()
            timer = self._timer
            if timer is None:
                await self._timer_changed.wait()
                continue
            round_, at_ms = timer
            delay_s = max(0.0, (at_ms - self.now_ms()) / 1000)
            with trio.move_on_after(delay_s):
                await self._timer_changed.wait()
                continue
            if self._timer == timer:
                self._timer = None
                await self._inbox_send.send(TimerFired(round_))

    # ------------------------------------------------------------ proposing

    def _track_inflight(self, block: Block) -> None:
        parent = block.qc.vote_data.block_id
        deposits = [e for e in block.payload if e[:1] == _TAG_DEPOSIT_BYTE]
        last_deposit = decode_deposit(deposits[-1]).deposit_id if deposits else 0
        self._inflight[block.id] = (
            parent,
            frozenset(self._intent_id(raw) for raw in block.payload),
            last_deposit,
        )
        self._recent[block.id] = (parent, bool(block.payload))
        if len(self._recent) > 10_000:
            self._recent.popitem(last=False)

    def _intent_id(self, raw: bytes) -> bytes:
        entry = self._verified.get(raw)
        if entry is not None:
            return entry.intent_id
        try:
            return decode_entry(raw).digest(self.domain)
        except BadEntry:
            return raw

    def _pending_entries(self, parent_id: bytes) -> set[bytes]:
        """Intent ids carried by the uncommitted ancestors of a block we would extend."""
        pending: set[bytes] = set()
        for _ in range(1000):
            link = self._inflight.get(parent_id)
            if link is None:
                break
            parent_id, ids, _ = link
            pending |= ids
        return pending

    def _recent_activity(self, parent_id: bytes, depth: int = 3) -> bool:
        """Whether one of the last `depth` blocks carried entries: then the next rounds
        must follow at once, to certify and commit it and to tell everyone it committed."""
        for _ in range(depth):
            link = self._recent.get(parent_id)
            if link is None:
                return False
            parent_id, nonempty = link
            if nonempty:
                return True
        return False

    def _idle(self, parent_id: bytes) -> bool:
        """Nothing waiting in the mempool and nothing uncommitted above the root."""
        return not len(self.mempool) and not self._recent_activity(parent_id)

    async def _propose(self, round_: int, parent_id: bytes) -> None:
        """Fill our block after a wait: when idle, until entries arrive or the idle
        interval ends, so that an idle committee does not spin; else the batching wait.
        (With work waiting and no batching wait, `_need_payload` fills it inline.)"""
        if self._idle(parent_id):
            with trio.move_on_after(self.options.idle_block_interval_ms / 1000):
                await self._mempool_nonempty.wait()
        elif self.options.batch_wait_ms:
            await trio.sleep(self.options.batch_wait_ms / 1000)
        await self._inbox_send.send(self._fill(round_, parent_id))

    def _fill(self, round_: int, parent_id: bytes) -> PayloadReady:
        """Our block's payload: deposits first, then mempool entries (cancels first) not
        already carried by an uncommitted ancestor."""
        exclude = self._pending_entries(parent_id)
        limit = self.genesis.consensus.max_block_entries
        deposits: list[bytes] = []
        if self.watcher is not None:
            # Deposits first, and only ones old enough that the other members' watchers
            # have probably seen them too (a replica votes only for deposits it saw).
            after = self._deposit_tip(parent_id)
            min_age_s = (
                2 * self.setup.config.chain.poll_interval_s if self.setup.config.chain else 0
            )
            records = self.watcher.next_deposits(after, max(1, limit // 10), min_age_s)
            deposits = [deposit_entry(r) for r in records]
        items = self.mempool.take_batch(
            limit - len(deposits), self.options.max_block_bytes, exclude={*exclude}
        )
        if not len(self.mempool):
            self._mempool_nonempty = trio.Event()
        return PayloadReady(round_, (*deposits, *(i.entry for i in items)))

    # ------------------------------------------------------------ peer messages

    async def _dispatcher(self) -> None:
        """Every peer message passes the typed boundary (node/peer_messages.py), then its
        handler. Whatever goes wrong while handling one peer's message is that peer's
        problem: the message is dropped, the peer is penalized (the transport disconnects
        a repeat offender with back-off) and it is logged at most once per interval. The
        process stops only on our own storage failure."""
        async for peer, raw in self.transport.inbound:
            try:
                await self._on_peer_message(peer, decode_peer_message(raw))
            except (sqlite3.Error, OSError) as exc:
                self._halt(f"storage failed while serving peer {peer}: {exc}")
            except Exception as exc:  # contained to the peer that sent it (see docstring)
                self._peer_fault(peer, exc)

    async def _on_peer_message(self, peer: int, message: PeerMessage) -> None:
        if isinstance(message, ConsensusBytes):
            await self._on_consensus(peer, message.data)
        elif isinstance(message, ForwardedIntents):
            packed = message.packed
            intents = [unpack_intent(raw) for raw in packed]
            await self._admit(intents, False, [intent_entry(raw) for raw in packed])
        elif isinstance(message, CheckpointSignature):
            if self.checkpointer is not None:
                result = self.checkpointer.on_peer_signature(peer, message.message)
                if result in (SignatureResult.BAD_SIGNATURE, SignatureResult.MALFORMED):
                    raise PeerProtocolError(f"checkpoint signature: {result.value}")
        elif isinstance(message, SYNC_REPLIES):
            if self._sync_replies is not None:  # else: a late answer, ignored
                # The sync reads one answer at a time; one more is noise, dropped.
                with contextlib.suppress(trio.WouldBlock):
                    self._sync_replies.send_nowait((peer, message))
        elif self._serving.take(peer, 1, trio.current_time()) != NO_WAIT:
            self.counters["sync_requests_throttled"] += 1
        elif isinstance(message, SyncRequest):
            self._serve_sync(peer, message.from_height, message.limit)
        elif isinstance(message, SnapshotInfoRequest):
            self._serve_snapshot_info(peer)
        else:
            assert isinstance(message, SnapshotChunkRequest)
            self._serve_snapshot_chunk(peer, message.height, message.offset)

    def _peer_fault(self, peer: int, exc: Exception) -> None:
        """Count a peer's bad message against it. Our own decoders raise the expected
        kinds; anything else is a bug of ours that a peer's input reached: still
        contained, but logged as an error with its traceback."""
        self.counters["peer_messages_rejected"] += 1
        expected = isinstance(exc, _PEER_ERRORS)
        self.transport.penalize(peer, f"{type(exc).__name__}: {exc}"[:200])
        suppressed = self._peer_log.allow((peer, expected), trio.current_time())
        if suppressed is None:
            return
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
        if expected:
            log.warning("peer message rejected", peer=peer, error=error, suppressed=suppressed)
        else:
            log.error(
                "peer message raised",
                peer=peer,
                error=error,
                suppressed=suppressed,
                exc_info=exc,
            )

    async def _on_consensus(self, peer: int, data: bytes) -> None:
        if self._joining:
            return  # catching up first; the core resyncs with peers once it starts
        verified = self.verifier.decode(peer, data)
        msg = verified.msg
        self._maybe_sync(peer, msg)
        if isinstance(msg, Proposal):
            block = msg.block
            current = self.core.status().round
            if block.round < current - 1:
                return  # too late to be certified; the core would only store it
            if block.round >= current and not await self._proposal_payload_ok(block):
                return
        event = MessageReceived(verified)
        await self._inbox_reserve(event, len(data))
        await self._inbox_send.send(event)

    async def _inbox_reserve(self, event: Event, size: int) -> None:
        """The peer messages waiting for the consensus task are bounded in bytes: past
        `inbox_bytes` the dispatcher waits, the transport stops reading, and TCP pushes
        back on the senders (their own queues drop the oldest)."""
        while self._inbox_bytes and self._inbox_bytes + size > self.options.inbox_bytes:
            self._inbox_drained = trio.Event()
            await self._inbox_drained.wait()
        self._inbox_bytes += size
        self._inbox_sizes[id(event)] = size

    def _inbox_release(self, event: Event) -> None:
        size = self._inbox_sizes.pop(id(event), 0)
        if size:
            self._inbox_bytes -= size
            self._inbox_drained.set()

    def _maybe_sync(self, peer: int, msg: object) -> None:
        """Start a log sync when a verified QC proves the committee is far ahead of us.
        Heights in a block are only its author's claim, so they never start a sync; a
        QC carries 2f + 1 signatures. `peer` sent it, so it is asked first."""
        qc: QuorumCert | None = None
        if isinstance(msg, Proposal):
            qc = msg.block.qc
        elif isinstance(msg, TimeoutMsg | SyncInfo):
            qc = msg.high_qc
        if qc is None:
            return
        status = self.core.status()
        if qc.round > status.high_qc_round + self.options.sync_gap_rounds:
            self._start_sync(peer)

    async def _proposal_payload_ok(self, block: Block) -> bool:
        """Checks before our vote on a current-round proposal: sizes first (free), then
        deposits, then the trader signatures."""
        payload = block.payload
        limit = self.genesis.consensus.max_block_entries
        size = sum(map(len, payload))
        if len(payload) > limit or size > self.options.max_block_bytes:
            self.counters["proposals_rejected"] += 1
            raise PeerProtocolError(
                f"proposal of round {block.round}: {len(payload)} entries, {size} bytes "
                f"(limits {limit}, {self.options.max_block_bytes})"
            )
        try:
            deposits_ok = self._check_deposits(block)
        except BadEntry:
            deposits_ok = False
        if not deposits_ok:
            # Perhaps our watcher is behind, perhaps the leader lies: either way no vote.
            log.info("proposal with deposits we have not seen", round=block.round)
            return False
        self._highest_seen_height = max(self._highest_seen_height, block.height)
        bad = await self._check_payload(payload)
        if bad is not None:
            self.counters["proposals_rejected"] += 1
            raise PeerProtocolError(
                f"proposal of round {block.round} by {block.author}: invalid entry ({bad})"
            )
        return True

    def _deposit_tip(self, block_id: bytes) -> int:
        """The last deposit id applied once `block_id` and its uncommitted ancestors are."""
        for _ in range(1000):
            link = self._inflight.get(block_id)
            if link is None:
                break
            block_id, _, last_deposit = link
            if last_deposit:
                return last_deposit
        return self.engine.last_deposit_id

    def _check_deposits(self, block: Block) -> bool:
        """Deposit entries come first, continue the parent chain's deposit ids without a
        gap, and each is exactly what our own watcher saw with enough confirmations."""
        deposits = [e for e in block.payload if e[:1] == _TAG_DEPOSIT_BYTE]
        if not deposits:
            return True
        if self.watcher is None or any(
            e[:1] == _TAG_DEPOSIT_BYTE for e in block.payload[len(deposits) :]
        ):
            return False
        expected = self._deposit_tip(block.qc.vote_data.block_id) + 1
        for raw in deposits:
            record = decode_deposit(raw)
            if record.deposit_id != expected or self.watcher.seen(record.deposit_id) != record:
                return False
            expected += 1
        return True

    async def _check_payload(self, payload: tuple[bytes, ...]) -> str | None:
        """Every intent entry decodes and carries a valid trader signature; None when
        all do, else why the first bad one is bad. Good entries are cached by their
        bytes (digest and signature), and so are bad ones, so a replayed bad payload
        costs no recovery. Deposit entries are checked by `_check_deposits`."""
        todo: list[bytes] = []
        for e in payload:
            if e[:1] == _TAG_DEPOSIT_BYTE or e in self._verified:
                continue
            if len(e) > MAX_ENTRY_BYTES:
                return f"entry of {len(e)} bytes (at most {MAX_ENTRY_BYTES})"
            known_bad = self._bad_entries.get(e)
            if known_bad is not None:
                return known_bad
            todo.append(e)
        if not todo:
            return None
        decoded: list[tuple[bytes, SignedIntent]] = []
        for e in todo:
            try:
                decoded.append((e, decode_entry(e)))
            except BadEntry as exc:
                return self._remember_bad(e, f"undecodable entry: {exc}")
        results = await self._verify([si for _, si in decoded])
        bad: str | None = None
        for (raw, _), result in zip(decoded, results, strict=True):
            if isinstance(result, IntentError):
                bad = bad or self._remember_bad(raw, f"{result.code}: {result.message}")
            else:
                self._remember(raw, result)
        return bad

    def _remember_bad(self, raw: bytes, why: str) -> str:
        self._bad_entries.put(raw, why, len(raw))
        return why

    async def _verify(
        self, intents: list[SignedIntent], digests: list[bytes] | None = None
    ) -> list[Entry | IntentError]:
        """Recover every signer; `digests` (the intent ids) when already computed."""
        domain = self.domain
        known: list[bytes | None] = list(digests) if digests else [None] * len(intents)
        pairs = list(zip(intents, known, strict=True))

        def verify_all(batch: list[tuple[SignedIntent, bytes | None]]) -> list[Entry | IntentError]:
            out: list[Entry | IntentError] = []
            for si, digest in batch:
                try:
                    out.append(verify_intent(si, domain, digest=digest))
                except IntentError as exc:
                    out.append(exc)
            return out

        threads = self._verify_threads
        if threads < 2 or len(pairs) < 64:
            return verify_all(pairs)
        # coincurve releases the GIL around each recovery: one thread per core.
        step = -(-len(pairs) // threads)
        parts = [pairs[i : i + step] for i in range(0, len(pairs), step)]
        results: list[list[Entry | IntentError]] = [[] for _ in parts]

        async def part(i: int) -> None:
            results[i] = await trio.to_thread.run_sync(verify_all, parts[i])

        async with trio.open_nursery() as nursery:
            for i in range(len(parts)):
                nursery.start_soon(part, i)
        return [r for chunk in results for r in chunk]

    def _remember(self, raw: bytes, entry: Entry) -> None:
        self._verified.put(raw, entry, len(raw))

    # ------------------------------------------------------------ intake (NodeFacade)

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        results = await self._admit(intents, forward=True)
        if wait:
            with trio.move_on_after(timeout_s):
                for i, result in enumerate(results):
                    if result.status == "accepted":
                        results[i] = await self._wait_committed(result.intent_id)
            results = [
                SubmitResult(r.intent_id, "timeout", None, "not committed in time", None)
                if r.status == "accepted"
                else r
                for r in results
            ]
        return results

    async def _admit(
        self, intents: list[SignedIntent], forward: bool, raws: list[bytes] | None = None
    ) -> list[SubmitResult]:
        """Verify (once per node: cached by entry bytes), check that the signer may sign
        for the account as of our latest executed state, check the replay window, admit
        to the mempool, and forward what is new to the other members. `forward` is False
        for intents a peer forwarded: then nothing is forwarded, and intents admitted
        have no result in the list (nobody reads them).

        Nothing is set aside by its intent id before its signer is known: the id does not
        cover the signature, so a copy with a damaged signature shares it and recovers
        some other key. That copy, or any forgery, is refused here (`unauthorized_signer`)
        before it can take a mempool slot, be forwarded or be charged to anyone; only an
        outcome already committed for the id answers early, and `_apply` records those
        for authorized entries only."""
        if raws is None:
            raws = [intent_entry(pack_intent(si)) for si in intents]
        results: list[SubmitResult | None] = [None] * len(intents)
        entries: list[tuple[int, Entry, bytes]] = []
        fresh: list[tuple[int, SignedIntent, bytes]] = []
        fresh_ids: list[bytes] = []
        for i, (si, raw) in enumerate(zip(intents, raws, strict=True)):
            known = self._verified.get(raw)
            intent_id = known.intent_id if known is not None else si.digest(self.domain)
            done = self._result(intent_id)
            if done is not None:
                results[i] = replace(done, duplicate=True)
            elif known is not None:
                entries.append((i, known, raw))
            else:
                fresh.append((i, si, raw))
                fresh_ids.append(intent_id)
        verified = await self._verify([si for _, si, _ in fresh], fresh_ids)
        for (i, _, raw), intent_id, entry in zip(fresh, fresh_ids, verified, strict=True):
            if isinstance(entry, IntentError):
                results[i] = SubmitResult(intent_id, "rejected", entry.code, entry.message, None)
            else:
                entries.append((i, entry, raw))
        admitted = 0
        fresh_raws: list[bytes] = []  # to forward
        now = self.now_ms()
        is_authorized = self.engine.is_authorized  # read after the await: the latest state
        for i, entry, raw in entries:
            try:
                check_signer(entry, is_authorized)
            except IntentError as error:
                results[i] = SubmitResult(entry.intent_id, "rejected", error.code, error.message)
                continue
            self._remember(raw, entry)  # authorized only: forgeries evict nothing
            if not now - NONCE_PAST_MS <= entry.nonce <= now + NONCE_FUTURE_MS:
                message = f"nonce {entry.nonce} is not a millisecond time within the replay window"
                results[i] = SubmitResult(
                    entry.intent_id, "rejected", "nonce_out_of_window", message
                )
                continue
            is_cancel = entry.action["type"] in CANCEL_TYPES
            added = self.mempool.add(
                PoolItem(entry.intent_id, entry.account, entry.signer, entry.nonce, is_cancel, raw)
            )
            if added is AddResult.ADDED:
                admitted += 1
                if forward:  # else a peer's forward: nobody reads the results
                    results[i] = SubmitResult(entry.intent_id, "accepted")
                    fresh_raws.append(raw[1:])
            elif added is AddResult.DUPLICATE:
                pending = self.mempool.pending(entry.signer, entry.nonce)
                if pending is None or pending.intent_id == entry.intent_id:
                    results[i] = SubmitResult(entry.intent_id, "accepted", duplicate=True)
                else:
                    message = f"another pending intent of this signer has nonce {entry.nonce}"
                    results[i] = SubmitResult(
                        entry.intent_id, "rejected", "duplicate_nonce", message
                    )
            else:
                results[i] = SubmitResult(
                    entry.intent_id, "rejected", added.value, _FULL_MESSAGES[added]
                )
        if admitted:
            self.counters["intents_admitted"] += admitted
            self._mempool_nonempty.set()
            step = self.options.max_forward_batch
            for start in range(0, len(fresh_raws), step):
                self.transport.broadcast(["i", fresh_raws[start : start + step]])
        return [r for r in results if r is not None]

    async def _wait_committed(self, intent_id: bytes) -> SubmitResult:
        result = self._result(intent_id)
        if result is not None:
            return result
        event = self._waiters.get(intent_id)
        if event is None:
            event = self._waiters[intent_id] = trio.Event()
        await event.wait()
        return self._result(intent_id) or SubmitResult(intent_id, "accepted", None, None, None)

    def _result(self, intent_id: bytes) -> SubmitResult | None:
        """The outcome of a committed intent (None: not committed, or forgotten). An entry
        the engine refused (no funds, replayed nonce…) was committed all the same; it is
        reported as rejected, with the height at which that was decided."""
        done = self._results.get(intent_id)
        if done is None:
            return None
        height, rejected = done
        if rejected is None:
            return SubmitResult(intent_id, "committed", None, None, height)
        return SubmitResult(intent_id, "rejected", rejected.code, rejected.message, height)

    def is_ready(self) -> bool:
        return self._ready

    def status(self) -> dict[str, Any]:
        s = self.core.status()
        return {
            "node": self.setup.member.name,
            "index": self.me,
            "round": s.round,
            "leader": s.leader,
            "high_qc_round": s.high_qc_round,
            "committed_height": self.exec_height,
            "consensus_committed_height": s.committed_height,
            "highest_seen_height": self._highest_seen_height,
            "lag": max(0, self._highest_seen_height - self.exec_height),
            "peers": len(self.transport.connected_peers()),
            "mempool": len(self.mempool),
            "syncing": self._syncing,
            "halted": self.halted,
            "vote_guard_round": self._guard_round,
            "last_deposit_id": self.engine.last_deposit_id,
            "checkpoint_sequence": self.engine.sequence,
            "chain": None if self.watcher is None else _jsonable(self.watcher.status()),
            "checkpointer": None
            if self.checkpointer is None
            else _jsonable(self.checkpointer.status()),
            **self.counters,
        }

    # ------------------------------------------------------------ queries (QueryFacade)

    def account(self, address: bytes) -> dict[str, Any]:
        engine = self.engine
        balances = {}
        for asset in self.genesis.exchange.assets:
            available, locked = engine.balance(address, asset.id)
            balances[asset.symbol] = {"asset": asset.id, "available": available, "locked": locked}
        orders = [
            {
                "oid": o.oid,
                "market": o.book.id,
                "side": "buy" if o.is_buy else "sell",
                "price": o.price,
                "size": o.size,
                "cloid": o.cloid,
                "expires_ms": o.expires_ms,
            }
            for o in engine.open_orders(address)
        ]
        return {
            "address": _hex(address),
            "height": self.exec_height,
            "balances": balances,
            "open_orders": orders,
        }

    def checkpoints(self) -> list[dict[str, Any]]:
        if self.checkpointer is not None:
            return [_jsonable(c) for c in self.checkpointer.checkpoints()]
        return [
            {
                "sequence": c.sequence,
                "state_root": _hex(c.state_root),
                "withdrawals_root": _hex(c.withdrawals_root),
                "last_deposit_id": c.last_deposit_id,
                "withdrawals": len(c.withdrawals),
            }
            for c in self.engine.withdrawal_trees.checkpoints()
        ]

    def withdrawal_proof(self, sequence: int, withdrawal_id: int) -> dict[str, Any] | None:
        found = self.engine.withdrawal_proof(sequence, withdrawal_id)
        if found is None:
            return None
        leaf, proof = found
        checkpoint = next(
            c for c in self.engine.withdrawal_trees.checkpoints() if c.sequence == sequence
        )
        w = next(w for w in checkpoint.withdrawals if w.withdrawal_id == withdrawal_id)
        return {
            "sequence": sequence,
            "withdrawal_id": withdrawal_id,
            "account": _hex(w.account),
            "token": _hex(w.token),
            "amount": str(w.amount),  # token base units; may exceed 2**53
            "leaf": _hex(leaf),
            "proof": [_hex(p) for p in proof],
            "withdrawals_root": _hex(checkpoint.withdrawals_root),
        }

    def balance_proof(self, address: bytes, asset_id: int) -> dict[str, Any] | None:
        engine = self.engine
        found = engine.balance_proof(address, asset_id)
        account = engine.accounts.get(address)
        if found is None or account is None:
            return None
        leaf, proof = found
        index = account.leaf[engine.asset_index[asset_id]]
        asset = engine.assets[engine.asset_index[asset_id]]
        return {
            "account": _hex(address),
            "token": _hex(asset.token),
            "balance": str(engine.state.totals[index] * asset.unit),  # as of the checkpoint
            "sequence": engine.sequence,
            "leaf": _hex(leaf),
            "proof": [_hex(p) for p in proof],
        }

    # ------------------------------------------------------------ execution

    async def _commit(self, blocks: Sequence[Block], proof: QuorumCert) -> None:
        fresh = [b for b in blocks if b.height > self.exec_height]
        for block in blocks:
            self._inflight.pop(block.id, None)
        if not fresh:
            return
        records: list[tuple[int, bytes]] = []
        snapshot = None
        for block in fresh:
            assert block.height == self.exec_height + 1, (
                f"gap: executed {self.exec_height}, got {block.height}"
            )
            entries = [self._executable(raw) for raw in block.payload]
            records.append((block.height, encode_committed(block, [e.signer for e in entries])))
            self._apply(block, entries)
            snapshot = self._maybe_snapshot() or snapshot
        root = msgpack.packb([fresh[-1].to_wire(), proof.to_wire()], use_bin_type=True)
        batch = WriteBatch(committed=records, meta={"root": root}, snapshot=snapshot)
        async with self._storage_lock:
            self.storage.write(batch)
        self._ready = self.halted is None

    def _executable(self, raw: bytes) -> Executable:
        if raw[:1] == _TAG_DEPOSIT_BYTE:
            return Executable(deposit_engine_entry(decode_deposit(raw)), NO_SIGNER, None)
        entry = self._verified.get(raw)
        if entry is None:
            # Not seen before (e.g. recovered from storage): we voted for it, so it verified.
            entry = verify_intent(decode_entry(raw), self.domain)
        return Executable(entry.to_dict(), entry.signer, entry.intent_id)

    def _run_block(
        self, engine: Engine, block: Block, entries: list[dict[str, Any]], live: bool
    ) -> BlockResult:
        """The deterministic step every path shares (commit, replay, sync): apply the
        block, then seal a checkpoint at every checkpoint-interval height. `live`: a
        block executed while running (not replayed at start-up), whose checkpoint is
        signed now; replayed checkpoints are re-signed by `run` once the loop runs."""
        result = engine.apply_block(block.timestamp_ms, entries)
        if block.height % self.genesis.consensus.checkpoint_interval_blocks == 0:
            checkpoint = engine.checkpoint()
            if live and self.checkpointer is not None:
                self.checkpointer.on_checkpoint(checkpoint)
        return result

    def add_block_listener(self, listener: Callable[[ExecutedBlock], None]) -> None:
        """Call `listener` after each block is executed (on the event loop, in height
        order): the hook for indexes, streams and metrics. It must be quick and must not
        raise; it gets the engine's events, so it never needs to re-derive them."""
        self._block_listeners.append(listener)

    def _apply(self, block: Block, entries: list[Executable]) -> None:
        started = time.perf_counter()
        result = self._run_block(self.engine, block, [e.engine_entry for e in entries], live=True)
        apply_s = time.perf_counter() - started
        self.exec_height = block.height
        self.counters["blocks_committed"] += 1
        self.counters["entries_committed"] += len(entries)
        if self.watcher is not None:
            self.watcher.applied(self.engine.last_deposit_id)
        height, done, verified, waiters = block.height, self._results, self._verified, self._waiters
        mempool = self.mempool
        for entry, raw, events in zip(entries, block.payload, result.events, strict=True):
            verified.pop(raw, None)
            intent_id = entry.intent_id
            if intent_id is None:
                continue  # a deposit
            # By (signer, nonce): that pair can never apply again. Not by id: a bad copy
            # (the genuine id, another signer) must not take the genuine intent along.
            mempool.remove_applied(entry.signer, entry.engine_entry["nonce"])
            rejected = None
            for event in events:
                if type(event) is Rejected:
                    rejected = event
                    break
            # The outcome of an intent id: the first one of an entry its account
            # authorized, and a success over an earlier refusal. An unauthorized entry is
            # not the account's intent (a forgery, or a bad copy whose id is the genuine
            # intent's), so it is nobody's outcome; a later copy is a replay.
            prior = done.get(intent_id)
            if rejected is not None:
                if rejected.code == Reason.UNAUTHORIZED or prior is not None:
                    continue
            elif prior is not None and prior[1] is None:
                continue
            done[intent_id] = (height, rejected)
            waiter = waiters.pop(intent_id, None)
            if waiter is not None:
                waiter.set()
        while len(self._results) > self.options.result_cache:
            self._results.popitem(last=False)
        if self._block_listeners:
            executed = ExecutedBlock(
                block.height, block.timestamp_ms, tuple(entries), result, apply_s
            )
            for listener in self._block_listeners:
                listener(executed)

    def _maybe_snapshot(self) -> tuple[int, bytes] | None:
        """Every member snapshots at the same heights (what snapshot sync relies on)."""
        if self.exec_height % self.options.snapshot_interval_blocks:
            return None
        return self.exec_height, self.engine.snapshot()

    # ------------------------------------------------------------ log sync

    def _start_sync(self, peer: int) -> None:
        if self._syncing or self._nursery is None:
            return
        self._syncing = True
        self._nursery.start_soon(self._sync, peer)

    def _serve_sync(self, peer: int, from_height: int, limit: int) -> None:
        """Answer "sr" (ranges checked at the boundary): committed records from
        `from_height`, at most `limit` and `sync_batch_bytes`, with the QC that
        committed our root when they reach it."""
        raw_root = self.storage.load_meta("root")
        if raw_root is None or from_height > self.exec_height:
            self.transport.send(peer, ["sp", from_height, [], None, self.exec_height])
            return
        root_wire, proof_wire = msgpack.unpackb(raw_root, raw=False)
        root_height = Block.from_wire(root_wire).height
        # Inline: the connection is shared with the (inline) writers; a few hundred rows.
        rows = self.storage.load_committed(
            from_height, min(limit, max(0, root_height - from_height + 1))
        )
        if rows and rows[0][0] != from_height:
            rows = []  # our log starts above that height (we installed a snapshot)
        records: list[bytes] = []
        size = 0
        for _, data in rows:
            if records and size + len(data) > self.options.sync_batch_bytes:
                break
            records.append(data)
            size += len(data)
        tip = bool(records) and from_height + len(records) - 1 == root_height
        proof = proof_wire if tip else None
        self.transport.send(peer, ["sp", from_height, records, proof, root_height])

    async def _sync(self, first_peer: int, give_up_after: int | None = None) -> None:
        """Fetch committed blocks above exec_height, check each batch by its QCs (a block
        is taken only once a certified child in the next round proves it committed), and
        execute them; then rebuild the core above the new root. A peer whose answer does
        not check out is penalized and the next peer is asked; the sync ends when a
        peer's proven tip is reached, or after every peer failed `rounds_per_peer` times
        in a row (`give_up_after` misses at start-up, when peers may all be down)."""
        self.counters["syncs"] += 1
        send, receive = trio.open_memory_channel[tuple[int, Any]](4)
        self._sync_replies = send
        peer = first_peer
        root: tuple[Block, QuorumCert] | None = None
        log.info(
            "log sync started",
            peer=peer,
            from_height=self.exec_height + 1,
            highest_seen=self._highest_seen_height,
        )
        snapshot_tried = False
        misses = 0
        failures = 0
        try:
            while failures < 2 * self.n:
                asked = self.exec_height + 1
                self.transport.send(peer, ["sr", asked, MAX_SYNC_BLOCKS])
                reply: SyncReply | None = None
                with trio.move_on_after(self.options.sync_timeout_s):
                    while reply is None:
                        sender, message = await receive.receive()
                        if (
                            sender == peer
                            and isinstance(message, SyncReply)
                            and message.from_height == asked
                        ):
                            reply = message
                if reply is None:
                    misses += 1
                    failures += 1
                    if give_up_after is not None and misses >= give_up_after:
                        break
                    peer = self._next_peer(peer)
                    continue
                far = reply.root_height - self.exec_height > self.options.snapshot_sync_gap_blocks
                if far and not snapshot_tried:
                    snapshot_tried = True
                    if await self._snapshot_sync(receive):
                        continue  # ask again, from above the snapshot
                try:
                    taken, tip = await self._take_synced(reply)
                except Exception as exc:  # the reply did not check out: the peer's fault
                    self._peer_fault(peer, exc)
                    failures += 1
                    peer = self._next_peer(peer)
                    continue
                if tip is not None:
                    root = tip
                    break
                if not taken:
                    # Nothing new from this peer: it is not ahead of us (or withholds).
                    failures += 1
                    if reply.root_height <= self.exec_height:
                        break
                    peer = self._next_peer(peer)
                else:
                    failures = 0
        finally:
            self._sync_replies = None
            self._syncing = False
        if root is not None and root[0].height > self.core.status().committed_height:
            self.core = self._build_core(root)
            await self._inbox_send.send(Start())
        log.info("log sync done", height=self.exec_height)

    async def _take_synced(self, reply: SyncReply) -> tuple[int, tuple[Block, QuorumCert] | None]:
        """Execute what a sync reply proves committed. Returns how many records were
        taken and, when the reply reached the peer's root with its committing QC, the
        new root for the core."""
        records = [decode_committed(r) for r in reply.records]
        records = [r for r in records if r[0].height > self.exec_height]
        proof = None if reply.proof is None else QuorumCert.from_wire(reply.proof)
        taken = self._committed_prefix(records, proof)
        if taken:
            await self._commit_synced(records[:taken])
        if proof is not None and records and taken == len(records):
            return taken, (records[-1][0], proof)
        return taken, None

    def _next_peer(self, peer: int) -> int:
        peer = (peer + 1) % self.n
        return (peer + 1) % self.n if peer == self.me else peer

    # ------------------------------------------------------------ snapshot sync

    def _snapshot_info(self) -> tuple[int, bytes, bytes] | None:
        """(height, blake2b digest, block id at that height) of our latest snapshot."""
        latest = self.storage.latest_snapshot()
        if latest is None:
            return None
        height, data = latest
        cached = self._snapshot_cache
        if cached is None or cached[0] != height:
            rows = self.storage.load_committed(height, 1)
            if not rows or rows[0][0] != height:
                return None
            block_id = decode_committed(rows[0][1])[0].id
            cached = self._snapshot_cache = (height, _digest(data), block_id)
        return cached

    def _serve_snapshot_info(self, peer: int) -> None:
        info = self._snapshot_info()
        self.transport.send(peer, ["ssi", *(info or (0, b"", b""))])

    def _serve_snapshot_chunk(self, peer: int, height: int, offset: int) -> None:
        latest = self.storage.latest_snapshot()
        if latest is None or latest[0] != height or not 0 <= offset < len(latest[1]):
            return
        rows = self.storage.load_committed(height, 1)
        if not rows or rows[0][0] != height:
            return
        data = latest[1]
        chunk = data[offset : offset + SNAPSHOT_CHUNK_BYTES]
        self.transport.send(peer, ["ssd", height, offset, chunk, len(data), rows[0][1]])

    async def _snapshot_sync(self, receive: trio.MemoryReceiveChannel[tuple[int, Any]]) -> bool:
        """Far behind: install a peer's engine snapshot instead of replaying every block.
        A snapshot cannot be checked against a QC, so only one that f + 1 members report
        with the same (height, digest, block id) is taken: at least one of them is honest,
        and honest members snapshot the same canonical bytes at the same heights."""
        self.transport.broadcast(["ssr"])
        votes: dict[tuple[int, bytes, bytes], set[int]] = {}
        answered: set[int] = set()
        with trio.move_on_after(self.options.sync_timeout_s):
            while len(answered) < self.n - 1:
                peer, message = await receive.receive()
                if not isinstance(message, SnapshotInfo) or peer in answered:
                    continue
                answered.add(peer)
                key = (message.height, message.digest, message.block_id)
                if message.height > self.exec_height:
                    votes.setdefault(key, set()).add(peer)
        agreed = [k for k, who in votes.items() if len(who) >= self.committee.f + 1]
        if not agreed:
            log.info("snapshot sync: no snapshot that f + 1 peers agree on")
            return False
        height, digest, block_id = max(agreed)
        sources = sorted(votes[(height, digest, block_id)])
        data = bytearray()
        record = b""
        for attempt in range(4 * len(sources) + 64):
            peer = sources[attempt % len(sources)]
            self.transport.send(peer, ["ssg", height, len(data)])
            reply: SnapshotChunk | None = None
            with trio.move_on_after(self.options.sync_timeout_s):
                while reply is None:
                    sender, message = await receive.receive()
                    if (
                        isinstance(message, SnapshotChunk)
                        and sender == peer
                        and message.height == height
                        and message.offset == len(data)
                    ):
                        reply = message
            if reply is None:
                continue
            data += reply.chunk
            record = reply.record
            if len(data) >= reply.total or len(data) > self.options.max_snapshot_bytes:
                break
        try:
            block, _ = decode_committed(record)
        except Exception as exc:  # a source's bad record: nothing installed
            log.warning("snapshot sync: bad committed record", error=str(exc)[:200])
            return False
        if _digest(bytes(data)) != digest or block.id != block_id or block.height != height:
            log.warning("snapshot sync: data does not match what f + 1 peers reported")
            return False
        engine = Engine.restore(bytes(data))
        async with self._storage_lock:
            self.storage.install_snapshot(height, bytes(data), record)
        self.engine, self.exec_height = engine, height
        self._snapshot_cache = None
        if self.watcher is not None:
            self.watcher.applied(engine.last_deposit_id)
        self.counters["snapshot_syncs"] += 1
        log.info("snapshot sync installed", height=height, bytes=len(data))
        return True

    def _committed_prefix(
        self, records: list[tuple[Block, list[bytes]]], proof: QuorumCert | None
    ) -> int:
        """How many leading records are proven committed. They must chain from our last
        executed block (ids are content hashes, so the chain fixes every payload). A block
        is committed directly when its child in the very next round is certified (the
        2-chain rule), and with it all its ancestors: find the last such block, checking
        the certifying QC's signatures. `proof` (sent with the peer's tip) is the QC that
        committed the last record."""
        if not records:
            return 0
        prev_id = self._exec_tip_id()
        for block, _ in records:
            if block.qc.vote_data.block_id != prev_id:
                raise ValueError(f"sync: block at height {block.height} does not extend our chain")
            prev_id = block.id
        blocks = [b for b, _ in records]
        if (
            proof is not None
            and proof.vote_data.parent_id == blocks[-1].id
            and proof.vote_data.round == proof.vote_data.parent_round + 1
        ):
            self.verifier.verify_qc(proof)
            return len(blocks)
        for i in range(len(blocks) - 3, -1, -1):
            if blocks[i + 1].round == blocks[i].round + 1:
                self.verifier.verify_qc(blocks[i + 2].qc)
                return i + 1
        return 0

    def _exec_tip_id(self) -> bytes:
        if self.exec_height == 0:
            return genesis_block(self.committee.chain_id).id
        rows = self.storage.load_committed(self.exec_height, 1)
        assert rows, f"committed log lacks executed height {self.exec_height}"
        return decode_committed(rows[0][1])[0].id

    async def _commit_synced(self, records: list[tuple[Block, list[bytes]]]) -> None:
        """Execute blocks proven committed. The signer lists came from a peer and are not
        covered by the block ids, so signers are recovered here, not taken on trust."""
        for block, _ in records:
            if block.height != self.exec_height + 1:
                continue
            missing = [
                raw
                for raw in block.payload
                if raw not in self._verified and raw[:1] != _TAG_DEPOSIT_BYTE
            ]
            decoded = [decode_entry(raw) for raw in missing]
            for raw, result in zip(missing, await self._verify(decoded), strict=True):
                if isinstance(result, IntentError):
                    raise ValueError(
                        f"committed block {block.height} has a bad signature: {result}"
                    )
                self._remember(raw, result)
            if block.height != self.exec_height + 1:
                continue
            entries = [self._executable(raw) for raw in block.payload]
            record = encode_committed(block, [e.signer for e in entries])
            self._apply(block, entries)
            snapshot = self._maybe_snapshot()
            async with self._storage_lock:
                self.storage.write(
                    WriteBatch(committed=[(block.height, record)], snapshot=snapshot)
                )


DEV_CHAIN_ID = 31337  # anvil / localnet: the only chain where test-only modes may run


def _round_of(msg: object) -> int | None:
    if isinstance(msg, Vote):
        return msg.vote_data.round
    if isinstance(msg, TimeoutMsg):
        return msg.round
    if isinstance(msg, Proposal):
        return msg.block.round
    return None


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return _hex(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


SNAPSHOT_CHUNK_BYTES = 1 << 20  # under the transport's 4 MiB frame limit


def _digest(snapshot: bytes) -> bytes:
    return hashlib.blake2b(snapshot, digest_size=32).digest()


NO_SIGNER = bytes(20)  # the recorded signer of an entry no trader signed (a deposit)
_TAG_DEPOSIT_BYTE = bytes((TAG_DEPOSIT,))
assert TAG_INTENT != TAG_DEPOSIT


@dataclass(frozen=True, slots=True)
class Executable:
    """A payload entry ready for the engine, with what the node keeps about it."""

    engine_entry: dict[str, Any]
    signer: bytes
    intent_id: bytes | None  # None for entries no client waits on (deposits)


@dataclass(frozen=True, slots=True)
class ExecutedBlock:
    """What a block listener gets: `result.events[i]` belongs to `entries[i]`."""

    height: int
    timestamp_ms: int
    entries: tuple[Executable, ...]
    result: BlockResult
    apply_s: float = 0.0  # engine time for the block (seconds), for the apply-time histogram


def _recorded_entry(raw: bytes, signer: bytes) -> dict[str, Any]:
    """The engine entry of a committed-log entry: the recorded signer, no recovery."""
    if raw[:1] == _TAG_DEPOSIT_BYTE:
        return deposit_engine_entry(decode_deposit(raw))
    si = decode_entry(raw)
    return {"account": si.account, "signer": signer, "nonce": si.nonce, "action": si.action}


MAX_ENTRY_BYTES = 1 + MAX_INTENT_MSGPACK_BYTES  # a payload entry: tag byte + packed intent

# What our own decoders raise on a peer's bad input; anything else is a bug of ours.
_PEER_ERRORS = (ConsensusError, PeerProtocolError, IntentError, BadEntry, ValueError)


_FULL_MESSAGES = {
    AddResult.ACCOUNT_FULL: "too many pending intents for this signing key; retry later",
    AddResult.POOL_FULL: "the node's mempool is full; retry later",
}
