"""Execution: committed blocks through the matching engine, in height order, exactly once.

Every path that applies a block goes through here: blocks the core commits, blocks taken
by log sync, and the committed log replayed at start-up. Each applied block is appended to
the committed log, seals a checkpoint at every checkpoint-interval height, records the
intents' outcomes and wakes the block listeners (indexer, streams, metrics). Heights at
or below `height` are skipped, which makes a `Commit` replayed after a crash harmless.
No path recovers a signature: a committed block's signers entry names them
(node/payload.py).

A member snapshot (taken at the same heights by every member, so that f + 1 of them can
vouch for one) is msgpack([SNAPSHOT_FORMAT, engine snapshot, outcome rows]): the intents'
outcomes are replicated state too, so a member restored from a snapshot answers a
resubmission as the others do.
"""

from __future__ import annotations

import operator
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final

import msgpack
import msgspec
import trio

from consensus.types import Block, QuorumCert, genesis_block
from matching.checkpoint import Checkpoint as EngineCheckpoint
from matching.engine import BlockResult, Engine
from matching.events import Event as EngineEvent
from matching.events import Rejected as EngineRejected
from node.fairness.committee import FairnessGenesis
from node.fairness.decryptor import decode_share_record, encode_share_record
from node.fairness.envelope import Envelope, Rejected, decode_envelope, open_envelope
from node.fairness.group import POINT_BYTES, Point, decode_point
from node.fairness.keying import Keying, KeyingEvent, KeyReady, MemberKeying
from node.fairness.threshold import DecryptionShare, KeyShare, ThresholdPublicKey, combine
from node.genesis import Genesis
from node.intents import (
    Domain,
    Entry,
    IntentError,
    check_signer,
    committed_action,
    committed_intent,
    verify_intent,
)
from node.listing import LISTING_TAG, decode_listing
from node.mempool import Mempool
from node.oracle.observation import OBSERVATION_TAGS, decode_observation
from node.payload import (
    NO_SIGNER,
    TAG_DEPOSIT,
    TAG_DKG,
    TAG_DKG_RELAYED,
    TAG_ENVELOPE,
    committed_contents,
    decode_committed,
    decode_deposit,
    deposit_engine_entry,
    encode_committed,
    split_payload,
)
from node.runtime.decryption import Decryption, off_loop
from node.runtime.logger import log
from node.runtime.outcomes import Outcomes
from node.runtime.verification import EntryVerifier
from node.seam import NodeStorage
from node.store.storage import CorruptStorage, WriteBatch

if TYPE_CHECKING:  # web3 and eth-account cost ~0.8 s of start-up; a chainless member skips them
    from node.chain.checkpointer import Checkpointer
    from node.chain.watcher import ChainWatcher

_DEPOSIT_TAG = bytes((TAG_DEPOSIT,))
_DKG_TAG = bytes((TAG_DKG,))
# Entries no trader signed: no intent id.
_DKG_RELAYED_TAG = bytes((TAG_DKG_RELAYED,))
_COMMITTEE_TAGS = (_DEPOSIT_TAG, *OBSERVATION_TAGS, _DKG_TAG, _DKG_RELAYED_TAG, LISTING_TAG)
SNAPSHOT_FORMAT = 1
_ENVELOPE_TAG = bytes((TAG_ENVELOPE,))
# The entries `Executor.committed_entries` does not read as trader intents.
_OTHER_TAGS: Final = frozenset((_ENVELOPE_TAG, *_COMMITTEE_TAGS))
# An engine entry that stands for an envelope that does not execute: the engine never
# sees it, its outcome is this Rejected (`_run_block`).
ENVELOPE_REJECTED = "envelope_rejected"
# An engine entry that stands for a DKG entry (node/fairness/keying.py): the keying state
# takes it, the engine never sees it, and it has no events.
DKG_ENTRY = "dkg_entry"
# Committed blocks waiting for decryption shares, at most (then commits wait for room).
MAX_QUEUED_BLOCKS = 1_000


_OBSERVED: Final = ("oracle", "vols")  # engine types of observation entries


class Executable(msgspec.Struct, frozen=True):
    """A payload entry ready for the engine, with what the node keeps about it.

    A frozen msgspec struct rather than a frozen dataclass: one is built per entry of
    every executed block, and a frozen dataclass's `__init__` (an `object.__setattr__`
    per field) costs ~6x as much."""

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
    checkpoint: EngineCheckpoint | None = None  # sealed after this block, if it was one


@dataclass(slots=True)
class _Queued:
    """A committed block waiting for its turn (its envelopes' decryption shares, or a
    block before it that waits): what its write batch carries once it executes."""

    block: Block
    record: bytes | None
    meta: dict[str, bytes]
    prune_rounds_below: int | None


@dataclass(frozen=True, slots=True)
class _Sealed:
    """An envelope of a block about to execute that §10.5 lets the committee open."""

    envelope: Envelope
    signer: bytes
    envelope_id: bytes
    r_point: Point


