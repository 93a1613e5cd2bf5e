"""Committee peer transport: authenticated, sealed, batched TCP links between members.

The room for moving consensus messages between committee members. It knows the members
(id → host, port, Ed25519 key, pinned from genesis) and nothing of what the messages
mean: the consensus layer verifies its own signatures, and the runtime's peer boundary
(node/net/messages.py) checks every message's shape. Wire format and handshake:
framing.py, handshake.py, docs/PROTOCOL.md §6. Every limit below is listed, with its
default and what happens when it is hit, in docs/OPERATIONS.md "Limits and budgets".

API for the node runtime
------------------------
    transport = Transport(
        me=0,
        signing_key=keys.identity,                         # nacl SigningKey
        peers={i: Peer(m.host, m.consensus_port, m.ed25519_pubkey)
               for i, m in enumerate(genesis.members)},    # me included
        genesis_hash=genesis_hash,                         # 32 bytes
        config=TransportConfig(),
    )
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(transport.run)     # listening; dialing
        transport.send(2, msg) -> bool                     # never blocks
        transport.broadcast(msg)                           # every peer but me
        async for peer_id, msg in transport.inbound: ...   # bounded in bytes
        transport.penalize(peer_id, reason)                # a bad message from it
        transport.connected_peers() -> frozenset[int]
        transport.queue_depth(peer_id) -> int
        transport.stats() -> TransportStats                # counters for metrics

Messages are msgpack-able values (dict, list, bytes, str, 64-bit ints, bool, None); map
keys may be ints. `send`/`broadcast` raise (ValueError if the encoding exceeds
max_frame_bytes, OverflowError/TypeError if it is not msgpack-able): a caller bug, since
the node must keep its messages (e.g. sync responses) under the limit. Peer ids are
member indexes in genesis; sending to an unknown id or to me raises KeyError.

Policies
--------
- Connections: both ends dial whenever they have no link, so a restarted member
  reconnects at once. When two authenticated connections meet, the newer replaces the
  older if both were dialed by the same side (the old one is stale); if they cross (a
  simultaneous connect), the one dialed by the lower id wins unless it is older than
  `handshake_timeout_s`, in which case the peer's fresh dial proves it lost that link.
  Both ends apply the same rule, so they keep the same connection. The loser is retired,
  not cut: it stops writing (its unsent frames stay queued for the winner), half-closes,
  and is read until the peer's EOF (at most `idle_timeout_s`), so a tie-break loses
  nothing; frames from the two connections may interleave.
- Outbound: one queue per peer (kept across reconnects), bounded in frames
  (`queue_frames`) and in bytes (`queue_bytes`), drained by a writer that packs up to
  `max_batch_frames` frames into one sealed record and one send_all. When the queue is
  over either bound the OLDEST frames are dropped and counted: consensus messages are
  retransmitted or superseded, and after a stall the newest ones matter. `send` returns
  False when it had to drop. A send_all that does not complete within `idle_timeout_s`
  (a peer that stopped reading) drops the connection.
- Inbound: one reader per connection puts frames into the shared queue `inbound`
  (inbound.py), bounded in bytes per peer (`inbound_peer_bytes`) and in total
  (`inbound_bytes`). A reader whose peer is over budget stops reading its socket, so TCP
  pushes back on that peer alone; the others' messages keep arriving. Messages are
  decoded when the node takes them, which releases their bytes. Order is kept per
  connection, not across a reconnect. A consumer should drain with
  `inbound.receive_nowait()` and await only when it raises trio.WouldBlock: one
  scheduler round per message costs more than the whole transport (BENCHMARKS.md).
- Liveness: an idle writer sends a keepalive every `keepalive_s`; a connection that
  delivers nothing for `idle_timeout_s` is dropped. Dials back off exponentially
  (`backoff_initial_s` doubling to `backoff_max_s`) with jitter.
- Before authentication (admission.py): handshakes in flight are capped in total
  (`max_pending_handshakes`) and per source address (`max_handshakes_per_source`); a
  source whose handshakes keep failing is refused at once for a doubling period. A
  handshake the peer abandons before its first message (a probe, or a dial whose bytes
  a partition swallowed) does not count as a failure: it cost us nothing but its slot.
- Bad members (penalties.py): a malformed, truncated, oversized, forged or undecodable
  frame drops that connection and counts against the member, as does every
  `penalize` from the node; a member whose score reaches `ban_score` is cut off and
  refused both ways for a doubling period. Nothing a peer sends raises out of `run`.
- Logs: everything a peer can trigger at will (refusals, failed handshakes, violations,
  reconnects) is logged at most once per `log_interval_s` per peer or source, with the
  count suppressed since (node/log.py `LogGate`); each ban is logged once.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, NamedTuple

import structlog
import trio
from nacl.signing import SigningKey, VerifyKey

from node.log import LogGate
from node.net.admission import BUSY, SOURCE_BACKOFF, SOURCE_BUSY, SourceGate, source_of
from node.net.framing import (
    HEADER_BYTES,
    MAX_LENGTH,
    TAG_BYTES,
    FrameDecoder,
    FrameError,
    PeerProtocolError,
    RecordCipher,
    encode_frame,
    max_record_bytes,
    pack,
    split_record,
)
from node.net.handshake import (
    HandshakeAbandoned,
    HandshakeError,
    HandshakeRefused,
    Identity,
    Session,
    initiate,
    respond,
)
from node.net.inbound import ITEM_OVERHEAD_BYTES, InboundQueue
from node.net.penalties import Ban, PenaltyLedger

RECEIVE_BYTES: Final = 65536
KEEPALIVE_FRAME: Final = encode_frame(b"")
BANNED: Final = "banned"  # a refusal reason, beside admission.py's
_MAX_BACKOFF_DOUBLINGS: Final = 32
_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Peer(NamedTuple):
    host: str
    port: int
    verify_key: bytes  # the member's Ed25519 identity key from genesis (32 bytes)


@dataclass(frozen=True, slots=True)
class TransportConfig:
    max_frame_bytes: int = 4 << 20  # largest message payload, both directions
    queue_frames: int = 4096  # per-peer outbound queue, frames
    queue_bytes: int = 8 << 20  # per-peer outbound queue, bytes
    inbound_peer_bytes: int = 8 << 20  # one peer's messages waiting for the node
    inbound_bytes: int = 32 << 20  # all peers' messages waiting for the node
    max_batch_frames: int = 256  # frames per record / send_all
    handshake_timeout_s: float = 5.0
    keepalive_s: float = 2.0
    idle_timeout_s: float = 10.0
    backoff_initial_s: float = 0.05  # redial back-off
    backoff_max_s: float = 2.0
    max_pending_handshakes: int = 64  # unauthenticated connections, all sources
    max_handshakes_per_source: int = 4  # … from one IPv4 address or IPv6 /64
    source_failures_free: int = 3  # failed handshakes a source may have before back-off
    source_backoff_initial_s: float = 1.0
    source_backoff_max_s: float = 60.0
    max_tracked_sources: int = 4096  # failing sources remembered
    penalty_points: int = 10  # added to a member's score per fault
    penalty_decay_per_s: float = 1.0  # points the score loses per second
    ban_score: float = 100  # math.inf: never ban (the simulator's no-ban runs)
    ban_initial_s: float = 10.0
    ban_max_s: float = 600.0
    log_interval_s: float = 10.0  # one line per peer or source and event, at most
    seal: bool = True  # encrypt and authenticate every record (both ends must agree)
    listen_host: str | None = None  # default: my own host in `peers`

    def __post_init__(self) -> None:
        largest = MAX_LENGTH - HEADER_BYTES - TAG_BYTES
        checks = (
            (1 <= self.max_frame_bytes <= largest, f"max_frame_bytes must be in 1..{largest}"),
            (
                min(self.queue_frames, self.max_batch_frames) >= 1,
                "queue_frames and max_batch_frames must be positive",
            ),
            (
                self.queue_bytes >= self.max_frame_bytes + HEADER_BYTES,
                "queue_bytes must hold one frame of max_frame_bytes",
            ),
            (
                self.inbound_peer_bytes >= self.max_frame_bytes + ITEM_OVERHEAD_BYTES,
                "inbound_peer_bytes must hold one message of max_frame_bytes",
            ),
            (
                self.inbound_bytes >= self.inbound_peer_bytes,
                "inbound_bytes must be at least inbound_peer_bytes",
            ),
            (
                1 <= self.max_handshakes_per_source <= self.max_pending_handshakes,
                "need 1 <= max_handshakes_per_source <= max_pending_handshakes",
            ),
            (
                0 < self.keepalive_s < self.idle_timeout_s,
                "need 0 < keepalive_s < idle_timeout_s",
            ),
            (
                0 < self.backoff_initial_s <= self.backoff_max_s,
                "need 0 < backoff_initial_s <= backoff_max_s",
            ),
            (
                0 < self.source_backoff_initial_s <= self.source_backoff_max_s,
                "need 0 < source_backoff_initial_s <= source_backoff_max_s",
            ),
            (0 < self.ban_initial_s <= self.ban_max_s, "need 0 < ban_initial_s <= ban_max_s"),
            (self.handshake_timeout_s > 0, "handshake_timeout_s must be positive"),
            (
                self.source_failures_free >= 0 and self.max_tracked_sources >= 1,
                "source_failures_free must be >= 0 and max_tracked_sources >= 1",
            ),
            (
                self.penalty_points > 0 and self.ban_score > 0 and self.penalty_decay_per_s >= 0,
                "need penalty_points > 0, ban_score > 0, penalty_decay_per_s >= 0",
            ),
            (self.log_interval_s > 0, "log_interval_s must be positive"),
        )
        for ok, problem in checks:
            if not ok:
                raise ValueError(f"TransportConfig: {problem}")


@dataclass(slots=True)
class PeerStats:
    connected: bool = False
    queue_depth: int = 0  # frames waiting to be sent to the peer
    queue_bytes: int = 0  # … their bytes
    inbound_bytes: int = 0  # bytes of the peer's messages waiting for the node
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    batches_out: int = 0
    drops: int = 0  # frames evicted from a full outbound queue
    connects: int = 0  # connections adopted (reconnects = connects - 1)
    disconnects: int = 0
    dial_failures: int = 0
    protocol_errors: int = 0  # connections dropped for a bad frame
    penalties: int = 0  # faults counted against the peer (violations and penalize calls)
    score: int = 0  # its misbehaviour score now
    bans: int = 0
    banned: bool = False


@dataclass(slots=True)
class TransportStats:
    peers: dict[int, PeerStats] = field(default_factory=dict)
    handshakes_rejected: int = 0  # inbound and outbound handshakes that failed
    connections_refused: int = 0  # refused before a handshake (sum of the first three below)
    refusals: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((BUSY, SOURCE_BUSY, SOURCE_BACKOFF, BANNED), 0)
    )
    handshakes_pending: int = 0  # unauthenticated connections holding a slot now
    source_backoffs: int = 0  # times a failing source was backed off
    sources_backed_off: int = 0  # sources refused right now
    inbound_bytes: int = 0  # bytes of all messages waiting for the node


def keep_existing(
    me: int,
    peer: int,
    existing_initiator: int,
    existing_age_s: float,
    new_initiator: int,
    settle_s: float,
) -> bool:
    """Which of two authenticated connections to one peer survives (see Policies)."""
    if new_initiator == existing_initiator:
        return False
    return existing_initiator == min(me, peer) and existing_age_s < settle_s


class _Connection:
    __slots__ = (
        "adopted_at",
        "reason",
        "remote",
        "retiring",
        "scope",
        "session",
        "stream",
        "violation",
        "waiting",
    )

    def __init__(self, session: Session, stream: trio.abc.Stream, remote: str) -> None:
        self.session = session
        self.stream = stream
        self.remote = remote
        self.scope = trio.CancelScope()
        self.adopted_at = 0.0
        self.reason: str | None = None
        self.violation = False
        self.retiring = False
        self.waiting: trio.CancelScope | None = None  # the idle writer's wait, if any

    def close_because(self, reason: str, violation: bool = False) -> None:
        if violation and not self.violation:
            self.reason, self.violation = reason, True
        elif self.reason is None:
            self.reason = reason
        self.scope.cancel()

    def retire(self, reason: str, grace_s: float) -> None:
        """Stop writing (frames stay queued for the live connection), half-close, and keep
        reading what the peer already sent until its EOF or the grace period ends."""
        if self.reason is None:
            self.reason = reason
        self.retiring = True
        if self.waiting is not None:
            self.waiting.cancel()
        self.scope.deadline = min(self.scope.deadline, trio.current_time() + grace_s)


class _Link:
    """Everything about one peer that outlives a connection."""

    __slots__ = (
        "_changed",
        "_nonempty",
        "connection",
        "live",
        "peer",
        "peer_id",
        "queue",
        "queued_bytes",
        "stats",
    )

    def __init__(self, peer_id: int, peer: Peer) -> None:
        self.peer_id = peer_id
        self.peer = peer
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.stats = PeerStats()
        self.connection: _Connection | None = None  # the adopted one
        self.live: set[_Connection] = set()  # adopted or retiring, until closed
        self._nonempty = trio.Event()
        self._changed = trio.Event()

    def enqueue(self, frame: bytes, max_frames: int, max_bytes: int) -> bool:
        """Queue a frame, evicting the oldest while over either bound; False if any was.
        The config keeps one frame within max_bytes, so the new frame always stays."""
        queue = self.queue
        queue.append(frame)
        self.queued_bytes += len(frame)
        dropped = 0
        while len(queue) > max_frames or self.queued_bytes > max_bytes:
            self.queued_bytes -= len(queue.popleft())
            dropped += 1
        assert queue and queue[-1] is frame
        self.stats.drops += dropped
        self._nonempty.set()
        return not dropped

    def take_batch(self, max_frames: int, max_bytes: int) -> list[bytes]:
        queue = self.queue
        batch = [queue.popleft()]
        size = len(batch[0])
        while queue and len(batch) < max_frames and size + len(queue[0]) <= max_bytes:
            frame = queue.popleft()
            batch.append(frame)
            size += len(frame)
        self.queued_bytes -= size
        return batch

    async def wait_nonempty(self) -> None:
        while not self.queue:
            self._nonempty = trio.Event()
            await self._nonempty.wait()

    def set_connection(self, connection: _Connection | None) -> None:
        self.connection = connection
        self.stats.connected = connection is not None
        self._changed.set()
        self._changed = trio.Event()

    async def wait_down(self) -> None:
        while self.connection is not None:
            await self._changed.wait()


class _PeerGone(Exception):
    """The peer went quiet or closed: an ordinary disconnect, not a violation."""


class Transport:
    def __init__(
        self,
        me: int,
        signing_key: SigningKey,
        peers: Mapping[int, Peer | tuple[str, int, bytes]],
        genesis_hash: bytes,
        config: TransportConfig | None = None,
        *,
        listeners: Sequence[trio.SocketListener] | None = None,
        seed: int | None = None,
    ) -> None:
        """`peers` is the whole committee, me included (my entry says where to listen,
        unless `listeners` are given already bound, as tests do with port 0)."""
        config = self._config = config or TransportConfig()
        members = {peer_id: Peer(*entry) for peer_id, entry in peers.items()}
        self._me = me
        self._identity = Identity(
            me=me,
            signing_key=signing_key,
            members={i: VerifyKey(bytes(p.verify_key)) for i, p in members.items()},
            genesis_hash=genesis_hash,
            seal=config.seal,
        )
        self._address = members[me]
        self._links = {
            peer_id: _Link(peer_id, peer) for peer_id, peer in members.items() if peer_id != me
        }
        self._listeners = listeners
        self._rng = random.Random(seed)
        self._stats = TransportStats()
        self._sources = SourceGate(
            max_total=config.max_pending_handshakes,
            max_per_source=config.max_handshakes_per_source,
            failures_free=config.source_failures_free,
            backoff_initial_s=config.source_backoff_initial_s,
            backoff_max_s=config.source_backoff_max_s,
            max_sources=config.max_tracked_sources,
        )
        self._penalties = PenaltyLedger(
            points=config.penalty_points,
            ban_score=config.ban_score,
            decay_per_s=config.penalty_decay_per_s,
            ban_initial_s=config.ban_initial_s,
            ban_max_s=config.ban_max_s,
        )
        self._log_gate = LogGate(config.log_interval_s, max_keys=config.max_tracked_sources)
        self._started = False
        self._log = structlog.get_logger("seqnet.transport").bind(me=me)
        self.inbound = InboundQueue(
            config.inbound_peer_bytes, config.inbound_bytes, self._undecodable
        )

    # -- the node's API --------------------------------------------------------------

    def send(self, peer_id: int, message: Any) -> bool:
        """Queue a message for one peer. False: the queue was full and its oldest frames
        were dropped to make room (this message is queued)."""
        return self._enqueue(self._links[peer_id], self._frame(message))

    def broadcast(self, message: Any) -> None:
        """Queue a message for every peer but me (encoded once)."""
        frame = self._frame(message)
        for link in self._links.values():
            self._enqueue(link, frame)

    def queue_depth(self, peer_id: int) -> int:
        """Frames waiting for one peer (a producer may hold back while this is high)."""
        return len(self._links[peer_id].queue)

    def connected_peers(self) -> frozenset[int]:
        return frozenset(i for i, link in self._links.items() if link.connection is not None)

    def penalize(self, peer_id: int, reason: str) -> None:
        """Count a fault against a member (PeerNetwork.penalize): one bad message costs
        `penalty_points`, which leak away at `penalty_decay_per_s`; at `ban_score` the
        member is cut off and refused both ways for a doubling back-off."""
        link = self._links.get(peer_id)
        if link is None:  # not a peer (my own id): nothing to hold against anyone
            return
        link.stats.penalties += 1
        now = trio.current_time()
        ban = self._penalties.penalize(peer_id, now)
        if ban is not None:
            self._ban(link, ban, reason)

    def stats(self) -> TransportStats:
        """A snapshot of the counters (cumulative since start) and gauges. Outside a trio
        run there is no clock: scores, bans and back-offs then read as over."""
        try:
            now = trio.current_time()
        except RuntimeError:
            now = math.inf
        inbound, penalties = self.inbound, self._penalties
        return TransportStats(
            peers={
                i: replace(
                    link.stats,
                    queue_depth=len(link.queue),
                    queue_bytes=link.queued_bytes,
                    inbound_bytes=inbound.buffered_bytes(i),
                    score=penalties.score(i, now) if now < math.inf else 0,
                    banned=penalties.is_banned(i, now),
                )
                for i, link in self._links.items()
            },
            handshakes_rejected=self._stats.handshakes_rejected,
            connections_refused=self._stats.connections_refused,
            refusals=dict(self._stats.refusals),
            handshakes_pending=self._sources.pending(),
            source_backoffs=self._stats.source_backoffs,
            sources_backed_off=self._sources.backed_off(now),
            inbound_bytes=inbound.buffered_bytes(),
        )

    async def run(
        self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and keep a link to every peer until cancelled. `started` reports the
        bound (host, port) addresses. One run per Transport; `inbound` closes after."""
        assert not self._started, "a Transport runs once"
        self._started = True
        listeners = self._listeners
        if listeners is None:
            host = self._config.listen_host or self._address.host
            listeners = await trio.open_tcp_listeners(self._address.port, host=host)
        try:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                for peer_id in self._links:
                    nursery.start_soon(self._dial_loop, peer_id)
                addresses = [listener.socket.getsockname()[:2] for listener in listeners]
                self._log.info("transport_listening", addresses=addresses)
                task_status.started(addresses)
        finally:
            self.inbound.close()
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        """Authenticate an accepted connection, if its source may start a handshake now,
        then carry it until it drops."""
        source = self._admit_source(stream)
        if source is None:
            await trio.aclose_forcefully(stream)
            return
        await self._serve_admitted(stream, source)

    # -- admission ---------------------------------------------------------------------

    def _admit_source(self, stream: trio.abc.Stream) -> str | None:
        """Take a handshake slot for the stream's source; None (counted, logged at most
        once per interval per source) if it is refused."""
        source = source_of(_remote_host(stream))
        now = trio.current_time()
        refusal = self._sources.try_acquire(source, now)
        if refusal is None:
            return source
        self._stats.connections_refused += 1
        self._stats.refusals[refusal] += 1
        self._log_gate.emit(
            self._log.warning, "connection_refused", (source, refusal), now,
            source=source, reason=refusal,
        )  # fmt: skip
        return None

    async def _serve_admitted(self, stream: trio.abc.Stream, source: str) -> None:
        remote = _remote(stream)
        try:
            session = await respond(
                stream,
                self._identity,
                timeout_s=self._config.handshake_timeout_s,
                admit=self._admit_member,
            )
        except HandshakeRefused as error:
            self._stats.refusals[BANNED] += 1
            self._log_gate.emit(
                self._log.info, "handshake_refused", source, trio.current_time(),
                remote=remote, reason=str(error),
            )  # fmt: skip
            await trio.aclose_forcefully(stream)
            return
        except HandshakeError as error:
            # A peer that sent nothing cost us only its slot, which the slot caps bound;
            # one that made us verify or sign is held to it.
            backoff_s = (
                None
                if isinstance(error, HandshakeAbandoned)
                else self._sources.failed(source, trio.current_time())
            )
            self._reject(error, remote, "inbound", source, backoff_s)
            await trio.aclose_forcefully(stream)
            return
        finally:
            self._sources.release(source)
        self._sources.succeeded(source)
        await self._carry(session, stream, remote)

    def _admit_member(self, peer_id: int) -> str | None:
        """Whether a member that says hello may go on (the handshake asks before it signs)."""
        left_s = self._penalties.banned_until(peer_id) - trio.current_time()
        return f"banned for another {left_s:.1f} s" if left_s > 0 else None

    def _reject(
        self,
        error: HandshakeError,
        remote: str,
        direction: str,
        key: object,
        backoff_s: float | None = None,
    ) -> None:
        self._stats.handshakes_rejected += 1
        now = trio.current_time()
        fields: dict[str, Any] = {"direction": direction, "remote": remote, "reason": str(error)}
        self._log_gate.emit(
            self._log.warning, "handshake_rejected", (direction, key), now, **fields
        )
        if backoff_s is not None:
            self._stats.source_backoffs += 1
            self._log_gate.emit(
                self._log.warning, "source_backed_off", key, now,
                source=key, backoff_s=backoff_s, last_reason=str(error),
            )  # fmt: skip

    # -- penalties ---------------------------------------------------------------------

    def _ban(self, link: _Link, ban: Ban, reason: str) -> None:
        """Cut the member off: its connections close, what it has waiting for the node is
        dropped, and until the ban ends neither side's dial gets through."""
        link.stats.bans += 1
        dropped = self.inbound.discard(link.peer_id)
        for connection in list(link.live):
            connection.close_because(f"banned for {ban.duration_s:g} s")
        self._log.warning(
            "peer_banned",
            peer=link.peer_id,
            ban_s=ban.duration_s,
            streak=ban.streak,
            last_reason=reason[:200],
            dropped_messages=dropped,
        )

    def _undecodable(self, peer_id: int, error: FrameError) -> None:
        """A frame the consumer took did not decode: a violation by whoever sent it."""
        link = self._links[peer_id]
        reason = f"protocol violation: {error}"
        if link.connection is not None:  # counted and penalized when it closes
            link.connection.close_because(reason, violation=True)
        else:
            link.stats.protocol_errors += 1
            self.penalize(peer_id, reason)

    # -- connections -----------------------------------------------------------------

    def _frame(self, message: Any) -> bytes:
        payload = pack(message)
        if len(payload) > self._config.max_frame_bytes:
            raise ValueError(
                f"message of {len(payload)} bytes exceeds max_frame_bytes "
                f"{self._config.max_frame_bytes}"
            )
        return encode_frame(payload)

    def _enqueue(self, link: _Link, frame: bytes) -> bool:
        return link.enqueue(frame, self._config.queue_frames, self._config.queue_bytes)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as error:  # e.g. out of file descriptors: wait, do not spin
                self._log_gate.emit(
                    self._log.warning, "accept_failed", None, trio.current_time(),
                    error=str(error),
                )  # fmt: skip
                await trio.sleep(0.1)
                continue
            # Refused here, not in a task of its own: a flood costs no task per connection.
            source = self._admit_source(stream)
            if source is None:
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(self._serve_admitted, stream, source)

    async def _dial_loop(self, peer_id: int) -> None:
        link = self._links[peer_id]
        failures = 0
        while True:
            await link.wait_down()
            await self._sit_out_ban(peer_id)
            try:
                stream, session = await self._dial(link)
            except (*_STREAM_ERRORS, trio.TooSlowError, HandshakeError) as error:
                failures += 1
                link.stats.dial_failures += 1
                remote = f"{link.peer.host}:{link.peer.port}"
                if isinstance(error, HandshakeError):
                    self._reject(error, remote, "outbound", peer_id)
                delay_s = self._backoff_s(failures)
                log = self._log.info if failures == 1 else self._log.debug
                log("dial_failed", peer=peer_id, attempt=failures, retry_in_s=round(delay_s, 3),
                    error=str(error) or type(error).__name__)  # fmt: skip
                await trio.sleep(delay_s)
                continue
            failures = 0
            await self._carry(session, stream, _remote(stream))
            # A dropped link: redial soon, but not in lockstep with the peer's redial.
            await trio.sleep(self._rng.uniform(0, self._config.backoff_initial_s))

    async def _sit_out_ban(self, peer_id: int) -> None:
        while (until := self._penalties.banned_until(peer_id)) > trio.current_time():
            await trio.sleep_until(until)

    def _backoff_s(self, failures: int) -> float:
        config = self._config
        doublings = min(failures - 1, _MAX_BACKOFF_DOUBLINGS)
        ceiling_s = min(config.backoff_max_s, config.backoff_initial_s * (1 << doublings))
        return ceiling_s * self._rng.uniform(0.5, 1.0)

    async def _dial(self, link: _Link) -> tuple[trio.SocketStream, Session]:
        timeout_s = self._config.handshake_timeout_s
        with trio.fail_after(timeout_s):
            stream = await trio.open_tcp_stream(link.peer.host, link.peer.port)
        try:
            session = await initiate(stream, self._identity, link.peer_id, timeout_s=timeout_s)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream, session

    async def _carry(self, session: Session, stream: trio.abc.Stream, remote: str) -> None:
        """Adopt an authenticated connection (or lose the tie-break), run it, clean up."""
        link = self._links[session.peer_id]
        now = trio.current_time()
        if self._penalties.is_banned(link.peer_id, now):  # our dial raced the ban
            await trio.aclose_forcefully(stream)
            return
        connection = _Connection(session, stream, remote)
        grace_s = self._config.idle_timeout_s
        existing = link.connection
        if existing is not None and keep_existing(
            self._me,
            link.peer_id,
            existing.session.initiator_id,
            now - existing.adopted_at,
            session.initiator_id,
            self._config.handshake_timeout_s,
        ):
            # The peer may have written on this one before it saw the tie-break: drain it.
            connection.retire("duplicate connection lost the tie-break", grace_s)
            self._log.debug("duplicate_connection", peer=link.peer_id, remote=remote)
        else:
            if existing is not None:
                existing.retire("replaced by a newer connection", grace_s)
            connection.adopted_at = now
            link.set_connection(connection)
            link.stats.connects += 1
            self._log_gate.emit(
                self._log.info, "peer_connected", link.peer_id, now,
                peer=link.peer_id, remote=remote, dialed_by=session.initiator_id,
                sealed=session.seal, connects=link.stats.connects,
            )  # fmt: skip
        link.live.add(connection)
        try:
            with connection.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, connection, self._reader, link)
                    nursery.start_soon(self._guard, connection, self._writer, link)
        finally:
            link.live.discard(connection)
            if link.connection is connection:
                link.set_connection(None)
                link.stats.disconnects += 1
            self._closed(link, connection)
            await trio.aclose_forcefully(stream)

    def _closed(self, link: _Link, connection: _Connection) -> None:
        """Log a connection's end; a violation also counts against the member."""
        reason = connection.reason or "transport stopped"
        fields = {"peer": link.peer_id, "remote": connection.remote, "reason": reason}
        now = trio.current_time()
        if connection.violation:
            link.stats.protocol_errors += 1
            key = (link.peer_id, "violation")  # not muted by an ordinary disconnect
            self._log_gate.emit(self._log.warning, "peer_disconnected", key, now, **fields)
            self.penalize(link.peer_id, reason)
        elif link.connection is None:
            self._log_gate.emit(self._log.info, "peer_disconnected", link.peer_id, now, **fields)
        else:  # a retired duplicate; the peer is still connected
            self._log.debug("connection_closed", **fields)

    async def _guard(
        self,
        connection: _Connection,
        task: Callable[[_Connection, _Link], Awaitable[None]],
        link: _Link,
    ) -> None:
        """Turn a peer's failure into a reason and close the connection (not the node).
        The reader ends only by raising; the writer returns when the connection retires."""
        try:
            await task(connection, link)
        except PeerProtocolError as error:
            connection.close_because(f"protocol violation: {error}", violation=True)
        except _PeerGone as error:
            connection.close_because(str(error))
        except _STREAM_ERRORS as error:
            connection.close_because(f"connection lost: {error!r}")

    async def _reader(self, connection: _Connection, link: _Link) -> None:
        config, session, stats = self._config, connection.session, link.stats
        opener = RecordCipher(session.receive_key) if session.seal else None
        limit = max_record_bytes(config.max_frame_bytes) if opener else config.max_frame_bytes
        decoder = FrameDecoder(limit, "record" if opener else "frame")
        decoder.feed(session.leftover)
        inbound, peer_id = self.inbound, link.peer_id
        while True:
            for unit in decoder.frames():
                if opener is None:
                    payloads = [unit]
                else:
                    payloads = split_record(opener.open(unit), config.max_frame_bytes)
                for payload in payloads:
                    if not payload:
                        continue  # keepalive
                    stats.frames_in += 1
                    if not inbound.put_nowait(peer_id, payload):
                        # Over budget: stop reading until the node catches up, so TCP
                        # pushes back on this peer and no other.
                        await inbound.put(peer_id, payload)
            data = None
            with trio.move_on_after(config.idle_timeout_s):
                data = await connection.stream.receive_some(RECEIVE_BYTES)
            if data is None:
                raise _PeerGone(f"nothing received for {config.idle_timeout_s} s")
            if not data:
                if decoder.buffered_bytes:
                    raise FrameError("connection closed inside a frame (truncated)")
                raise _PeerGone("peer closed the connection")
            stats.bytes_in += len(data)
            decoder.feed(data)

    async def _writer(self, connection: _Connection, link: _Link) -> None:
        config, session, stats = self._config, connection.session, link.stats
        sealer = RecordCipher(session.send_key) if session.seal else None
        max_batch_bytes = config.max_frame_bytes + HEADER_BYTES
        while not connection.retiring:
            if not link.queue:
                with trio.move_on_after(config.keepalive_s) as connection.waiting:
                    await link.wait_nonempty()
                connection.waiting = None
                if connection.retiring:
                    break
            if link.queue:
                batch = link.take_batch(config.max_batch_frames, max_batch_bytes)
                frames = len(batch)
            else:
                batch, frames = [KEEPALIVE_FRAME], 0
            plaintext = b"".join(batch)
            data = plaintext if sealer is None else sealer.seal(plaintext)
            with trio.move_on_after(config.idle_timeout_s) as stuck:
                await connection.stream.send_all(data)
            if stuck.cancelled_caught:
                raise _PeerGone(f"peer read nothing for {config.idle_timeout_s} s")
            stats.bytes_out += len(data)
            stats.frames_out += frames
            stats.batches_out += 1
        if isinstance(connection.stream, trio.abc.HalfCloseableStream):
            await connection.stream.send_eof()


def _peername(stream: trio.abc.Stream) -> tuple[str, int] | None:
    socket = getattr(stream, "socket", None)
    if socket is None:
        return None
    try:
        host, port = socket.getpeername()[:2]
    except OSError:
        return None
    return str(host), int(port)


def _remote(stream: trio.abc.Stream) -> str:
    if getattr(stream, "socket", None) is None:
        return "memory"
    peername = _peername(stream)
    return "unknown" if peername is None else f"{peername[0]}:{peername[1]}"


def _remote_host(stream: trio.abc.Stream) -> str:
    """Where a connection comes from, for admission: its IP address, or a stand-in that
    makes all streams without one (memory streams in tests) a single source."""
    if getattr(stream, "socket", None) is None:
        return "memory"
    peername = _peername(stream)
    return "unknown" if peername is None else peername[0]
