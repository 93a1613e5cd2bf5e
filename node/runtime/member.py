"""One committee member at run time: the trio shell around the two pure cores.

The member is wired from parts, one room each (node/runtime/):
- `EntryVerifier` (verification.py): trader signatures, once per member, cached;
- `Intake` (intake.py): client and forwarded intents into the mempool;
- `Executor` (execution.py): committed blocks through the engine, the committed log;
- `LogSync` (sync.py): catch-up from peers, proven by QCs, and serving theirs;
- `Outcomes` (outcomes.py): what became of each committed intent;
and this module, which drives the consensus core and owns the tasks (one nursery):
- transport: links to the other members through the I/O seam (node/seam.py; in
  production node/net/transport.py);
- dispatcher: the peer boundary: every message decoded by node/net/messages.py, then
  consensus messages verified (`consensus.Verifier`, and the payload of a current-round
  proposal by `EntryVerifier`) and queued for the consensus task; a bad message is its
  sender's fault, never the process's;
- consensus: the only task that touches `Core`; it feeds events in and carries the
  actions out in order, persisting the safety record and new blocks (fsync) before any
  vote or timeout that follows them leaves the node;
- timer: one deadline, replaced by each `ScheduleTimeout`;
- proposer: answers `NeedPayload` with a batch from the mempool (cancels first).

Peer messages are msgpack lists `[kind, …]`: `c` consensus message bytes, `i` forwarded
signed intents, `cps` checkpoint signatures, `sr`/`sp` committed-log sync request and
response, `ssr`/`ssi`/`ssg`/`ssd` snapshot sync (docs/PROTOCOL.md §9).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgpack
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
from consensus.core import Status as CoreStatus
from consensus.crypto import Ed25519Scheme, Ed25519Signer, sha256
from consensus.errors import InvalidMessage as ConsensusError
from consensus.events import Event, MessageReceived, PayloadReady, Start, TimerFired
from consensus.leader_election import LeaderReputation
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
from matching.engine import Engine
from node.api.facade import SubmitResult
from node.api.ratelimit import NO_WAIT, RateLimit, TokenBuckets
from node.config import verify_threads_for
from node.fairness.committee import FairnessGenesis
from node.fairness.dkg import member_key_from_settlement
from node.fairness.keying import MAX_RELAYED_PER_BLOCK, RELAY_HEADER_BYTES, KeyRecord
from node.fairness.threshold import KeyShare
from node.genesis import FAIRNESS_KIND, NodeSetup, load_fairness_share
from node.intents import IntentError, SignedIntent, unpack_intent
from node.keys import KeyFileError, write_private_file
from node.listing import (
    LISTING_TAG,
    BadListing,
    Listing,
    ListingPool,
    block_listings,
    check_listing,
    engine_table,
)
from node.log import LogGate
from node.mempool import Mempool
from node.net.messages import (
    SYNC_REPLIES,
    CheckpointSignature,
    ConsensusBytes,
    Dealings,
    DealingsRequest,
    DecryptionShares,
    ForwardedEnvelopes,
    ForwardedIntents,
    ForwardedListing,
    OracleObservation,
    PeerMessage,
    PeerProtocolError,
    RelayedDkg,
    RepairFault,
    RepairPiece,
    RepairRequest,
    RepairSum,
    SharesRequest,
    SnapshotChunkRequest,
    SnapshotInfoRequest,
    SyncRequest,
    decode_peer_message,
)
from node.net.transport import Peer, Transport, TransportConfig
from node.oracle.member import MemberOracle, oracle_source, vol_feed
from node.oracle.observation import OBSERVATION_TAGS
from node.payload import (
    NO_SIGNER,
    SIGNER_BYTES,
    TAG_DEPOSIT,
    TAG_DKG,
    TAG_DKG_RELAYED,
    BadEntry,
    decode_committed,
    decode_deposit,
    deposit_entry,
    envelope_entry,
    intent_entry,
    with_signers,
)
from node.runtime import queries
from node.runtime.clock import CommitteeClock
from node.runtime.decryption import Decryption
from node.runtime.dkg_relay import DkgRelay
from node.runtime.execution import MAX_QUEUED_BLOCKS, ExecutedBlock, Executor
from node.runtime.intake import Intake, used_nonce
from node.runtime.logger import log
from node.runtime.options import DEV_CHAIN_ID, NodeOptions
from node.runtime.outcomes import Outcomes
from node.runtime.share_recovery import ShareRecovery, prune_shares, save_dealings
from node.runtime.share_repair import ShareRepair
from node.runtime.sync import LogSync, Root
from node.runtime.verification import EntryVerifier
from node.seam import Clock, NodeStorage, PeerNetwork, wall_ms
from node.store.storage import CorruptStorage, WriteBatch

# What our own decoders raise on a peer's bad input; anything else is a bug of ours.
_PEER_ERRORS = (ConsensusError, PeerProtocolError, IntentError, BadEntry, ValueError)
_TAG_DEPOSIT_BYTE = bytes((TAG_DEPOSIT,))
_TAG_DKG_BYTE = bytes((TAG_DKG,))
_TAG_DKG_RELAYED_BYTE = bytes((TAG_DKG_RELAYED,))
MAX_DKG_ENTRIES = 8  # our DKG entries in one of our blocks (a dealing, complaints)
RECENT_BLOCKS = 10_000  # the proposer's pacing memory (recent block -> carried entries)
# Not enforced here but held by construction, and checked by the simulator: uncommitted
# blocks above the committed round (pruned at each commit), and clients waiting (bounded
# by the API's concurrent requests).
MAX_INFLIGHT = 2_000
MAX_WAITERS = 10_000
# Rounds above the peer-attested round that a member without its safety record keeps
# silent: honest members' rounds differ by a round or two while the committee runs.
GUARD_MARGIN_ROUNDS = 3

if TYPE_CHECKING:  # the chain modules load web3 (~0.8 s): only a member wired to a chain
    from node.chain.checkpointer import Checkpointer
    from node.chain.watcher import ChainSeen, ChainWatcher


class Node:
    def __init__(
        self,
        setup: NodeSetup,
        storage: NodeStorage,
        options: NodeOptions | None = None,
        *,
        network: PeerNetwork | None = None,
        clock: Clock = wall_ms,
        on_replayed: Callable[[int], None] | None = None,
        fresh: bool = False,
    ) -> None:
        """`network` and `clock` are the I/O seam (node/seam.py): by default the TCP
        transport to the members in genesis and the wall clock. `on_replayed(height)`
        is called after each block the engine restore replays (start-up progress).
        `fresh`: the store was made for this member and has never run one (the data
        directory `committee init` marked, a new simulated store): it signed nothing
        before, so no wipe guard (`_guard_window`)."""
        self.setup = setup
        self.options = options = options or NodeOptions()
        genesis = setup.genesis
        if options.byzantine is not None and genesis.chain_id != DEV_CHAIN_ID:
            raise ValueError("byzantine test modes run only on the dev chain id")
        self.genesis = genesis
        self.checkpoint_interval = genesis.consensus.checkpoint_interval_blocks
        self.domain = genesis.domain()
        self.genesis_hash = genesis.genesis_hash()
        self.me = setup.index
        self.n = len(genesis.members)
        self.committee = Committee(
            tuple(m.ed25519_pubkey for m in genesis.members), self.genesis_hash
        )
        self.clock = CommitteeClock(
            lambda: clock() + options.clock_skew_ms,
            me=self.me,
            quorum=self.committee.quorum,
            alarm_ms=options.clock_alarm_ms,
            max_correction_ms=options.clock_max_correction_ms,
        )
        # Leaders from committed history: a member that stopped is skipped (CONSENSUS.md)
        self.election = LeaderReputation(self.n)
        self.verifier = Verifier(self.committee, Ed25519Scheme(), self.election)
        self.signer = Ed25519Signer(bytes(setup.keys.identity))
        self.core_config = CoreConfig(base_timeout_ms=genesis.consensus.round_timeout_ms)
        self.storage = storage
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "blocks_committed",
                "entries_committed",  # trader intents and deposits
                "observations_committed",  # oracle price observations
                "proposals_rejected",
                "peer_messages_rejected",
                "intents_admitted",
                "syncs",
                "votes_sent",
                "snapshot_syncs",
                "sync_requests_throttled",
                "timeouts",
            ),
            0,
        )
        threads = setup.config.verify_threads
        self.entries = EntryVerifier(
            self.domain,
            threads if threads is not None else verify_threads_for(members_on_host=1),
            options.verified_cache_bytes,
            options.bad_entry_cache_bytes,
            accept_envelopes=genesis.fairness is not None or genesis.dkg is not None,
        )
        self.outcomes = Outcomes()
        self.mempool = Mempool()
        self.executor = Executor(
            genesis=genesis,
            storage=storage,
            verifier=self.entries,
            outcomes=self.outcomes,
            mempool=self.mempool,
            snapshot_interval_blocks=options.snapshot_interval_blocks,
            history_blocks=setup.config.history_blocks or options.history_blocks,
            counters=self.counters,
            on_replayed=on_replayed,
            dkg_member=None
            if genesis.dkg is None
            else (self.me + 1, member_key_from_settlement(setup.keys.settlement.secret)),
            on_share=self._store_share,
            on_dealings=lambda epoch, dealings: save_dealings(self.storage, epoch, dealings),
        )
        self.core = self._build_core()
        self.transport: PeerNetwork = network or Transport(
            me=self.me,
            signing_key=setup.keys.identity,
            peers=self._peers(),
            genesis_hash=self.genesis_hash,
            config=TransportConfig(),
        )
        self.intake = Intake(
            verifier=self.entries,
            outcomes=self.outcomes,
            mempool=self.mempool,
            is_authorized=lambda account, signer: self.engine.is_authorized(account, signer),
            used_nonce=lambda account, signer, nonce: used_nonce(
                self.engine, account, signer, nonce
            ),
            now_ms=self.now_ms,
            forward=lambda packed: self.transport.broadcast(["i", packed]),
            max_forward_batch=options.max_forward_batch,
            counters=self.counters,
        )
        self.intake._forward_envelopes = lambda raws: self.transport.broadcast(["e", raws])
        self.decryption = self._build_decryption(storage, self.executor.fairness())
        self.executor.decryption = self.decryption
        self.executor.on_key_ready = self._on_key_ready
        identity = setup.keys.identity
        self.share_repair = ShareRepair(
            me=self.me,
            members=self.n,
            network=self.transport,
            member_keying=lambda: self.executor.member_keying,
            has_share=lambda epoch: self._share_path(epoch).exists(),
            load_share=self._stored_share,
            on_repaired=self._on_share_recovered,
            identity_keys=tuple(m.ed25519_pubkey for m in genesis.members),
            sign=lambda message: bytes(identity.sign(message).signature),
            counters=self.counters,
        )
        self.share_recovery = ShareRecovery(
            me=self.me,
            members=self.n,
            network=self.transport,
            storage=storage,
            member_keying=lambda: self.executor.member_keying,
            has_share=lambda epoch: self._share_path(epoch).exists(),
            on_recovered=self._on_share_recovered,
            counters=self.counters,
            on_unopened=self.share_repair.dealings_unopened,
        )
        self.dkg_relay = DkgRelay(
            me=self.me,
            network=self.transport,
            keying=lambda: self.executor.keying,
            member_keying=lambda: self.executor.member_keying,
            counters=self.counters,
        )
        self.sync = LogSync(
            me=self.me,
            committee=self.committee,
            network=self.transport,
            storage=storage,
            executor=self.executor,
            verifier=self.verifier,
            options=options,
            counters=self.counters,
            peer_fault=self._peer_fault,
            on_root=self._on_synced_root,
        )
        self.watcher, self.checkpointer = self._settlement()
        self.executor.watcher, self.executor.checkpointer = self.watcher, self.checkpointer
        self.oracle = self._build_oracle()
        # Listings of option series signed by the members (node/listing.py): the quorum
        # is the oracle's, 2f + 1 (the committee's when genesis has no oracle).
        self.listings = ListingPool()
        self._listing_scheme = Ed25519Scheme()
        self.listing_quorum = genesis.exchange.oracle_quorum or self.committee.quorum
        self.executor.add_block_listener(self._listings_committed)
        self._nursery: trio.Nursery | None = None
        self._inbox_send, self._inbox = trio.open_memory_channel[Event](options.inbox)
        self._inbox_bytes = 0
        self._inbox_sizes: dict[int, int] = {}  # id(event) -> bytes, while it waits
        self._inbox_drained = trio.Event()
        rate = options.sync_serve_per_s
        self._serving = TokenBuckets(RateLimit(rate, burst=rate), max_keys=self.n)
        self._peer_log = LogGate(interval_s=options.peer_log_interval_s)
        # blocks not committed yet: id -> (parent id, intent ids, last deposit id or 0, round)
        self._inflight: dict[bytes, tuple[bytes, frozenset[bytes], int, int]] = {}
        # recent blocks: id -> (parent id, carried entries), for the proposer's pacing
        self._recent: OrderedDict[bytes, tuple[bytes, bool]] = OrderedDict()
        self._block_times: OrderedDict[bytes, int] = OrderedDict()  # proposals seen
        self._joining = False
        self.halted: str | None = None
        self._peer_rounds: dict[int, int] = {}  # peer -> highest round it signed for
        # None: no guard; -1: observing peers' rounds; R: withhold our signatures <= R.
        # Without a safety record a member may have signed before a wipe, unless its
        # store is fresh: a first start guarded could stall a committee whose other
        # members advanced rounds without it meanwhile (simulator seed 166).
        forgot = storage.load_safety() is None and not fresh
        self._guard_round: int | None = -1 if forgot else None
        self._timer: tuple[int, int] | None = None  # (round, at_ms)
        self._timer_changed = trio.Event()
        self._proposing: int | None = None
        self._highest_seen_height = self.executor.height
        self._last_sync_start = -float("inf")  # trio time: syncs start at most one a timeout
        self._ready = False
        self.started_ms = clock()
        # A dealing is the largest DKG message (docs/PROTOCOL.md §10.9).
        self._max_dkg_message = 0 if genesis.dkg is None else genesis.dkg.config(0).dealing_bytes

    @property
    def engine(self) -> Engine:
        return self.executor.engine

    @property
    def exec_height(self) -> int:
        return self.executor.height

    def _settlement(self) -> tuple[ChainWatcher | None, Checkpointer | None]:
        """The chain watcher and checkpointer, when this node is wired to a chain."""
        chain = self.setup.config.chain
        contract = self.genesis.settlement_contract
        if chain is None or contract is None:
            return None, None
        from web3 import HTTPProvider, Web3

        from contracts.settlement import Settlement
        from node.chain.checkpointer import Checkpointer, CheckpointerOptions
        from node.chain.watcher import ChainWatcher, WatcherOptions

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

    def _build_core(self, root: tuple[Block, QuorumCert] | None = None) -> Core:
        """The core at start, or above a synced root: its election learns the committed
        log's tail, so it names the leaders every up-to-date member names."""
        self.election.seed(self._committed_tail())
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

    def _build_decryption(
        self, storage: NodeStorage, fairness: FairnessGenesis | None
    ) -> Decryption | None:
        """The decryption-share exchange, when the committee has a key: genesis's dealt
        one, or the current key of the DKG (encrypted intents, docs/PROTOCOL.md §10)."""
        if fairness is None:
            return None
        if self.genesis.dkg is None:
            share = self.setup.fairness_share
        else:
            share = self._load_share(fairness)
        modes = set((self.options.byzantine or "").split(","))
        room = Decryption(
            fairness=fairness,
            share=share,
            network=self.transport,
            storage=storage,
            executed_height=lambda: self.executor.height,
            counters=self.counters,
            withhold="withhold-shares" in modes,
            forge="forge-shares" in modes,
        )
        keying = self.executor.keying
        previous = None if keying is None else keying.previous
        if previous is not None and previous.epoch != fairness.epoch:
            # Opens envelopes sealed to it during the re-key's grace (§10.9).
            old = FairnessGenesis(previous.epoch, previous.key)
            room.add_key(previous.epoch, previous.key, self._load_share(old))
        return room

    # The committee key made by the DKG (genesis [dkg], node/fairness/keying.py)

    def _share_path(self, epoch: int) -> Any:
        return self.setup.config.data_dir / "fairness" / f"epoch-{epoch}.key"

    def _store_share(self, epoch: int, share: KeyShare) -> None:
        """Our share of epoch `epoch`'s key, durably (mode 0600, fsynced) before the
        block that made the key is written: it is derived once, from that run's dealings,
        which a later snapshot no longer holds. A replay derives it again: kept as is."""
        path = self._share_path(epoch)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = share.secret.to_bytes(32, "big")
        write_private_file(path, f"{FAIRNESS_KIND}:{secret.hex()}\n".encode())
        log.info("committee key share stored", epoch=epoch, path=str(path))

    def _load_share(self, fairness: FairnessGenesis) -> KeyShare | None:
        path = self._share_path(fairness.epoch)
        if not path.exists():
            log.warning("no share of the committee key", epoch=fairness.epoch)
            return None
        try:
            return load_fairness_share(path, fairness.key, self.me + 1)
        except KeyFileError as error:
            log.error("bad share of the committee key", epoch=fairness.epoch, error=str(error))
            return None

    def _stored_share(self, record: KeyRecord) -> KeyShare | None:
        """Our stored share of `record`'s key, quietly None when absent or bad (share
        repair asks it for every request it helps with)."""
        path = self._share_path(record.epoch)
        if not path.exists():
            return None
        try:
            return load_fairness_share(path, record.key, self.me + 1)
        except KeyFileError:
            return None

    def _on_share_recovered(self, epoch: int, share: KeyShare) -> None:
        """Share recovery (node/runtime/share_recovery.py) derived our share of `epoch`'s
        key from peers' dealings: stored as the DKG's own, and used from now on."""
        self._store_share(epoch, share)
        room = self.decryption
        if room is not None and room.fairness.epoch == epoch:
            room.use_share(share)

    def _on_key_ready(self, fairness: FairnessGenesis) -> None:
        """A DKG run finished at a committed height: its key is current from the next
        block on, so the share exchange switches to it before that block is planned."""
        log.info("committee key ready", epoch=fairness.epoch, key_id=fairness.key_id.hex())
        self.decryption = self._build_decryption(self.storage, fairness)
        self.executor.decryption = self.decryption
        keying = self.executor.keying
        previous = None if keying is None else keying.previous
        oldest_kept = fairness.epoch if previous is None else previous.epoch
        for epoch in prune_shares(self._share_path(0).parent, oldest_kept):
            log.info("old committee key share deleted", epoch=epoch)

    def _build_oracle(self) -> MemberOracle:
        """The oracle: a feeder when genesis has perpetual markets, observing vols too
        when it has option series (node/oracle/)."""
        members = self.genesis.members
        source, to_ticks = oracle_source(self.setup.config.oracle, self.genesis.exchange)
        vols = vol_feed(self.setup.config.oracle, self.genesis.exchange) if source else None
        return MemberOracle(
            me=self.me,
            chain_id=self.genesis_hash,
            public_keys=tuple(m.ed25519_pubkey for m in members),
            member_addresses=tuple(m.settlement_address for m in members),
            signer=self.signer,
            now_ms=self.now_ms,
            broadcast=self.transport.broadcast,
            source=source,
            to_ticks=to_ticks,
            interval_ms=self.setup.config.oracle.interval_ms,
            vols=vols,
        )

    def _committed_tail(self) -> list[Block]:
        height = self.storage.committed_height()
        if not height:
            return []
        first = max(1, height - self.election.history_blocks + 1)
        rows = self.storage.load_committed(first, height - first + 1)
        return [decode_committed(data) for _, data in rows]

    # ------------------------------------------------------------ run

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.transport.run)
            nursery.start_soon(self._dispatcher)
            if self.executor.takes_envelopes:
                nursery.start_soon(self._execution_queue)
            if self.executor.member_keying is not None:
                nursery.start_soon(self.share_recovery.run)
                nursery.start_soon(self.share_repair.run)
                nursery.start_soon(self.dkg_relay.run)
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
            if self.oracle.enabled:
                # Series listed before a restart, replayed from the log or a snapshot.
                self.oracle.learn_series(self.engine.genesis.option_markets)
                await nursery.start(self.oracle.run)
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
                await self.sync.run(peers[0], give_up_after=len(peers))
        finally:
            self._joining = False

    async def _execution_queue(self) -> None:
        """Committed blocks with encrypted intents execute once their shares are in
        (Executor.run_queue); a storage failure there halts the member as anywhere."""
        try:
            await self.executor.run_queue()
        except (sqlite3.Error, OSError, CorruptStorage) as exc:
            self._halt(f"storage write failed: {exc}")

    def now_ms(self) -> int:
        """The committee's time as we see it (our clock corrected by the offset peers'
        signed timestamps show): for block timestamps, round deadlines and nonces."""
        return self.clock.now_ms()

    async def _wal_checkpoints(self) -> None:
        """SQLite's fsyncs, off the event loop: the WAL is copied into the database from
        a worker thread, so no round waits for it (node/store/storage.py)."""
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
                self._observe_round(event.verified.sender, event.verified.msg)
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
            except (sqlite3.Error, OSError, CorruptStorage) as exc:
                self._halt(f"storage write failed: {exc}")

    def _halt(self, reason: str) -> None:
        """Stop voting, proposing and executing; keep serving status so operators see
        why (readyz turns 503). A restart after the operator fixed the disk resumes."""
        self.halted = reason
        self._ready = False
        log.error("node halted", reason=reason, alarm="storage_failure")

    def _observe_round(self, sender: int, msg: object) -> None:
        round_ = _round_of(msg)
        if sender != self.me and round_ is not None and round_ > self._peer_rounds.get(sender, 0):
            self._peer_rounds[sender] = round_

    def _committee_round(self) -> int | None:
        """A round the committee has reached, as f + 1 distinct peers attest: the
        (f + 1)-th highest round among peers' signed messages. At least one of those f + 1
        is honest, so a Byzantine member cannot push it up (a vote for round 10**6 moves
        nothing). None until f + 1 peers have been heard."""
        f = self.committee.f
        rounds = sorted(self._peer_rounds.values(), reverse=True)
        return rounds[f] if len(rounds) > f else None

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
        """Decide the wipe guard after two round timeouts of listening. Honest members'
        rounds differ by little, and we may have voted up to theirs before the wipe: we
        withhold our signatures up to a margin above the round f + 1 peers attest. Fewer
        than f + 1 peers signing anything means no committee is running past us (its
        quorum would need f + 1 of them): a fresh start, nothing to guard."""
        await trio.sleep(2 * self.genesis.consensus.round_timeout_ms / 1000)
        attested = self._committee_round()
        if attested is None or attested <= 2:
            self._guard_round = None
        else:
            self._guard_round = attested + GUARD_MARGIN_ROUNDS
            log.warning(
                "no safety record: withholding votes up to a round peers attest",
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
        async with self.executor.storage_lock:
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
        try:
            last_deposit = decode_deposit(deposits[-1]).deposit_id if deposits else 0
        except BadEntry:
            last_deposit = 0  # a block we will never vote for; certified, it would not be
        self._inflight[block.id] = (
            parent,
            frozenset(self.entries.intent_id(raw) for raw in block.payload),
            last_deposit,
            block.round,
        )
        self._recent[block.id] = (parent, bool(block.payload))
        if len(self._recent) > RECENT_BLOCKS:
            self._recent.popitem(last=False)

    def _pending_entries(self, parent_id: bytes) -> set[bytes]:
        """Intent ids carried by the uncommitted ancestors of a block we would extend."""
        pending: set[bytes] = set()
        for _ in range(1000):
            link = self._inflight.get(parent_id)
            if link is None:
                break
            parent_id, ids, _, _ = link
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
                await self.intake.nonempty.wait()
        elif self.options.batch_wait_ms:
            await trio.sleep(self.options.batch_wait_ms / 1000)
        await self._inbox_send.send(self._fill(round_, parent_id))

    def _fill(self, round_: int, parent_id: bytes) -> PayloadReady:
        """Our block's payload: price observations first, then deposits, then mempool
        entries (cancels first) not already carried by an uncommitted ancestor."""
        exclude = self._pending_entries(parent_id)
        if self.executor.queued_ids:  # committed, waiting for decryption shares
            exclude |= self.executor.queued_ids
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
        # Room for the signers entry: 20 bytes an entry, and its tag.
        room = self.options.max_block_bytes - 1 - SIGNER_BYTES * limit
        # Price and vol observations first: the block's orders and liquidations see them.
        observations = self.oracle.for_block()
        # Then our own DKG entries (a dealing, complaints) until they commit, and those
        # of members that do not lead, relayed (node/runtime/dkg_relay.py).
        member_keying = self.executor.member_keying
        if member_keying is not None:
            modes = (self.options.byzantine or "").split(",")
            if "bad-dealing" in modes:
                member_keying.spoil_dealing(_bad_dealing)
            if "relay-dkg-only" not in modes:  # test mode: as if we never led
                deposits = [*deposits, *member_keying.pending_entries(MAX_DKG_ENTRIES)]
            deposits = [*deposits, *self.dkg_relay.for_block(exclude)]
        # Then listings we took (node/listing.py), unless an ancestor carries them.
        listings = self.listings.for_block(exclude)
        deposits = [*deposits, *listings]
        room -= sum(map(len, observations)) + sum(map(len, deposits))
        committee = len(observations) + len(deposits)
        items = self.intake.take_batch(limit - committee, room, exclude={*exclude})
        entries = [*observations, *deposits, *(i.entry for i in items)]
        signers = [NO_SIGNER] * committee + [i.signer for i in items]
        return PayloadReady(round_, with_signers(entries, signers))

    # ------------------------------------------------------------ the peer boundary

    async def _dispatcher(self) -> None:
        """Every peer message passes the typed boundary (node/net/messages.py), then its
        handler. Whatever goes wrong while handling one peer's message is that peer's
        problem: the message is dropped, the peer is penalized (the transport disconnects
        a repeat offender with back-off) and it is logged at most once per interval. The
        process stops only on our own storage failure."""
        async for peer, raw in self.transport.inbound:
            try:
                await self._on_peer_message(peer, decode_peer_message(raw))
            except (sqlite3.Error, OSError, CorruptStorage) as exc:
                self._halt(f"storage failed while serving peer {peer}: {exc}")
            except Exception as exc:  # contained to the peer that sent it (see docstring)
                self._peer_fault(peer, exc)

    async def _on_peer_message(self, peer: int, message: PeerMessage) -> None:
        if isinstance(message, ConsensusBytes):
            await self._on_consensus(peer, message.data)
        elif isinstance(message, ForwardedIntents):
            packed = message.packed
            intents = [unpack_intent(raw) for raw in packed]
            await self.intake.admit(intents, False, [intent_entry(raw) for raw in packed])
        elif isinstance(message, OracleObservation):
            self.oracle.on_peer(peer, message.observation)
        elif isinstance(message, ForwardedListing):
            self._on_peer_listing(message.listing)
        elif isinstance(message, ForwardedEnvelopes):
            raws = [envelope_entry(e) for e in message.envelopes]
            await self.intake.admit_envelopes(
                raws, False, self._fairness_epoch(), self._grace_epoch()
            )
        elif isinstance(message, DecryptionShares):
            if self.decryption is None:
                if self.executor.takes_envelopes:
                    return  # our DKG's key is not current here yet: a peer ahead of us
                raise PeerProtocolError("decryption shares, but genesis has no committee key")
            self.decryption.on_shares(peer, message)
        elif isinstance(message, CheckpointSignature):
            if self.checkpointer is not None:
                from node.chain.checkpointer import SignatureResult

                result = self.checkpointer.on_peer_signature(peer, message.message)
                if result in (SignatureResult.BAD_SIGNATURE, SignatureResult.MALFORMED):
                    raise PeerProtocolError(f"checkpoint signature: {result.value}")
        elif isinstance(message, Dealings):
            self.share_recovery.on_dealings(peer, message)
        elif isinstance(message, RelayedDkg):
            self.dkg_relay.offer(peer, message)
        elif isinstance(message, RepairPiece):
            self.share_repair.on_piece(peer, message)
        elif isinstance(message, RepairSum):
            self.share_repair.on_sum(peer, message)
        elif isinstance(message, RepairFault):
            self.share_repair.on_fault(peer, message)
        elif isinstance(message, SYNC_REPLIES):
            self.sync.deliver(peer, message)
        elif self._serving.take(peer, 1, trio.current_time()) != NO_WAIT:
            self.counters["sync_requests_throttled"] += 1
        elif isinstance(message, SyncRequest):
            self.sync.serve_blocks(peer, message.from_height, message.limit)
        elif isinstance(message, SnapshotInfoRequest):
            self.sync.serve_snapshot_info(peer)
        elif isinstance(message, SharesRequest):
            if self.decryption is not None:
                self.decryption.on_request(peer, message.height)
        elif isinstance(message, DealingsRequest):
            self.share_recovery.serve(peer, message.epoch)
        elif isinstance(message, RepairRequest):
            self.share_repair.on_request(peer, message)
        else:
            assert isinstance(message, SnapshotChunkRequest)
            self.sync.serve_snapshot_chunk(peer, message.height, message.offset)

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
        qc = _qc_of(msg)
        if qc is not None:
            status = self.core.status()  # once per message: it names the round's leader
            self._maybe_sync(peer, qc, status)
        if isinstance(msg, Proposal):
            block = msg.block
            current = status.round
            if block.round < current - 1:
                return  # too late to be certified: no payload work, nothing stored
            # The previous round's block too: the core keeps it (its QC may be on the
            # way), so it gets the same checks as one we vote for.
            if not await self._proposal_payload_ok(block):
                return
            if block.round >= current:
                self._observe_clock(block)
        event = MessageReceived(verified)
        await self._inbox_reserve(event, len(data))
        await self._inbox_send.send(event)

    def _observe_clock(self, block: Block) -> None:
        """A current-round proposal's signed timestamp is a reading of its leader's
        clock (runtime/clock.py); warn when our own turns out to be off."""
        parent_ms = self._block_times.get(block.qc.block_id)
        self._block_times[block.id] = block.timestamp_ms
        if len(self._block_times) > RECENT_BLOCKS:
            self._block_times.popitem(last=False)
        was_skewed = self.clock.skewed()
        self.clock.observe(block.author, block.timestamp_ms, parent_ms)
        if self.clock.skewed() != was_skewed:
            log.warning(
                "clock skew" if not was_skewed else "clock skew gone",
                offset_ms=self.clock.offset_ms,
                alarm_ms=self.clock.alarm_ms,
                alarm="clock_skew" if not was_skewed else None,
            )

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

    def _maybe_sync(self, peer: int, qc: QuorumCert, status: CoreStatus) -> None:
        """Start a log sync when a verified QC proves the committee is far ahead of us.
        Heights in a block are only its author's claim, so they never start a sync; a
        QC carries 2f + 1 signatures. `peer` sent it, so it is asked first."""
        behind = committee_ahead(qc.round, status, self.options)
        now = trio.current_time()
        if behind and now - self._last_sync_start >= self.options.sync_timeout_s:
            self._last_sync_start = now
            assert self._nursery is not None
            self.sync.start(self._nursery, peer)

    async def _proposal_payload_ok(self, block: Block) -> bool:
        """Checks of a proposal's payload before the core sees it: sizes first (free),
        then deposits, then the trader signatures."""
        payload = block.payload
        limit = self.genesis.consensus.max_block_entries
        size = sum(map(len, payload))
        if len(payload) > limit + 1 or size > self.options.max_block_bytes:  # + signers entry
            self.counters["proposals_rejected"] += 1
            raise PeerProtocolError(
                f"proposal of round {block.round}: {len(payload)} entries, {size} bytes "
                f"(limits {limit}, {self.options.max_block_bytes})"
            )
        bad_observation = self.oracle.check_block(payload[:-1], block.timestamp_ms)
        if bad_observation is not None:
            self.counters["proposals_rejected"] += 1
            raise PeerProtocolError(
                f"proposal of round {block.round} by {block.author}: {bad_observation}"
            )
        if any(e[:1] == LISTING_TAG for e in payload[:-1]):
            bad_listing = block_listings(
                payload[:-1],
                self.genesis_hash,
                self.committee.public_keys,
                self.listing_quorum,
                self._listing_scheme,
            )
            if bad_listing is not None:
                self.counters["proposals_rejected"] += 1
                raise PeerProtocolError(
                    f"proposal of round {block.round} by {block.author}: {bad_listing}"
                )
        for tag, what, most, header in (
            (_TAG_DKG_BYTE, "DKG entries", MAX_DKG_ENTRIES, 1),
            (
                _TAG_DKG_RELAYED_BYTE,
                "relayed DKG entries",
                MAX_RELAYED_PER_BLOCK,
                RELAY_HEADER_BYTES,
            ),
        ):
            found = [e for e in payload[:-1] if e[:1] == tag]
            largest = header + self._max_dkg_message
            if found and (
                self.genesis.dkg is None or len(found) > most or max(map(len, found)) > largest
            ):
                self.counters["proposals_rejected"] += 1
                raise PeerProtocolError(
                    f"proposal of round {block.round} by {block.author}: {len(found)} {what} "
                    f"(at most {most}, each at most {largest} bytes)"
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
        bad = await self.entries.check_payload(payload)
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
            block_id, _, last_deposit, _ = link
            if last_deposit:
                return last_deposit
        return self.engine.last_deposit_id

    def _check_deposits(self, block: Block) -> bool:
        """Deposit entries come first (after price observations), continue the parent
        chain's deposit ids without a gap, and each is exactly what our own watcher saw
        with enough confirmations."""
        deposits = [e for e in block.payload if e[:1] == _TAG_DEPOSIT_BYTE]
        if not deposits:
            return True
        first = 0  # after the price observations (checked by the oracle)
        while first < len(block.payload) and block.payload[first][:1] in OBSERVATION_TAGS:
            first += 1
        if self.watcher is None or any(
            e[:1] == _TAG_DEPOSIT_BYTE for e in block.payload[first + len(deposits) :]
        ):
            return False
        expected = self._deposit_tip(block.qc.vote_data.block_id) + 1
        for raw in deposits:
            record = decode_deposit(raw)
            if record.deposit_id != expected or self.watcher.seen(record.deposit_id) != record:
                return False
            expected += 1
        return True

    # ------------------------------------------------------------ API facades

    def is_ready(self) -> bool:
        return self._ready and not self.clock.skewed()

    def memory(self) -> dict[str, tuple[int, int]]:
        """The member's queues and caches: name -> (size now, its budget), for tests,
        the simulator's checker and operators (docs/OPERATIONS.md, "Limits and budgets")."""
        options, limits = self.options, self.mempool.limits
        return {
            "inbox": (self._inbox.statistics().current_buffer_used, options.inbox),
            "inbox_bytes": (self._inbox_bytes, options.inbox_bytes),
            "verified_bytes": (self.entries.verified.used_bytes, options.verified_cache_bytes),
            "bad_entries_bytes": (self.entries.bad.used_bytes, options.bad_entry_cache_bytes),
            "envelopes_bytes": (
                self.entries.envelopes.used_bytes,
                options.verified_cache_bytes // 4,
            ),
            "execution_queue": (self.executor.queued_blocks, MAX_QUEUED_BLOCKS),
            "results": (len(self.outcomes), self.outcomes.max_items),
            "waiters": (self.outcomes.waiting(), MAX_WAITERS),
            "recent": (len(self._recent), RECENT_BLOCKS),
            "inflight": (len(self._inflight), MAX_INFLIGHT),
            "mempool": (len(self.mempool), limits.max_items),
            "mempool_bytes": (self.mempool.size_bytes, limits.max_bytes),
        }

    def _phase(self) -> str:
        """What the member is doing, for operators and /readyz."""
        if self.halted is not None:
            return "halted"
        if self._joining:
            return "catching_up"
        if self.clock.skewed():
            return "clock_skew"
        return "ready" if self._ready else "joining"

    def status(self) -> dict[str, Any]:
        s = self.core.status()
        return {
            "node": self.setup.member.name,
            "index": self.me,
            "round": s.round,
            "leader": s.leader,
            "leader_candidates": list(self.election.candidates(s.round)),
            "high_qc_round": s.high_qc_round,
            "committed_height": self.exec_height,
            "consensus_committed_height": s.committed_height,
            # a proposal's height is its leader's claim; a sync reply's is a peer's root
            "highest_seen_height": (
                seen := max(self._highest_seen_height, self.sync.target_height)
            ),
            "lag": max(0, seen - self.exec_height),
            "peers": len(self.transport.connected_peers()),
            "mempool": len(self.mempool),
            "phase": self._phase(),
            "clock_offset_ms": self.clock.offset_ms,
            "syncing": self.sync.running,
            "halted": self.halted,
            "vote_guard_round": self._guard_round,
            "last_deposit_id": self.engine.last_deposit_id,
            "checkpoint_sequence": self.engine.sequence,
            "chain": None if self.watcher is None else queries.jsonable(self.watcher.status()),
            "oracle": self.oracle.status(),
            "listings_pending": len(self.listings),  # series listings we took, not committed
            "committee_key": None
            if (key := self.fairness_key()) is None
            else {"status": key["status"], "epoch": key["epoch"]},
            "checkpointer": None
            if self.checkpointer is None
            else queries.jsonable(self.checkpointer.status()),
            **self.counters,
        }

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        return await self.intake.submit(intents, wait, timeout_s)

    def add_block_listener(self, listener: Callable[[ExecutedBlock], None]) -> None:
        self.executor.add_block_listener(listener)

    # Listings of option series (node/api/listings.py: ListingFacade)

    def submit_listing(self, entry: bytes) -> bool:
        """A signed listing (0x08 entry bytes) from a client: checked as a voter checks
        it, then pooled and forwarded to our peers (whichever member leads next proposes
        it). True when new, False when the same terms are pending already; BadListing
        (with its code) when refused."""
        listing = check_listing(
            entry,
            self.genesis_hash,
            self.committee.public_keys,
            self.listing_quorum,
            self._listing_scheme,
        )
        if listing.series_id in self.engine.books:
            raise BadListing("market_taken", f"market {listing.series_id} exists already")
        new = self.listings.offer(listing)
        if new:  # whichever member leads next proposes it
            self.transport.broadcast(["l", entry])
        return new

    def _on_peer_listing(self, listing: Listing) -> None:
        """A listing a peer took from a client: pooled if every signature holds (a bad
        one is the peer's fault: it checks before it forwards); a full pool or a market
        we have already is no fault, and the listing is dropped."""
        try:
            listing.verify(
                self.genesis_hash,
                self.committee.public_keys,
                self.listing_quorum,
                self._listing_scheme,
            )
        except BadListing as exc:
            raise PeerProtocolError(f"listing: {exc.code}: {exc}") from None
        if listing.series_id in self.engine.books:
            return
        with contextlib.suppress(BadListing):  # listings_full
            self.listings.offer(listing)

    def _listings_committed(self, block: ExecutedBlock) -> None:
        """A committed listing leaves our pool (listed or rejected, it is not proposed
        again); a listed series joins our vol feed."""
        listed = False
        for e in block.entries:
            if e.intent_id is None:
                table = engine_table(e.engine_entry["action"])
                if table is not None:
                    self.listings.committed(table)
                    listed = True
        if listed:
            self.oracle.learn_series(self.engine.genesis.option_markets)

    # Encrypted intents (node/api/fairness.py: EncryptedFacade)

    def _fairness_epoch(self) -> int | None:
        fairness = self.executor.fairness()
        return None if fairness is None else fairness.epoch

    def _grace_epoch(self) -> int | None:
        """The previous key's epoch while it still opens envelopes (a re-key's grace)."""
        current = self._fairness_epoch()
        return next((e for e in self.executor.opening_keys() if e != current), None)

    def fairness_key(self) -> dict[str, Any] | None:
        """The committee key as GET /v1/fairness/key publishes it (None: this committee
        has none and makes none; with a DKG, its status, "pending" until the first key)."""
        keying = self.executor.keying
        if keying is not None:
            return keying.public_json()
        fairness = self.genesis.fairness
        return None if fairness is None else fairness.public_json()

    async def submit_encrypted(
        self, envelopes: list[bytes], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        """Envelopes (decoded by the API already) into the mempool; with `wait`, until
        each commits and executes (its outcome is the inner intent's, or §10.5's)."""
        raws = [envelope_entry(e) for e in envelopes]
        results = await self.intake.admit_envelopes(
            raws, True, self._fairness_epoch(), self._grace_epoch()
        )
        return await self.intake.wait_for(results, wait, timeout_s)

    def account(self, address: bytes) -> dict[str, Any]:
        assets = self.genesis.exchange.assets
        return queries.account(self.engine, self.exec_height, assets, address)

    def checkpoints(self) -> list[dict[str, Any]]:
        return queries.checkpoints(self.engine, self.checkpointer, self.checkpoint_interval)

    # The history index's sources (node/api/indexer.py: ReplaySource, ChainView).

    def replay_blocks(self, after: int) -> Iterator[ExecutedBlock]:
        return self.executor.replay_blocks(after)

    def deposit_origin(self, deposit_id: int) -> tuple[bytes, int] | None:
        return None if self.watcher is None else self.watcher.origin(deposit_id)

    def chain_head(self) -> int | None:
        return None if self.watcher is None or self.watcher.head < 0 else self.watcher.head

    def landed_sequence(self) -> int | None:
        return None if self.checkpointer is None else self.checkpointer.landed_sequence

    def add_chain_listener(self, listener: Callable[[ChainSeen], None]) -> None:
        if self.watcher is not None:
            self.watcher.add_listener(listener)

    def withdrawal_proof(self, sequence: int, withdrawal_id: int) -> dict[str, Any] | None:
        return queries.withdrawal_proof(self.engine, sequence, withdrawal_id)

    def balance_proof(self, address: bytes, asset_id: int) -> dict[str, Any] | None:
        return queries.balance_proof(self.engine, address, asset_id)

    # ------------------------------------------------------------ execution

    async def _commit(self, blocks: Sequence[Block], proof: QuorumCert) -> None:
        if blocks:
            # Committed blocks, and forks at or below the committed round, are done.
            committed_round = blocks[-1].round
            self._inflight = {k: v for k, v in self._inflight.items() if v[3] > committed_round}
        await self.executor.commit(blocks, proof)
        self._ready = self.halted is None

    async def _on_synced_root(self, root: Root) -> None:
        """Sync reached a peer's proven root: store it (the blocks up to it are written
        already) and rebuild the core above it if it is above the core's own. Stored,
        it is what this member's sync answers prove and where a restart rebuilds the
        core; unstored, a member that caught up by sync served the root of its last
        live commit, and two such members could not bring a third back (simulator seed
        210 of the Byzantine sweep: no live commit came, as that third vote was needed)."""
        block, proof = root
        raw = self.storage.load_meta("root")
        stored = -1 if raw is None else Block.from_wire(msgpack.unpackb(raw, raw=False)[0]).height
        if stored < block.height <= self.executor.height:
            record = msgpack.packb([block.to_wire(), proof.to_wire()], use_bin_type=True)
            async with self.executor.storage_lock:
                self.storage.write(WriteBatch(meta={"root": record}))
        if root[0].height > self.core.status().committed_height:
            self.core = self._build_core(root)
            await self._inbox_send.send(Start())


def _bad_dealing(entry: bytes) -> bytes:
    """Test-only Byzantine dealer (dev chain): our dealing with the last member's sealed
    share zeroed (idempotent, so we never send two different dealings); that member
    complains and every replica disqualifies us."""
    if entry[1:2] != b"\x01":  # not a dealing
        return entry
    return entry[:-48] + bytes(48)


def _qc_of(msg: object) -> QuorumCert | None:
    """The verified QC a message carries (a proposal's parent QC, a high QC)."""
    if isinstance(msg, Proposal):
        return msg.block.qc
    if isinstance(msg, TimeoutMsg | SyncInfo):
        return msg.high_qc
    return None


def _round_of(msg: object) -> int | None:
    if isinstance(msg, Vote):
        return msg.vote_data.round
    if isinstance(msg, TimeoutMsg):
        return msg.round
    if isinstance(msg, Proposal):
        return msg.block.round
    return None


def committee_ahead(qc_round: int, status: CoreStatus, options: NodeOptions) -> bool:
    """Whether a verified QC of `qc_round` (2f + 1 signatures: not one peer's claim)
    shows the committee ahead of this member so that only the committed log can bring
    it back: behind in rounds; or current in rounds but not committing; or holding a
    proof that the committee committed past our root whose ancestors we lack. Those
    ancestors may be committed and pruned at every peer. Without the last rule a member
    3 rounds behind waited forever when no new QC could form because its own vote was
    the one missing (RELIABILITY.md, the simulator's seed 94)."""
    return (
        qc_round > status.high_qc_round + options.sync_gap_rounds
        or qc_round > status.committed_round + options.sync_commit_lag_rounds
        or status.pending_commit_round > status.committed_round
    )