class Executor:
    def __init__(
        self,
        *,
        genesis: Genesis,
        storage: NodeStorage,
        verifier: EntryVerifier,
        outcomes: Outcomes,
        mempool: Mempool,
        snapshot_interval_blocks: int,
        history_blocks: int,
        counters: dict[str, int],
        on_replayed: Callable[[int], None] | None = None,
        dkg_member: tuple[int, int] | None = None,
        on_share: Callable[[int, KeyShare], None] | None = None,
        on_dealings: Callable[[int, list[bytes]], None] | None = None,
    ) -> None:
        """`dkg_member`: (our 1-based index, our DKG secret) when genesis has `[dkg]`;
        `on_share(epoch, share)` stores our share of a key the DKG made (it must be
        durable before it returns: the share is derived once, from the run's dealings)."""
        self._genesis = genesis
        # The committee key as replicated state (genesis [dkg], PROTOCOL.md §10.9).
        self.keying: Keying | None = None if genesis.dkg is None else Keying(genesis.dkg)
        self.member_keying: MemberKeying | None = None
        if self.keying is not None and dkg_member is not None:
            self.member_keying = MemberKeying(self.keying, *dkg_member)
        self._on_share = on_share
        self._on_dealings = on_dealings  # keeps a finished run's dealings (share recovery)
        self.on_key_ready: Callable[[FairnessGenesis], None] | None = None
        self._fairness_cache: FairnessGenesis | None = genesis.fairness
        self._member_addresses = tuple(m.settlement_address for m in genesis.members)
        self._checkpoint_interval = genesis.consensus.checkpoint_interval_blocks
        self._storage = storage
        self._verifier = verifier
        self._outcomes = outcomes
        self._mempool = mempool
        self._snapshot_interval = snapshot_interval_blocks
        self._history_blocks = history_blocks
        self._counters = counters
        self._listeners: list[Callable[[ExecutedBlock], None]] = []
        self.watcher: ChainWatcher | None = None
        self.checkpointer: Checkpointer | None = None
        self.storage_lock = trio.Lock()  # FIFO: committed-log writes in execution order
        # Encrypted intents (docs/PROTOCOL.md §10): the shares exchange (set by the
        # member when genesis publishes a committee key) and the blocks waiting for it.
        self._decryption: Decryption | None = None
        self._decryption_changed = trio.Event()
        self._queue: deque[_Queued] = deque()
        self.queued_ids: set[bytes] = set()  # entries of queued blocks: not proposed again
        self._queue_changed = trio.Event()
        self._executed = trio.Event()
        self.engine, self.height = self._restore(on_replayed)
        self._tip = self._stored_tip()

    @property
    def decryption(self) -> Decryption | None:
        """The decryption-share exchange of the current committee key (None: no key)."""
        return self._decryption

    @decryption.setter
    def decryption(self, room: Decryption | None) -> None:
        self._decryption = room
        self._decryption_changed.set()  # run_queue moves its background tasks over

    # ------------------------------------------------------------ start-up

    def _restore(self, on_replayed: Callable[[int], None] | None) -> tuple[Engine, int]:
        """The latest snapshot (engine and outcomes), then the committed log above it,
        replayed with the signers its blocks name (no recovery)."""
        snap = self._storage.latest_snapshot()
        if snap is None:
            engine, height = Engine(self._genesis.exchange), 0
        else:
            height, data = snap
            engine, keying = self._load_snapshot(data)
            if self.keying is not None:
                assert keying is not None, "a member snapshot without the keying state"
                self._set_keying(keying)
        self._deal_if_due()
        replayed = 0
        # The outcomes of the last blocks (as many entries as Outcomes keeps): their ids
        # are computed once the replay is done, so a long log costs no digests.
        tail: deque[tuple[int, tuple[bytes, ...], list[list[EngineEvent]]]] = deque()
        tail_entries = 0
        for h, record in self._storage.iter_committed(height + 1):
            block_height, timestamp_ms, payload = committed_contents(record)
            assert block_height == h, f"committed log height {h} holds block height {block_height}"
            opened = self._open_stored(engine, h, payload, self.opening_keys())
            entries = [
                e.engine_entry
                for e in self.committed_entries(payload, with_ids=False, opened=opened)
            ]
            result, _ = self._run_block(engine, h, timestamp_ms, entries, live=False)
            self._step_keying(self.keying, h, record, payload)
            tail.append((h, payload, result.events))
            tail_entries += len(payload)
            while tail_entries - len(tail[0][1]) >= self._outcomes.max_items:
                tail_entries -= len(tail.popleft()[1])
            height = h
            replayed += 1
            if on_replayed is not None:
                on_replayed(h)
        domain = self._genesis.domain()
        for h, payload, events in tail:
            ids = [
                None
                if raw[:1] in _COMMITTEE_TAGS
                else decode_envelope(raw[1:]).digest(domain)
                if raw[:1] == _ENVELOPE_TAG
                else committed_action(raw[1:], domain)[3]
                for raw in payload[:-1]  # the signers entry last
            ]
            self._outcomes.record(h, ids, events)
        log.info(
            "engine restored", height=height, from_snapshot=snap is not None, replayed=replayed
        )
        return engine, height

    def _load_snapshot(self, data: bytes, outcomes: bool = True) -> tuple[Engine, Keying | None]:
        """A member snapshot: the engine and the keying state, and the outcomes into
        `self._outcomes`. With genesis [dkg] the snapshot carries a fourth item, the
        keying state (node/fairness/keying.py)."""
        version, engine_data, rows, *rest = msgpack.unpackb(data, raw=False)
        if version != SNAPSHOT_FORMAT:
            raise ValueError(f"member snapshot format {version} (this build reads 1)")
        engine = Engine.restore(engine_data)
        if outcomes:
            self._outcomes.load(rows)
        keying = None
        if self._genesis.dkg is not None and rest:
            keying = Keying.decode(self._genesis.dkg, rest[0])
        return engine, keying

    # ------------------------------------------------------------ the committee key

    def fairness(self) -> FairnessGenesis | None:
        """The committee key envelopes are opened with now: genesis's dealt key, or the
        current key of the DKG (None while the first run is pending)."""
        if self.keying is None:
            return self._genesis.fairness
        record = self.keying.current
        if record is None:
            return None
        cached = self._fairness_cache
        if cached is None or cached.epoch != record.epoch:
            cached = self._fairness_cache = FairnessGenesis(record.epoch, record.key)
        return cached

    def opening_keys(self) -> dict[int, ThresholdPublicKey]:
        """The keys envelopes of the next block to execute open with (epoch -> key):
        the current key, and during a re-key's grace the one it replaced."""
        return _opening_keys_of(self._genesis, self.keying)

    @property
    def takes_envelopes(self) -> bool:
        """Whether this committee orders encrypted intents at all (a key dealt in
        genesis, or a DKG that makes one)."""
        return self._genesis.fairness is not None or self._genesis.dkg is not None

    def _set_keying(self, keying: Keying) -> None:
        self.keying = keying
        if self.member_keying is not None:
            self.member_keying = self.member_keying.following(keying)

    def _deal_if_due(self) -> None:
        member = self.member_keying
        if member is not None and member.needs_dealing():
            member.deal()

    def _step_keying(
        self,
        keying: Keying | None,
        height: int,
        record: bytes | None,
        payload: tuple[bytes, ...],
        author: int | None = None,
    ) -> list[KeyingEvent]:
        """The keying state after committed block `height` (its author from the block,
        or from its committed-log `record`); for our own state, our member's part too."""
        if keying is None:
            return []
        if author is None:
            assert record is not None
            author = msgpack.unpackb(record, raw=False)[3]
        entries = payload[:-1]
        events = keying.apply_block(height, author, entries)
        if keying is self.keying and self.member_keying is not None:
            share = self.member_keying.after_block(entries, events)
            for event in events:
                if isinstance(event, KeyReady) and share is not None and self._on_share:
                    self._on_share(event.record.epoch, share)
                if isinstance(event, KeyReady) and self._on_dealings is not None:
                    dealings = keying.finished_dealings(event.record)
                    if dealings is not None:
                        self._on_dealings(event.record.epoch, [d.raw for d in dealings])
            self._deal_if_due()
        if keying is self.keying and self.on_key_ready is not None:
            fairness = self.fairness()
            if fairness is not None and any(isinstance(e, KeyReady) for e in events):
                self.on_key_ready(fairness)
        return events

    def replay_blocks(self, after: int) -> Iterator[ExecutedBlock]:
        """The executed blocks above height `after`, up to the executed height, re-run on
        a separate engine from the kept log: how a derived index that is missing or
        behind (node/api/indexer.py) catches up through the same listener code. It
        starts from the genesis state when the log still begins at height 1, else from
        the latest snapshot (then history below the snapshot is not delivered, or below
        the log's start when `after` is under the snapshot: the first block delivered
        says where it starts). Read-only: the node's engine, log and outcomes are not
        touched. Call it before the node runs (it holds the event loop)."""
        top = self.height
        snap = self._storage.latest_snapshot()
        keying: Keying | None
        if snap is not None and (snap[0] <= after or self._storage.first_committed_height() > 1):
            engine, keying = self._load_snapshot(snap[1], outcomes=False)
            base = snap[0]
        else:
            base, engine = 0, Engine(self._genesis.exchange)
            keying = None if self._genesis.dkg is None else Keying(self._genesis.dkg)
        for h, record in self._storage.iter_committed(base + 1):
            if h > top:
                break
            _, timestamp_ms, payload = committed_contents(record)
            deliver = h > after
            opened = self._open_stored(engine, h, payload, _opening_keys_of(self._genesis, keying))
            entries = self.committed_entries(payload, with_ids=deliver, opened=opened)
            result, checkpoint = self._run_block(
                engine, h, timestamp_ms, [e.engine_entry for e in entries], live=False
            )
            self._step_keying(keying, h, record, payload)
            if deliver:
                yield ExecutedBlock(h, timestamp_ms, tuple(entries), result, checkpoint=checkpoint)

    def _snapshot(self) -> bytes:
        items = [SNAPSHOT_FORMAT, self.engine.snapshot(), self._outcomes.dump()]
        if self.keying is not None:
            items.append(self.keying.encode())
        data: bytes = msgpack.packb(items, use_bin_type=True)
        return data

    # ------------------------------------------------------------ applying blocks

    def add_block_listener(self, listener: Callable[[ExecutedBlock], None]) -> None:
        """Call `listener` after each block is executed (on the event loop, in height
        order): the hook for indexes, streams and metrics. It must be quick and must not
        raise; it gets the engine's events, so it never needs to re-derive them."""
        self._listeners.append(listener)

    async def commit(self, blocks: Sequence[Block], proof: QuorumCert) -> None:
        """Blocks the core committed (`proof` committed the last): apply the new ones and
        write them, with the new root, in one batch."""
        fresh = [b for b in blocks if b.height > self.queued_height]
        if not fresh:
            return
        root = msgpack.packb([fresh[-1].to_wire(), proof.to_wire()], use_bin_type=True)
        # The consensus blocks up to the new root are in the committed log now: stored once.
        await self._apply_all(fresh, {"root": root}, prune_rounds_below=fresh[-1].round + 1)

    async def commit_synced(self, blocks: Sequence[Block], records: Sequence[bytes]) -> None:
        """Blocks proven committed by sync (each extends the last executed one), with
        the records they were decoded from (stored as received, not encoded again):
        applied and written in one batch, one write for the whole batch."""
        top = self.queued_height
        fresh = [(b, r) for b, r in zip(blocks, records, strict=True) if b.height > top]
        await self._apply_all([b for b, _ in fresh], {}, records=[r for _, r in fresh])
        if fresh:
            await self.wait_executed(fresh[-1][0].height)

    async def _apply_all(
        self,
        blocks: Sequence[Block],
        meta: dict[str, bytes],
        prune_rounds_below: int | None = None,
        records: Sequence[bytes] | None = None,
    ) -> None:
        """Apply `blocks`, then write them in one batch with `meta`; `records` are their
        committed-log records when at hand (else encoded here). The batch also drops
        the log below `history_blocks` (the storage keeps the latest snapshot's record
        and everything above it, so snapshot sync and serving still work)."""
        if not blocks:
            return
        if self._queue or (self.takes_envelopes and any(map(_has_envelopes, blocks))):
            await self._enqueue(blocks, meta, prune_rounds_below, records)
            return
        rows: list[tuple[int, bytes]] = []
        snapshot = None
        for i, block in enumerate(blocks):
            assert block.height == self.height + 1, (
                f"gap: executed {self.height}, got {block.height}"
            )
            rows.append((block.height, encode_committed(block) if records is None else records[i]))
            self._apply(block, self.committed_entries(block.payload))
            if not self.height % self._snapshot_interval:  # `_maybe_snapshot`, inline
                snapshot = (self.height, self._snapshot())
        batch = WriteBatch(
            committed=rows,
            meta=meta,
            snapshot=snapshot,
            prune_blocks_below_round=prune_rounds_below,
            prune_log_below=max(0, self.height - self._history_blocks) or None,
        )
        # Applied in memory: it must reach the disk even when cancelled at the lock's
        # checkpoint, or a restart finds the log behind what this member voted on.
        with trio.CancelScope(shield=True):
            async with self.storage_lock:
                self._storage.write(batch)

    async def install_snapshot(self, height: int, data: bytes, record: bytes) -> None:
        """Replace the engine and the outcomes by a snapshot f + 1 members agree on."""
        engine, keying = self._load_snapshot(data)
        async with self.storage_lock:
            self._storage.install_snapshot(height, data, record)
        if self.keying is not None:
            if keying is None:
                raise ValueError("a member snapshot without the keying state")
            self._set_keying(keying)
            self._deal_if_due()
            # A key the snapshot brought (made while we were away): its share exchange.
            fairness, room = self.fairness(), self.decryption
            stale = room is None or fairness is None or room.fairness.epoch != fairness.epoch
            if fairness is not None and self.on_key_ready is not None and stale:
                self.on_key_ready(fairness)
        while self._queue and self._queue[0].block.height <= height:
            self._dequeue()
        if self.decryption is not None:
            self.decryption.decryptor.forget_below(height + 1)
        self.engine, self.height = engine, height
        self._tip = decode_committed(record)
        if self.watcher is not None:
            self.watcher.applied(engine.last_deposit_id)

    def committed_entries(
        self,
        payload: tuple[bytes, ...],
        with_ids: bool = True,
        opened: dict[int, Executable] | None = None,
    ) -> list[Executable]:
        """The engine entries of a committed block, with the signers its signers entry
        names (checked by 2f + 1 voters before the QC): no recovery. An entry we verified
        ourselves (we voted for the block) comes from the cache with its id; `with_ids`
        False leaves the others' ids None (a replay computes the tail's ids later)."""
        if not payload:
            return []
        entries, signers = split_payload(payload)
        domain = self._verifier.domain
        # A member catching up verified none of these entries: its cache is empty, and
        # a look-up per entry (hashing the entry's bytes) would find nothing.
        known = self._verifier.known if len(self._verifier.verified) else None
        if known is None and with_ids and _OTHER_TAGS.isdisjoint(map(_tag_of, entries)):
            # Only trader intents (a catch-up's usual block): no per-entry branches.
            return list(map(_trader_entry, entries, signers, repeat(domain)))
        out: list[Executable] = []
        append = out.append
        # Trader intents (the usual entry) first: one set look-up for the other tags.
        for index, (raw, signer) in enumerate(zip(entries, signers, strict=True)):
            if raw[:1] in _OTHER_TAGS:
                append(self._committee_entry(index, raw, opened))
                continue
            if known is not None:
                entry = known(raw)
                if entry is not None and entry.signer == signer:
                    append(Executable(entry.to_dict(), signer, entry.intent_id))
                    continue
            if with_ids:
                append(_trader_entry(raw, signer, domain))
                continue
            si = committed_intent(raw[1:])
            engine_entry = {
                "account": si.account,
                "signer": signer,
                "nonce": si.nonce,
                "action": si.action,
            }
            append(Executable(engine_entry, signer, None))
        return out

    def _committee_entry(
        self, index: int, raw: bytes, opened: dict[int, Executable] | None
    ) -> Executable:
        """A payload entry that is not a plain trader intent (`_OTHER_TAGS`): an
        envelope (opened before), a deposit, a DKG message, a series listing or an oracle
        observation."""
        if raw[:1] == _ENVELOPE_TAG:
            assert opened is not None and index in opened, "an envelope executes opened"
            return opened[index]
        if raw[:1] == _DEPOSIT_TAG:
            return Executable(deposit_engine_entry(decode_deposit(raw)), NO_SIGNER, None)
        if raw[:1] in (_DKG_TAG, _DKG_RELAYED_TAG):
            return Executable({"action": {"type": "dkg"}, DKG_ENTRY: True}, NO_SIGNER, None)
        if raw[:1] == LISTING_TAG:  # its signatures were checked by 2f + 1 voters
            return Executable(decode_listing(raw).engine_entry(), NO_SIGNER, None)
        observation = decode_observation(raw)
        address = self._member_addresses[observation.member]
        return Executable(observation.engine_entry(address), NO_SIGNER, None)

    def tip_block(self) -> Block | None:
        """The last executed block (None before the first). Kept in memory: the block is
        applied before its batch is written, and a peer's sync may ask in between."""
        return self._tip

    def tip_id(self) -> bytes:
        """The id of the last executed block (what a synced block must extend)."""
        if self._tip is None:
            return genesis_block(self._genesis.genesis_hash()).id
        return self._tip.id

    def _stored_tip(self) -> Block | None:
        if self.height == 0:
            return None
        rows = self._storage.load_committed(self.height, 1)
        assert rows, f"committed log lacks executed height {self.height}"
        return decode_committed(rows[0][1])

    def _run_block(
        self,
        engine: Engine,
        height: int,
        timestamp_ms: int,
        entries: list[dict[str, Any]],
        live: bool,
    ) -> tuple[BlockResult, EngineCheckpoint | None]:
        """The deterministic step every path shares (commit, replay, sync): apply the
        block, then seal a checkpoint at every checkpoint-interval height. `live`: a
        block executed while running (not replayed at start-up), whose checkpoint is
        signed now; replayed checkpoints are handed over by `Node.run` before catch-up."""
        if entries and _has_special(entries):
            result = engine.apply_block(
                timestamp_ms,
                [e for e in entries if ENVELOPE_REJECTED not in e and DKG_ENTRY not in e],
            )
            events = iter(result.events)
            result = BlockResult(
                result.timestamp_ms,
                result.expired,
                [
                    [e[ENVELOPE_REJECTED]]
                    if ENVELOPE_REJECTED in e
                    else []
                    if DKG_ENTRY in e
                    else next(events)
                    for e in entries
                ],
                result.end,
            )
        else:
            result = engine.apply_block(timestamp_ms, entries)
        checkpoint = None
        if height % self._checkpoint_interval == 0:
            checkpoint = engine.checkpoint()
            if live and self.checkpointer is not None:
                self.checkpointer.on_checkpoint(checkpoint)
        return result, checkpoint

    def _apply(self, block: Block, entries: list[Executable]) -> None:
        started = time.perf_counter()
        engine_entries = [e.engine_entry for e in entries]
        result, checkpoint = self._run_block(
            self.engine, block.height, block.timestamp_ms, engine_entries, live=True
        )
        if self.keying is not None:
            self._step_keying(self.keying, block.height, None, block.payload, block.author)
        apply_s = time.perf_counter() - started
        self.height, self._tip = block.height, block
        counters = self._counters
        counters["blocks_committed"] += 1
        if self.watcher is not None:
            self.watcher.applied(self.engine.last_deposit_id)
        if entries:  # an empty block (most of a quiet log) has nothing more to record
            self._record_entries(block, entries, result)
        if self._listeners:
            executed = ExecutedBlock(
                block.height, block.timestamp_ms, tuple(entries), result, apply_s, checkpoint
            )
            for listener in self._listeners:
                listener(executed)

    def _record_entries(self, block: Block, entries: list[Executable], result: BlockResult) -> None:
        """After a block with entries: the counters, the verified-entry cache and the
        mempool (what can never apply again), and the intents' outcomes."""
        observations = 0  # price and vol observations: first in a block (PROTOCOL §7.3)
        for e in entries:
            if e.intent_id is not None or e.engine_entry["action"]["type"] not in _OBSERVED:
                break
            observations += 1
        self._counters["observations_committed"] += observations
        self._counters["entries_committed"] += len(entries) - observations
        verifier, mempool = self._verifier, self._mempool
        # Both are empty while a member catches up (it verified and pooled nothing): then
        # there is nothing to forget or remove, and the per-entry calls are skipped.
        if len(verifier.verified) or len(verifier.envelopes):
            for raw in block.payload[: len(entries)]:  # the signers entry last
                verifier.forget(raw)
        if len(mempool):
            for entry in entries:
                if entry.intent_id is not None:
                    # By (signer, nonce): that pair can never apply again. Not by id: a
                    # bad copy (the genuine id, another signer) must not take the genuine
                    # along.
                    mempool.remove_applied(entry.signer, entry.engine_entry["nonce"])
        if _ENVELOPE_TAG in map(_tag_of, block.payload):
            # The pool holds an envelope under its own signer (an agent may seal an
            # intent its account signed), and its (signer, nonce) can never apply again.
            raws, signers = split_payload(block.payload)
            for raw, signer in zip(raws, signers, strict=True):
                if raw[:1] == _ENVELOPE_TAG:
                    mempool.remove_applied(signer, int.from_bytes(raw[38:46], "big"))
        self._outcomes.record(block.height, [e.intent_id for e in entries], result.events)

    def _maybe_snapshot(self) -> tuple[int, bytes] | None:
        """Every member snapshots at the same heights (what snapshot sync relies on)."""
        if self.height % self._snapshot_interval:
            return None
        return self.height, self._snapshot()

    # ------------------------------------------------------------ encrypted intents

    @property
    def queued_blocks(self) -> int:
        """Committed blocks waiting for decryption shares (or behind one that waits)."""
        return len(self._queue)

    @property
    def queued_height(self) -> int:
        """The height of the last committed block handed to execution (executed or
        waiting for decryption shares)."""
        return self._queue[-1].block.height if self._queue else self.height

    async def _enqueue(
        self,
        blocks: Sequence[Block],
        meta: dict[str, bytes],
        prune_rounds_below: int | None,
        records: Sequence[bytes] | None,
    ) -> None:
        """Committed blocks behind one that waits for decryption shares: they execute in
        order (`run_queue`); the commit's meta and pruning go with its last block."""
        while len(self._queue) >= MAX_QUEUED_BLOCKS:
            self._executed = trio.Event()
            await self._executed.wait()
        intent_id = self._verifier.intent_id
        for i, block in enumerate(blocks):
            assert block.height == self.queued_height + 1, (
                f"gap: queued {self.queued_height}, got {block.height}"
            )
            last = i == len(blocks) - 1
            record = None if records is None else records[i]
            queued = _Queued(
                block, record, meta if last else {}, prune_rounds_below if last else None
            )
            self._queue.append(queued)
            self.queued_ids.update(intent_id(raw) for raw in block.payload[:-1])
            self._release_early(block)
        self._queue_changed.set()

    def _release_early(self, block: Block) -> None:
        """Hand the decryption room a committed block whose envelopes are all signed by
        their accounts: which of them open does not depend on the state before it
        (§10.5), so its shares can be made and exchanged now, while the blocks ahead of
        it execute. Any agent-signed envelope: the block waits for the head."""
        if self.decryption is None or not _has_envelopes(block):
            return
        wanted: dict[int, Point] = {}
        fairness = self._genesis.fairness
        entries, signers = split_payload(block.payload)
        for index, (raw, signer) in enumerate(zip(entries, signers, strict=True)):
            if raw[:1] != _ENVELOPE_TAG:
                continue
            envelope, _, point = self._sealed_parts(raw)
            if signer != envelope.account:
                return
            if fairness is not None and envelope.epoch == fairness.epoch:
                wanted[index] = point
        self.decryption.release(block.height, wanted)

    def _sealed_parts(self, raw: bytes) -> tuple[Envelope, bytes, Point]:
        """An envelope entry's envelope, id and R: from the verifier's cache when intake
        or the proposal check saw it (on the consensus task, this is most of the cost),
        else decoded. The block is committed, so its entries decode."""
        known = self._verifier.envelopes.get(raw)
        if known is not None:
            return known.envelope, known.envelope_id, known.r_point
        envelope = decode_envelope(raw[1:])
        point = decode_point(envelope.kem[:POINT_BYTES], "KEM point")
        return envelope, envelope.digest(self._verifier.domain), point

    def _dequeue(self) -> _Queued:
        queued = self._queue.popleft()
        intent_id = self._verifier.intent_id
        self.queued_ids.difference_update(intent_id(raw) for raw in queued.block.payload[:-1])
        return queued

    async def wait_executed(self, height: int) -> None:
        while self.height < height:
            self._executed = trio.Event()
            await self._executed.wait()

    async def run_queue(self) -> None:
        """Execute the queued blocks in height order, each once its envelopes' shares
        are in (the member runs this task when genesis publishes a committee key or runs
        the DKG), beside the current decryption room's share checker and early releaser
        (restarted on the room the next key brings)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_rooms)
            await self._run_queue()
            nursery.cancel_scope.cancel()

    async def _run_rooms(self) -> None:
        """Run the current decryption room's background tasks; a new key's room (the
        member swaps it in at `on_key_ready`) replaces the old one's."""
        while True:
            room = self._decryption
            changed = self._decryption_changed = trio.Event()
            if room is None:
                await changed.wait()
                continue
            async with trio.open_nursery() as nursery:
                nursery.start_soon(room.run)
                await changed.wait()
                nursery.cancel_scope.cancel()

    async def _run_queue(self) -> None:
        while True:
            while not self._queue:
                self._queue_changed = trio.Event()
                await self._queue_changed.wait()
            block = self._queue[0].block
            keys = self.opening_keys()
            sealed, opened = self._plan_envelopes(self.engine, block.payload, keys)
            shares: dict[int, tuple[DecryptionShare, ...]] = {}
            if sealed:
                wanted = {i: s.r_point for i, s in sealed.items()}
                epochs = {i: s.envelope.epoch for i, s in sealed.items()}
                assert self.decryption is not None, "a committee key but no share exchange"
                shares = await self.decryption.open(block.height, wanted, epochs)
            if not self._queue or self._queue[0].block is not block:
                continue  # a snapshot was installed meanwhile
            if sealed:
                inner = await off_loop(
                    len(sealed),
                    decrypt_sealed,
                    keys,
                    self._verifier.domain,
                    sealed,
                    shares,
                    True,
                )
                await trio.lowlevel.checkpoint_if_cancelled()  # before applying, not after
                if not self._queue or self._queue[0].block is not block:
                    continue
                opened.update(self._judge_opened(self.engine, sealed, inner))
            queued = self._dequeue()
            self._apply(block, self.committed_entries(block.payload, opened=opened))
            batch = WriteBatch(
                committed=[(block.height, queued.record or encode_committed(block))],
                meta=queued.meta,
                snapshot=self._maybe_snapshot(),
                prune_blocks_below_round=queued.prune_rounds_below,
                prune_log_below=max(0, self.height - self._history_blocks) or None,
                shares=[(block.height, encode_share_record(shares))] if shares else [],
            )
            # Applied in memory: it must reach the disk, even if we are being cancelled
            # (the lock's checkpoint would otherwise leave the engine ahead of the log).
            with trio.CancelScope(shield=True):
                async with self.storage_lock:
                    self._storage.write(batch)
            self._executed.set()

    def _plan_envelopes(
        self, engine: Engine, payload: tuple[bytes, ...], keys: Mapping[int, ThresholdPublicKey]
    ) -> tuple[dict[int, _Sealed], dict[int, Executable]]:
        """The envelopes of a block about to execute on `engine`: those to open (entry
        index -> sealed), and the outcome of those §10.5 refuses a share: a signer the
        account has not authorized (`unauthorized`), an epoch none of `keys` is for
        (`undecryptable`: not the current key's, nor the previous one's in its grace).
        The signers entry names each envelope's signer (checked by 2f + 1 voters):
        nothing is recovered here."""
        sealed: dict[int, _Sealed] = {}
        opened: dict[int, Executable] = {}
        if _ENVELOPE_TAG not in map(_tag_of, payload):
            return sealed, opened
        entries, signers = split_payload(payload)
        for index, (raw, signer) in enumerate(zip(entries, signers, strict=True)):
            if raw[:1] != _ENVELOPE_TAG:
                continue
            envelope, envelope_id, point = self._sealed_parts(raw)
            if signer != envelope.account and not engine.is_authorized(envelope.account, signer):
                reason = Rejected("unauthorized", "the envelope's signer may not sign for it")
            elif envelope.epoch not in keys:
                reason = Rejected("undecryptable", "sealed to another epoch's key")
            else:
                sealed[index] = _Sealed(envelope, signer, envelope_id, point)
                continue
            opened[index] = _rejected_envelope(envelope, signer, envelope_id, reason)
        return sealed, opened

    def _open_with(
        self,
        engine: Engine,
        sealed: dict[int, _Sealed],
        shares: dict[int, tuple[DecryptionShare, ...]],
        verified: bool,
        keys: Mapping[int, ThresholdPublicKey],
    ) -> dict[int, Executable]:
        """Each sealed envelope opened with the key its shares combine to (§10.4), then
        its inner intent checked as any intent is (§10.5): the same everywhere."""
        if not sealed:
            return {}
        inner = decrypt_sealed(keys, self._verifier.domain, sealed, shares, verified)
        return self._judge_opened(engine, sealed, inner)

    def _judge_opened(
        self, engine: Engine, sealed: dict[int, _Sealed], inner: dict[int, Entry | Rejected]
    ) -> dict[int, Executable]:
        """The state part of opening (`decrypt_sealed` did the rest): an inner intent's
        signer's authority as of the state the share decision used. An inner intent its
        account did not authorize is this envelope's outcome (`bad_inner_intent`), not
        "nobody's" as an unauthorized plain entry is, since the envelope's id covers the
        whole ciphertext and its own signer was authorized."""
        out: dict[int, Executable] = {}
        for index, s in sealed.items():
            opened = inner[index]
            if isinstance(opened, Entry):
                try:
                    check_signer(opened, engine.is_authorized)
                except IntentError as error:
                    opened = Rejected("bad_inner_intent", f"{error.code}: {error.message}")
            if isinstance(opened, Rejected):
                out[index] = _rejected_envelope(s.envelope, s.signer, s.envelope_id, opened)
            else:
                out[index] = Executable(opened.to_dict(), opened.signer, s.envelope_id)
        return out

    def _open_stored(
        self,
        engine: Engine,
        height: int,
        payload: tuple[bytes, ...],
        keys: Mapping[int, ThresholdPublicKey],
    ) -> dict[int, Executable] | None:
        """A replayed block's envelopes, opened with the shares stored beside it."""
        sealed, opened = self._plan_envelopes(engine, payload, keys)
        if sealed:
            record = self._storage.load_shares(height)
            if record is None:
                raise CorruptStorage(f"no decryption shares stored for height {height}")
            shares = decode_share_record(record)
            opened.update(self._open_with(engine, sealed, shares, True, keys))
        return opened


