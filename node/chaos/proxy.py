"""A fault-injecting TCP proxy between committee members, controlled by the chaos harness.

Every ordered pair of members (dialer → acceptor) gets its traffic through one `ProxyNet`.
Both directions of a connection pass through a pump that applies the faults currently
set for that direction (`LinkFaults`); the harness changes them at run time.

The links are sealed and authenticated (node/net/transport.py), so the proxy acts only at the
byte-stream level, as a real network does to a TCP connection:

- drop:      bytes are discarded (a blackhole); a connection that lost bytes can never
             carry a valid record again, so it is cut when the fault is lifted, and the
             members reconnect. A partition is `drop` on both directions.
- delay:     each chunk is delivered `delay_ms` ± `jitter_ms` later, in order (TCP keeps
             the order within a connection; jitter becomes head-of-line blocking).
- bandwidth: a token bucket of `bandwidth_bytes_per_s` (a slow link); when the outbox is
             full the pump stops reading, and TCP pushes back on the sender.
- reorder:   with probability `reorder_rate` a chunk stands for a segment that arrived
             out of order: it and everything behind it wait up to `reorder_window_ms`
             (what the receiving TCP does). Reordering *between* connections (messages
             from A and from B to C) follows from the independent delays of each link.

Which pair a connection belongs to is known from the listener it arrived on: one
listener per ordered pair (dialer → acceptor), which the dialer's config names in
`peer_addresses`. A connection carries both directions; each follows its own faults.

Bounded: a pump holds at most `OUTBOX_CHUNKS` chunks of `CHUNK_BYTES`; connections per
listener are capped. The proxy imports nothing of the node runtime.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog
import trio

log = structlog.get_logger("seqnet.chaos.proxy")

CHUNK_BYTES: Final = 16 * 1024
OUTBOX_CHUNKS: Final = 256
MAX_CONNECTIONS_PER_LISTENER: Final = 64


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """What happens to bytes flowing in one direction of one ordered pair."""

    drop: bool = False
    delay_ms: int = 0
    jitter_ms: int = 0
    bandwidth_bytes_per_s: int = 0  # 0: unlimited
    reorder_rate: float = 0.0
    reorder_window_ms: int = 0

    def __post_init__(self) -> None:
        assert self.delay_ms >= 0 and self.jitter_ms >= 0, self
        assert self.bandwidth_bytes_per_s >= 0, self
        assert 0.0 <= self.reorder_rate <= 1.0 and self.reorder_window_ms >= 0, self

    @property
    def clean(self) -> bool:
        return self == PASS

    def describe(self) -> str:
        if self.clean:
            return "pass"
        parts = []
        if self.drop:
            parts.append("drop")
        if self.delay_ms or self.jitter_ms:
            parts.append(f"delay {self.delay_ms}±{self.jitter_ms} ms")
        if self.bandwidth_bytes_per_s:
            parts.append(f"{self.bandwidth_bytes_per_s} B/s")
        if self.reorder_rate:
            parts.append(f"reorder {self.reorder_rate:.0%} within {self.reorder_window_ms} ms")
        return ", ".join(parts)


PASS: Final = LinkFaults()

Pair = tuple[int, int]  # (from member, to member): the direction bytes flow


@dataclass(slots=True)
class ProxyStats:
    connections: int = 0
    bytes_forwarded: int = 0
    bytes_dropped: int = 0
    chunks_reordered: int = 0
    connections_cut: int = 0


@dataclass(eq=False, slots=True)
class _Conn:
    dialer: int
    acceptor: int
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)
    poisoned: bool = False  # lost bytes: can never carry a valid record again


class ProxyNet:
    """The fault table for every ordered pair, and the connections that obey it."""

    def __init__(self, members: int, seed: int) -> None:
        assert members >= 1
        self.members = members
        self._faults: dict[Pair, LinkFaults] = {}
        self._rng = random.Random(seed)
        self._conns: set[_Conn] = set()
        self.stats = ProxyStats()

    # ------------------------------------------------------------ control

    def faults(self, src: int, dst: int) -> LinkFaults:
        return self._faults.get((src, dst), PASS)

    def set_faults(self, src: int, dst: int, faults: LinkFaults) -> None:
        assert src != dst and 0 <= src < self.members and 0 <= dst < self.members
        if faults.clean:
            self._faults.pop((src, dst), None)
        else:
            self._faults[(src, dst)] = faults
        if faults.drop:
            self._cut(lambda c: {c.dialer, c.acceptor} == {src, dst})

    def partition(self, *groups: set[int]) -> None:
        """Drop everything between members of different groups (both directions)."""
        where = {m: i for i, g in enumerate(groups) for m in g}
        for a in range(self.members):
            for b in range(self.members):
                if a != b and where.get(a, -1) != where.get(b, -2):
                    self.set_faults(a, b, LinkFaults(drop=True))

    def set_all(self, faults: LinkFaults, members: set[int] | None = None) -> None:
        """Apply `faults` to every direction touching `members` (default: all links)."""
        for a in range(self.members):
            for b in range(self.members):
                if a != b and (members is None or a in members or b in members):
                    self.set_faults(a, b, faults)

    def heal(self) -> None:
        """Every link back to pass; connections that lost bytes are cut so that the
        members reconnect instead of waiting for their idle timeout."""
        self._faults.clear()
        self._cut(lambda c: c.poisoned)

    def _cut(self, which: Callable[[_Conn], bool]) -> None:
        for conn in list(self._conns):
            if which(conn):
                conn.cancel.cancel()
                self.stats.connections_cut += 1

    # ------------------------------------------------------------ data path

    async def carry(self, client: trio.abc.Stream, server: trio.abc.Stream, conn: _Conn) -> None:
        """Pump both directions until either side closes or the connection is cut."""
        self._conns.add(conn)
        self.stats.connections += 1
        try:
            with conn.cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._direction, client, server, conn, True, nursery)
                    nursery.start_soon(self._direction, server, client, conn, False, nursery)
        finally:
            self._conns.discard(conn)
            for stream in (client, server):
                with trio.move_on_after(1) as cleanup:
                    cleanup.shield = True
                    await stream.aclose()

    async def _direction(
        self,
        src: trio.abc.Stream,
        dst: trio.abc.Stream,
        conn: _Conn,
        forward: bool,
        nursery: trio.Nursery,
    ) -> None:
        pair = (conn.dialer, conn.acceptor) if forward else (conn.acceptor, conn.dialer)
        await pump(src, dst, lambda: self.faults(*pair), self._rng, self.stats, conn)
        nursery.cancel_scope.cancel()  # one side closed: close the other (TCP has no half)

    def new_conn(self, dialer: int, acceptor: int) -> _Conn:
        return _Conn(dialer, acceptor)


async def pump(
    src: trio.abc.ReceiveStream,
    dst: trio.abc.SendStream,
    faults: Callable[[], LinkFaults],
    rng: random.Random,
    stats: ProxyStats | None = None,
    conn: _Conn | None = None,
) -> None:
    """Copy src to dst, applying `faults()` (read per chunk) until src reaches EOF or
    either stream breaks. A reader task schedules chunks with their delivery time into a
    bounded outbox; a writer delivers them in order."""
    stats = stats if stats is not None else ProxyStats()
    send, receive = trio.open_memory_channel[tuple[float, bytes]](OUTBOX_CHUNKS)

    async def reader() -> None:
        last_at = 0.0
        bucket_at = 0.0  # when the token bucket is next empty
        async with send:
            while True:
                try:
                    data = await src.receive_some(CHUNK_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                f = faults()
                now = trio.current_time()
                if f.drop:
                    stats.bytes_dropped += len(data)
                    if conn is not None:
                        conn.poisoned = True
                    continue
                at = now + f.delay_ms / 1000
                if f.jitter_ms:
                    at += rng.uniform(-f.jitter_ms, f.jitter_ms) / 1000
                if f.reorder_rate and rng.random() < f.reorder_rate:
                    at += rng.uniform(0, f.reorder_window_ms) / 1000
                    stats.chunks_reordered += 1
                if f.bandwidth_bytes_per_s:
                    bucket_at = max(bucket_at, now) + len(data) / f.bandwidth_bytes_per_s
                    at = max(at, bucket_at)
                last_at = max(last_at, at)  # in order within the connection
                await send.send((last_at, bytes(data)))

    async def writer() -> None:
        async with receive:
            async for at, data in receive:
                delay = at - trio.current_time()
                if delay > 0 and math.isfinite(delay):
                    await trio.sleep(delay)
                try:
                    await dst.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                stats.bytes_forwarded += len(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(writer)


async def serve_listener(
    net: ProxyNet,
    listener: trio.SocketListener,
    acceptor: int,
    target: tuple[str, int],
    dialer: int,
) -> None:
    """Accept connections from `dialer` for `acceptor` and carry them to its address."""
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS_PER_LISTENER)

    async def handle(client: trio.SocketStream) -> None:
        async with limiter:
            stream: trio.abc.Stream = client
            who = dialer
            if net.faults(who, acceptor).drop and net.faults(acceptor, who).drop:
                # Partitioned: hold the connection silently, as a lost SYN/ACK would.
                conn = net.new_conn(who, acceptor)
                conn.poisoned = True
                await net.carry(stream, _Blackhole(), conn)
                return
            try:
                server = await trio.open_tcp_stream(*target)
            except OSError:
                await stream.aclose()
                return
            await net.carry(stream, server, net.new_conn(who, acceptor))

    async with listener, trio.open_nursery() as nursery:
        while True:
            client = await listener.accept()
            nursery.start_soon(handle, client)


class _Blackhole(trio.abc.Stream):
    """The far end of a partitioned connection: swallows bytes, never answers."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        return b""  # pragma: no cover

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        pass

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
