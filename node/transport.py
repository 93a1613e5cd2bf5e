"""Committee peer transport: authenticated, sealed, batched TCP links between members.

The room for moving consensus messages between committee members. It knows the members
(id → host, port, Ed25519 key, pinned from genesis) and nothing of what the messages
mean: the consensus layer verifies its own signatures. Wire format and handshake:
framing.py, handshake.py, docs/PROTOCOL.md §6.

API for the node runtime
------------------------
    transport = Transport(
        me=0,
        signing_key=keys.identity,                         # nacl SigningKey
        peers={i: Peer(m.host, m.consensus_port, m.ed25519_pubkey)
               for i, m in enumerate(genesis.members)},    # me included
        genesis_hash=genesis_hash,                         # 32 bytes
        config=TransportConfig(max_frame_bytes=4 << 20, queue_frames=4096),
    )
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(transport.run)     # listening; dialing
        transport.send(2, msg) -> bool                     # never blocks
        transport.broadcast(msg)                           # every peer but me
        async for peer_id, msg in transport.inbound: ...   # bounded channel
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
- Outbound: one bounded queue per peer (kept across reconnects), drained by a writer
  that packs up to `max_batch_frames` frames into one sealed record and one send_all.
  When the queue is full the OLDEST frame is dropped and counted: consensus messages
  are retransmitted or superseded, and after a stall the newest ones matter. `send`
  returns False when it had to drop. A send_all that does not complete within
  `idle_timeout_s` (a peer that stopped reading) drops the connection.
- Inbound: one reader per connection decodes frames into the shared bounded channel
  `inbound` (`inbound_frames` items). When the consumer is slow the readers block, stop
  reading their sockets, and TCP pushes back on the senders, whose queues then drop.
  Order is kept per connection, not across a reconnect. A consumer should drain with
  `inbound.receive_nowait()` and await only when it raises trio.WouldBlock: one
  scheduler round per message costs more than the whole transport (BENCHMARKS.md).
- Liveness: an idle writer sends a keepalive every `keepalive_s`; a connection that
  delivers nothing for `idle_timeout_s` is dropped. Dials back off exponentially
  (`backoff_initial_s` doubling to `backoff_max_s`) with jitter.
- Bad peers: a malformed, truncated, oversized, forged or undecodable frame, or a
  failed handshake, drops that connection with a warning log line and a counter; it
  never raises out of `run`. Unauthenticated handshakes in flight are capped.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, NamedTuple

import structlog
import trio
from nacl.signing import SigningKey, VerifyKey

from node.framing import (
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
    unpack,
)
from node.handshake import HandshakeError, Identity, Session, initiate, respond

RECEIVE_BYTES: Final = 65536
KEEPALIVE_FRAME: Final = encode_frame(b"")
_MAX_BACKOFF_DOUBLINGS: Final = 32
_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Peer(NamedTuple):
    host: str
    port: int
    verify_key: bytes  # the member's Ed25519 identity key from genesis (32 bytes)


@dataclass(frozen=True, slots=True)
class TransportConfig:
    max_frame_bytes: int = 4 << 20  # largest message payload, both directions
    queue_frames: int = 4096  # per-peer outbound queue
    inbound_frames: int = 1024  # shared inbound channel
    max_batch_frames: int = 256  # frames per record / send_all
    handshake_timeout_s: float = 5.0
    keepalive_s: float = 2.0
    idle_timeout_s: float = 10.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    max_pending_handshakes: int = 64
    seal: bool = True  # encrypt and authenticate every record (both ends must agree)
    listen_host: str | None = None  # default: my own host in `peers`

    def __post_init__(self) -> None:
        largest = MAX_LENGTH - HEADER_BYTES - TAG_BYTES
        limits = (self.queue_frames, self.inbound_frames, self.max_batch_frames)
        problem = (
            f"max_frame_bytes must be in 1..{largest}"
            if not 1 <= self.max_frame_bytes <= largest
            else "queue and batch sizes must be positive"
            if min(*limits, self.max_pending_handshakes) < 1
            else "need 0 < keepalive_s < idle_timeout_s"
            if not 0 < self.keepalive_s < self.idle_timeout_s
            else "need 0 < backoff_initial_s <= backoff_max_s"
            if not 0 < self.backoff_initial_s <= self.backoff_max_s
            else "handshake_timeout_s must be positive"
            if self.handshake_timeout_s <= 0
            else None
        )
        if problem is not None:
            raise ValueError(f"TransportConfig: {problem}")


@dataclass(slots=True)
class PeerStats:
    connected: bool = False
    queue_depth: int = 0
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


@dataclass(slots=True)
class TransportStats:
    peers: dict[int, PeerStats] = field(default_factory=dict)
    handshakes_rejected: int = 0  # inbound and outbound handshakes that failed
    connections_refused: int = 0  # over max_pending_handshakes


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

    __slots__ = ("_changed", "_nonempty", "connection", "peer", "peer_id", "queue", "stats")

    def __init__(self, peer_id: int, peer: Peer, queue_frames: int) -> None:
        self.peer_id = peer_id
        self.peer = peer
        self.queue: deque[bytes] = deque(maxlen=queue_frames)
        self.stats = PeerStats()
        self.connection: _Connection | None = None
        self._nonempty = trio.Event()
        self._changed = trio.Event()

    def enqueue(self, frame: bytes) -> bool:
        full = len(self.queue) == self.queue.maxlen
        if full:
            self.stats.drops += 1  # deque(maxlen) evicts the oldest on append
        self.queue.append(frame)
        self._nonempty.set()
        return not full

    def take_batch(self, max_frames: int, max_bytes: int) -> list[bytes]:
        queue = self.queue
        batch = [queue.popleft()]
        size = len(batch[0])
        while queue and len(batch) < max_frames and size + len(queue[0]) <= max_bytes:
            frame = queue.popleft()
            batch.append(frame)
            size += len(frame)
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
        self._config = config or TransportConfig()
        members = {peer_id: Peer(*entry) for peer_id, entry in peers.items()}
        self._me = me
        self._identity = Identity(
            me=me,
            signing_key=signing_key,
            members={i: VerifyKey(bytes(p.verify_key)) for i, p in members.items()},
            genesis_hash=genesis_hash,
            seal=self._config.seal,
        )
        self._address = members[me]
        self._links = {
            peer_id: _Link(peer_id, peer, self._config.queue_frames)
            for peer_id, peer in members.items()
            if peer_id != me
        }
        self._listeners = listeners
        self._rng = random.Random(seed)
        self._stats = TransportStats()
        self._pending_handshakes = 0
        self._started = False
        self._log = structlog.get_logger("seqnet.transport").bind(me=me)
        inbound_send, self.inbound = trio.open_memory_channel[tuple[int, Any]](
            self._config.inbound_frames
        )
        self._inbound_send = inbound_send

    # -- the node's API --------------------------------------------------------------

    def send(self, peer_id: int, message: Any) -> bool:
        """Queue a message for one peer. False: the queue was full and its oldest frame
        was dropped to make room (this message is queued)."""
        return self._links[peer_id].enqueue(self._frame(message))

    def broadcast(self, message: Any) -> None:
        """Queue a message for every peer but me (encoded once)."""
        frame = self._frame(message)
        for link in self._links.values():
            link.enqueue(frame)

    def queue_depth(self, peer_id: int) -> int:
        """Frames waiting for one peer (a producer may hold back while this is high)."""
        return len(self._links[peer_id].queue)

    def connected_peers(self) -> frozenset[int]:
        return frozenset(i for i, link in self._links.items() if link.connection is not None)

    def penalize(self, peer_id: int, reason: str) -> None:
        """The peer broke the protocol (PeerNetwork.penalize). Placeholder: drops the
        connection; scoring and back-off are the net room's to add."""
        link = self._links.get(peer_id)
        if link is not None and link.connection is not None:
            link.connection.close_because(reason, violation=True)

    def stats(self) -> TransportStats:
        """A snapshot of the counters (cumulative since start) and queue depths."""
        return TransportStats(
            peers={
                i: replace(link.stats, queue_depth=len(link.queue))
                for i, link in self._links.items()
            },
            handshakes_rejected=self._stats.handshakes_rejected,
            connections_refused=self._stats.connections_refused,
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
            self._inbound_send.close()
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        """Authenticate an accepted connection, then carry it until it drops."""
        remote = _remote(stream)
        self._pending_handshakes += 1
        try:
            session = await respond(
                stream, self._identity, timeout_s=self._config.handshake_timeout_s
            )
        except HandshakeError as error:
            self._reject(error, remote, direction="inbound")
            await trio.aclose_forcefully(stream)
            return
        finally:
            self._pending_handshakes -= 1
        await self._carry(session, stream, remote)

    # -- connections -----------------------------------------------------------------

    def _frame(self, message: Any) -> bytes:
        payload = pack(message)
        if len(payload) > self._config.max_frame_bytes:
            raise ValueError(
                f"message of {len(payload)} bytes exceeds max_frame_bytes "
                f"{self._config.max_frame_bytes}"
            )
        return encode_frame(payload)

    def _reject(self, error: HandshakeError, remote: str, direction: str) -> None:
        self._stats.handshakes_rejected += 1
        self._log.warning(
            "handshake_rejected", direction=direction, remote=remote, reason=str(error)
        )

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as error:  # e.g. out of file descriptors: wait, do not spin
                self._log.warning("accept_failed", error=str(error))
                await trio.sleep(0.1)
                continue
            if self._pending_handshakes >= self._config.max_pending_handshakes:
                self._stats.connections_refused += 1
                self._log.warning("connection_refused", remote=_remote(stream), reason="busy")
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(self.serve_connection, stream)

    async def _dial_loop(self, peer_id: int) -> None:
        link = self._links[peer_id]
        failures = 0
        while True:
            await link.wait_down()
            try:
                stream, session = await self._dial(link)
            except (*_STREAM_ERRORS, trio.TooSlowError, HandshakeError) as error:
                failures += 1
                link.stats.dial_failures += 1
                remote = f"{link.peer.host}:{link.peer.port}"
                if isinstance(error, HandshakeError):
                    self._reject(error, remote, direction="outbound")
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
        connection = _Connection(session, stream, remote)
        now = trio.current_time()
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
            self._log.info("duplicate_connection", peer=link.peer_id, remote=remote)
        else:
            if existing is not None:
                existing.retire("replaced by a newer connection", grace_s)
            connection.adopted_at = now
            link.set_connection(connection)
            link.stats.connects += 1
            self._log.info(
                "peer_connected",
                peer=link.peer_id,
                remote=remote,
                dialed_by=session.initiator_id,
                sealed=session.seal,
                connects=link.stats.connects,
            )
        try:
            with connection.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, connection, self._reader, link)
                    nursery.start_soon(self._guard, connection, self._writer, link)
        finally:
            if link.connection is connection:
                link.set_connection(None)
                link.stats.disconnects += 1
            if connection.violation:
                link.stats.protocol_errors += 1
            reason = connection.reason or "transport stopped"
            if connection.violation:
                self._log.warning(
                    "peer_disconnected", peer=link.peer_id, remote=remote, reason=reason
                )
            elif link.connection is None:
                self._log.info("peer_disconnected", peer=link.peer_id, remote=remote, reason=reason)
            else:  # a retired duplicate; the peer is still connected
                self._log.debug(
                    "connection_closed", peer=link.peer_id, remote=remote, reason=reason
                )
            await trio.aclose_forcefully(stream)

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
        channel = self._inbound_send
        while True:
            for unit in decoder.frames():
                if opener is None:
                    payloads = [unit]
                else:
                    payloads = split_record(opener.open(unit), config.max_frame_bytes)
                for payload in payloads:
                    if not payload:
                        continue  # keepalive
                    item = (link.peer_id, unpack(payload))
                    stats.frames_in += 1
                    try:
                        channel.send_nowait(item)
                    except (
                        trio.WouldBlock
                    ):  # the consumer is behind: stop reading (TCP pushes back)
                        await channel.send(item)
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


def _remote(stream: trio.abc.Stream) -> str:
    socket = getattr(stream, "socket", None)
    if socket is None:
        return "memory"
    try:
        host, port = socket.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"{host}:{port}"