def decrypt_sealed(
    keys: Mapping[int, ThresholdPublicKey],
    domain: Domain,
    sealed: dict[int, _Sealed],
    shares: dict[int, tuple[DecryptionShare, ...]],
    verified: bool,
) -> dict[int, Entry | Rejected]:
    """The state-free part of opening a block's envelopes: combine each key, open the
    envelope, check the inner intent's signature. Pure (no engine, no I/O), so the live
    path runs it in a worker thread, off the event loop."""
    out: dict[int, Entry | Rejected] = {}
    for index, s in sealed.items():
        public = keys[s.envelope.epoch]
        key = combine(public, s.r_point, shares[index], verified=verified).key
        inner = open_envelope(s.envelope, key)
        if isinstance(inner, Rejected):
            out[index] = inner
            continue
        try:
            out[index] = verify_intent(inner, domain)
        except IntentError as error:
            out[index] = Rejected("bad_inner_intent", f"{error.code}: {error.message}")
    return out


def _opening_keys_of(genesis: Genesis, keying: Keying | None) -> dict[int, ThresholdPublicKey]:
    """The keys envelopes of the next block open with under `keying` (epoch -> key):
    genesis's dealt key, or the DKG's current key and, in a re-key's grace, the one it
    replaced (PROTOCOL.md §10.9)."""
    if keying is not None:
        return keying.opening_keys()
    fairness = genesis.fairness
    return {} if fairness is None else {fairness.epoch: fairness.key}


