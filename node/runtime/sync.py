"""State sync: a member that is behind fetches committed blocks (or, far behind, an engine
snapshot) from its peers, and serves theirs (docs/PROTOCOL.md §9.3).

Nothing a peer sends is taken on its word. A block is taken only if it extends our last
executed block (ids are content hashes) and a QC whose signatures we check proves it
committed by the 2-chain rule: one QC check for a whole batch, and no signature recovery
(the proven blocks name their entries' signers, node/payload.py). A snapshot is taken
only if f + 1 members report the same (height, digest, block id). A peer whose answer
does not check out is penalized and the next one is asked.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgpack
import trio

from consensus.committee import Committee
from consensus.types import Block, QuorumCert
from consensus.verifier import Verifier
from node.net.messages import (
    MAX_SYNC_BLOCKS,
    MAX_SYNC_REPLY_BYTES,
    SnapshotChunk,
    SnapshotInfo,
    SyncReply,
)
from node.payload import decode_committed
from node.runtime.execution import Executor
from node.runtime.logger import log
from node.runtime.options import NodeOptions
from node.seam import NodeStorage, PeerNetwork

SNAPSHOT_CHUNK_BYTES = 1 << 20  # under the transport's 4 MiB frame limit
# Records a sync keeps decoded while their committing QC has not arrived: a few replies'
# worth (an honest log commits a block every few heights), then the peer is at fault.
MAX_PENDING_BLOCKS = 4 * MAX_SYNC_BLOCKS
MAX_PENDING_BYTES = 4 * MAX_SYNC_REPLY_BYTES
BULK_GC_THRESHOLD = 50_000  # allocations between young collections while a sync runs
Root = tuple[Block, QuorumCert]
Pending = tuple[Block, bytes]  # a decoded record and its bytes (stored as received)


class LogSync:
    def __init__(
        self,
        *,
        me: int,
        committee: Committee,
        network: PeerNetwork,
        storage: NodeStorage,
        executor: Executor,
        verifier: Verifier,
        options: NodeOptions,
        counters: dict[str, int],
        peer_fault: Callable[[int, Exception], None],
        on_root: Callable[[Root], Awaitable[None]],
    ) -> None:
        self._me = me
        self._n = committee.n
        self._f = committee.f
        self._network = network
        self._storage = storage
        self._executor = executor
        self._verifier = verifier
        self._options = options
        self._counters = counters
        self._peer_fault = peer_fault
        self._on_root = on_root  # a synced root above the core's: rebuild the core there
        self.running = False
        self.target_height = 0  # the highest committed height a sync reply showed
        self._replies: trio.MemorySendChannel[tuple[int, Any]] | None = None
        self._snapshot_cache: tuple[int, bytes, bytes] | None = None

    # ------------------------------------------------------------ fetching

    def start(self, nursery: trio.Nursery, peer: int) -> None:
        """Sync in the background from `peer` first, unless a sync is running."""
        if self.running:
            return
        self.running = True
        nursery.start_soon(self.run, peer)

    def deliver(self, peer: int, reply: SyncReply | SnapshotInfo | SnapshotChunk) -> None:
        """A reply from the peer boundary: for the running sync, else a late answer."""
        if self._replies is None:
            return
        # The sync reads one answer at a time; one more is noise, dropped.
        with contextlib.suppress(trio.WouldBlock):
            self._replies.send_nowait((peer, reply))

    async def run(self, first_peer: int, give_up_after: int | None = None) -> None:
        """Fetch committed blocks above our height, check each batch by its QCs and
        execute it; then hand the peer's proven root to `on_root`. Ends when a peer's
        proven tip is reached, when a peer shows it is not ahead of us, or after 2n
        failed answers in a row (`give_up_after` missed answers at start-up, when the
        peers may all be down).

        Pipelined: while one range is checked and executed, the next one is already
        asked for. The last records of a range are often not proven yet (their
        committing QC is in the next blocks): they are kept, already decoded and
        chained (`pending`), and proven with the next range, from the same peer."""
        self.running = True
        self._counters["syncs"] += 1
        send, receive = trio.open_memory_channel[tuple[int, Any]](4)
        self._replies = send
        executor = self._executor
        peer = first_peer
        root: Root | None = None
        log.info("log sync started", peer=peer, from_height=executor.height + 1)
        snapshot_tried = False
        misses = 0
        failures = 0
        pending: list[Pending] = []  # decoded records above our height, not yet proven
        prefetched: tuple[int, int] | None = None  # (peer, from_height) asked ahead
        try:
            with _bulk_gc():
                while failures < 2 * self._n:
                    asked = executor.height + 1 + len(pending)
                    if prefetched != (peer, asked):
                        self._network.send(peer, ["sr", asked, MAX_SYNC_BLOCKS])
                    prefetched = None
                    reply: SyncReply | None = None
                    with trio.move_on_after(self._options.sync_timeout_s):
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
                        pending.clear()
                        peer = self._next_peer(peer)
                        continue
                    self.target_height = max(self.target_height, reply.root_height)
                    gap = reply.root_height - executor.height
                    ahead = asked + len(reply.records)
                    if (
                        reply.records
                        and ahead <= reply.root_height
                        and gap <= self._options.snapshot_sync_gap_blocks
                    ):
                        # The peer reads and sends the next range while we check and
                        # execute this one.
                        self._network.send(peer, ["sr", ahead, MAX_SYNC_BLOCKS])
                        prefetched = (peer, ahead)
                    if gap > self._options.snapshot_sync_gap_blocks and not snapshot_tried:
                        snapshot_tried = True
                        if await self._snapshot_sync(receive):
                            pending.clear()
                            continue  # ask again, from above the snapshot
                    try:
                        taken, added, tip = await self._take(reply, pending)
                    except Exception as exc:  # the reply did not check out: the peer's fault
                        self._peer_fault(peer, exc)
                        failures += 1
                        pending.clear()
                        peer = self._next_peer(peer)
                        continue
                    if tip is not None:
                        root = tip
                        break
                    if taken or added:
                        failures = 0
                        continue
                    # Nothing new from this peer: it is not ahead of us (or withholds).
                    failures += 1
                    if reply.root_height <= executor.height:
                        break
                    pending.clear()
                    peer = self._next_peer(peer)
        finally:
            self._replies = None
            self.running = False
        if root is not None:
            await self._on_root(root)
        log.info("log sync done", height=executor.height)

    async def _take(self, reply: SyncReply, pending: list[Pending]) -> tuple[int, int, Root | None]:
        """Execute what a sync reply proves committed, with the `pending` records of
        the previous replies before its own; what stays unproven is left in `pending`.
        Returns how many records were taken, how many the reply added, and, when the
        reply reached the peer's root with its committing QC, that root. Raises (the
        peer's fault) if a record does not decode or chain, if a QC does not check out,
        or if more records than `MAX_PENDING_BLOCKS` (or `MAX_PENDING_BYTES`) stay
        unproven."""
        height = self._executor.height
        fresh = [(decode_committed(r), r) for r in reply.records]
        added = [(b, r) for b, r in fresh if b.height > height]
        # The core may have executed some of them meanwhile (a sync runs beside it).
        pairs = [(b, r) for b, r in pending if b.height > height] + added
        proof = None if reply.proof is None else QuorumCert.from_wire(reply.proof)
        if not pairs and proof is not None and reply.root_height == height:
            tip = self._executor.tip_block()
            if tip is not None and _commits(proof, tip.id):
                self._verifier.verify_qc(proof)
                return 0, 0, (tip, proof)
        records = [b for b, _ in pairs]
        taken = self.committed_prefix(records, proof)
        rest = pairs[taken:]
        if len(rest) > MAX_PENDING_BLOCKS or sum(len(r) for _, r in rest) > MAX_PENDING_BYTES:
            raise ValueError(f"sync: {len(rest)} records and no QC that commits them")
        if taken:
            await self._executor.commit_synced(records[:taken], [r for _, r in pairs[:taken]])
        pending[:] = rest
        if proof is not None and records and taken == len(records):
            return taken, len(added), (records[-1], proof)
        return taken, len(added), None

    def committed_prefix(self, blocks: list[Block], proof: QuorumCert | None) -> int:
        """How many leading records are proven committed. They must chain from our last
        executed block (ids are content hashes, so the chain fixes every payload). A block
        is committed directly when its child in the very next round is certified (the
        2-chain rule), and with it all its ancestors: find the last such block, checking
        the certifying QC's signatures. `proof` (sent with the peer's tip) is the QC that
        committed the last record."""
        if not blocks:
            return 0
        prev_id = self._executor.tip_id()
        for block in blocks:
            if block.qc.vote_data.block_id != prev_id:
                raise ValueError(f"sync: block at height {block.height} does not extend our chain")
            prev_id = block.id
        if proof is not None and _commits(proof, blocks[-1].id):
            self._verifier.verify_qc(proof)
            return len(blocks)
        for i in range(len(blocks) - 3, -1, -1):
            if blocks[i + 1].round == blocks[i].round + 1:
                self._verifier.verify_qc(blocks[i + 2].qc)
                return i + 1
        return 0

    def _next_peer(self, peer: int) -> int:
        peer = (peer + 1) % self._n
        return (peer + 1) % self._n if peer == self._me else peer

    # ------------------------------------------------------------ serving

    def serve_blocks(self, peer: int, from_height: int, limit: int) -> None:
        """Answer "sr" (ranges checked at the boundary): committed records from
        `from_height`, at most `limit` and `sync_batch_bytes`, with the QC that committed
        our root when they reach it."""
        height = self._executor.height
        raw_root = self._storage.load_meta("root")
        if raw_root is None or from_height > height + 1:
            self._network.send(peer, ["sp", from_height, [], None, height])
            return
        root_wire, proof_wire = msgpack.unpackb(raw_root, raw=False)
        root_height = Block.from_wire(root_wire).height
        if from_height == root_height + 1:
            # The asker is at our root (after a snapshot, say): no records, but the QC
            # that committed the root, so it can rebuild its core there.
            self._network.send(peer, ["sp", from_height, [], proof_wire, root_height])
            return
        if from_height > root_height:
            self._network.send(peer, ["sp", from_height, [], None, root_height])
            return
        # Inline: the connection is shared with the (inline) writers; a few hundred rows.
        rows = self._storage.load_committed(
            from_height,
            min(limit, max(0, root_height - from_height + 1)),
            max_bytes=self._options.sync_batch_bytes,
        )
        if rows and rows[0][0] != from_height:
            rows = []  # our log starts above that height (we installed a snapshot)
        records: list[bytes] = []
        size = 0
        for _, data in rows:
            if records and size + len(data) > self._options.sync_batch_bytes:
                break
            records.append(data)
            size += len(data)
        tip = bool(records) and from_height + len(records) - 1 == root_height
        proof = proof_wire if tip else None
        self._network.send(peer, ["sp", from_height, records, proof, root_height])

    def serve_snapshot_info(self, peer: int) -> None:
        info = self._snapshot_info()
        self._network.send(peer, ["ssi", *(info or (0, b"", b""))])

    def serve_snapshot_chunk(self, peer: int, height: int, offset: int) -> None:
        latest = self._storage.latest_snapshot()
        if latest is None or latest[0] != height or not 0 <= offset < len(latest[1]):
            return
        rows = self._storage.load_committed(height, 1)
        if not rows or rows[0][0] != height:
            return
        data = latest[1]
        chunk = data[offset : offset + SNAPSHOT_CHUNK_BYTES]
        self._network.send(peer, ["ssd", height, offset, chunk, len(data), rows[0][1]])

    def _snapshot_info(self) -> tuple[int, bytes, bytes] | None:
        """(height, blake2b digest, block id at that height) of our latest snapshot."""
        latest = self._storage.latest_snapshot()
        if latest is None:
            return None
        height, data = latest
        cached = self._snapshot_cache
        if cached is None or cached[0] != height:
            rows = self._storage.load_committed(height, 1)
            if not rows or rows[0][0] != height:
                return None
            block_id = decode_committed(rows[0][1]).id
            cached = self._snapshot_cache = (height, _digest(data), block_id)
        return cached

    # ------------------------------------------------------------ snapshot sync

    async def _fetch_snapshot(
        self,
        receive: trio.MemoryReceiveChannel[tuple[int, Any]],
        agreed: tuple[int, bytes, bytes],
        sources: list[int],
    ) -> tuple[bytes, bytes] | None:
        """The agreed snapshot (height, digest, block id), chunk by chunk, from one source
        at a time. A source that goes silent, changes its story (the total size) or
        serves bytes that do not match the digest is dropped and the next one starts
        again from offset 0; the whole fetch is bounded in time."""
        height = agreed[0]
        timeout_s = self._options.sync_timeout_s
        with trio.move_on_after(timeout_s * (len(sources) + 2) + 64 * timeout_s):
            for source in sources:
                data = bytearray()
                total: int | None = None
                record = b""
                while total is None or len(data) < total:
                    self._network.send(source, ["ssg", height, len(data)])
                    reply: SnapshotChunk | None = None
                    with trio.move_on_after(timeout_s):
                        while reply is None:
                            sender, message = await receive.receive()
                            if (
                                isinstance(message, SnapshotChunk)
                                and sender == source
                                and message.height == height
                                and message.offset == len(data)
                            ):
                                reply = message
                    if reply is None or not reply.chunk:
                        break  # silent, or nothing more to give: the next source
                    if total is None:
                        total = reply.total
                    if reply.total != total or total > self._options.max_snapshot_bytes:
                        break
                    data += reply.chunk
                    record = reply.record
                if total is not None and len(data) == total and _matches(data, record, agreed):
                    return bytes(data), record
        return None

    async def _snapshot_sync(self, receive: trio.MemoryReceiveChannel[tuple[int, Any]]) -> bool:
        """Far behind: install a peer's engine snapshot instead of replaying every block.
        A snapshot cannot be checked against a QC, so only one that f + 1 members report
        with the same (height, digest, block id) is taken: at least one of them is honest,
        and honest members snapshot the same canonical bytes at the same heights."""
        executor = self._executor
        self._network.broadcast(["ssr"])
        votes: dict[tuple[int, bytes, bytes], set[int]] = {}
        answered: set[int] = set()
        with trio.move_on_after(self._options.sync_timeout_s):
            while len(answered) < self._n - 1:
                peer, message = await receive.receive()
                if not isinstance(message, SnapshotInfo) or peer in answered:
                    continue
                answered.add(peer)
                key = (message.height, message.digest, message.block_id)
                if message.height > executor.height:
                    votes.setdefault(key, set()).add(peer)
        agreed = [k for k, who in votes.items() if len(who) >= self._f + 1]
        if not agreed:
            log.info("snapshot sync: no snapshot that f + 1 peers agree on")
            return False
        height, digest, block_id = max(agreed)
        sources = sorted(votes[(height, digest, block_id)])
        fetched = await self._fetch_snapshot(receive, (height, digest, block_id), sources)
        if fetched is None:
            log.warning("snapshot sync: no source served the snapshot f + 1 peers reported")
            return False
        data, record = fetched
        await executor.install_snapshot(height, data, record)
        self._snapshot_cache = None
        self._counters["snapshot_syncs"] += 1
        log.info("snapshot sync installed", height=height, bytes=len(data))
        return True


_bulk_gc_depth = 0  # syncs running in this process (the simulator runs many members)
_saved_gc_threshold: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def _bulk_gc() -> Iterator[None]:
    """Fewer garbage-collector passes while syncs run. A bulk sync allocates millions
    of short-lived objects (decoded blocks, engine entries, events), and with the
    default thresholds the collector runs every 700 allocations and keeps re-scanning
    the long-lived heap (the engine's books and accounts): at catch-up speed a
    noticeable share of the time. So the heap as it was is frozen (never scanned again
    until the last sync ends) and the youngest generation is collected less often.
    Collection only reclaims cycles; what the node computes does not change."""
    global _bulk_gc_depth, _saved_gc_threshold
    if _bulk_gc_depth == 0:
        _saved_gc_threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(BULK_GC_THRESHOLD, *_saved_gc_threshold[1:])
    _bulk_gc_depth += 1
    try:
        yield
    finally:
        _bulk_gc_depth -= 1
        if _bulk_gc_depth == 0:
            gc.set_threshold(*_saved_gc_threshold)
            gc.unfreeze()


def _matches(data: bytes | bytearray, record: bytes, agreed: tuple[int, bytes, bytes]) -> bool:
    """Snapshot bytes and the committed record at its height are what f + 1 reported."""
    height, digest, block_id = agreed
    try:
        block = decode_committed(record)
    except Exception:  # a source's bad record
        return False
    return _digest(bytes(data)) == digest and block.id == block_id and block.height == height


def _commits(proof: QuorumCert, block_id: bytes) -> bool:
    """`proof` certifies a child of `block_id` in the very next round: by the 2-chain
    rule, that block is committed (once the QC's signatures check out)."""
    vote = proof.vote_data
    return vote.parent_id == block_id and vote.round == vote.parent_round + 1


def _digest(snapshot: bytes) -> bytes:
    return hashlib.blake2b(snapshot, digest_size=32).digest()