def _has_envelopes(block: Block) -> bool:
    return _ENVELOPE_TAG in map(_tag_of, block.payload)


# Scans of every entry of a block, run in C (map over C callables, no Python frame per
# entry): they run for every block executed, and a block holds thousands of entries.
_tag_of: Final = operator.itemgetter(slice(0, 1))  # an entry's tag byte, as raw[:1]


def _has_special(entries: list[dict[str, Any]]) -> bool:
    """Whether any engine entry stands for an envelope that does not execute or a DKG
    entry (the engine sees neither)."""
    return any(map(operator.contains, entries, repeat(ENVELOPE_REJECTED))) or any(
        map(operator.contains, entries, repeat(DKG_ENTRY))
    )


def _trader_entry(raw: bytes, signer: bytes, domain: Domain) -> Executable:
    """A committed trader intent (tag 0x01) as the engine takes it, with its id; its
    signer is the one the block's signers entry names."""
    account, nonce, action, intent_id = committed_action(raw[1:], domain)
    engine_entry = {"account": account, "signer": signer, "nonce": nonce, "action": action}
    return Executable(engine_entry, signer, intent_id)


def _rejected_envelope(
    envelope: Envelope, signer: bytes, envelope_id: bytes, reason: Rejected
) -> Executable:
    """An envelope that does not execute: its outcome, under its id (§10.5)."""
    engine_entry = {
        "account": envelope.account,
        "signer": signer,
        "nonce": envelope.nonce,
        "action": {"type": "encrypted"},
        ENVELOPE_REJECTED: EngineRejected(reason.code, reason.detail),
    }
    return Executable(engine_entry, signer, envelope_id)
