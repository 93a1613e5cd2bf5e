"""The runtime simulator's network: a seeded in-memory `PeerNetwork` for N members.

One `SimNetwork` carries every message of one simulated committee inside one trio run.
Each member gets a `SimEndpoint` (node/seam.py's `PeerNetwork`), a new one per
incarnation: a crashed member's endpoint goes dead with everything queued for it.

A message is packed with the transport's own codec (node/net/framing.py) when it is sent,
and waits for the member still encoded in the transport's own byte-bounded inbound
queue (node/net/inbound.py), which decodes it when the member takes it: each receiver
gets its own copy with the exact wire types, an unencodable or oversized message fails
in the sender as it would over TCP, and an undecodable one counts against its sender.
Penalties go to the transport's own ledger (node/net/penalties.py): a member that
reaches the ban score is cut off both ways for the ban's back-off.

Faults, all drawn from the simulation's one `random.Random`: per-link delays with a long
tail (which reorders), drops, duplicates, and partitions that the simulator changes over
time. Queues are bounded: at most `link_frames` messages in flight per link (a full
link drops the new message, counted), and the inbound queue's byte budgets (a delivery
over budget is dropped, counted, where TCP would push back on the sender).

Every delivery goes into the trace digest, so two runs of one seed can be compared.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from node.net.framing import FrameError, pack
from node.net.inbound import InboundQueue
from node.net.penalties import PenaltyLedger
from node.net.transport import TransportConfig

NO_BANS = 1e18  # a ban score nobody reaches: every message gets through to the boundary


class Trace(Protocol):
    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """How every link behaves (all in milliseconds or per mille)."""

    delay_ms: tuple[int, int] = (1, 5)  # the usual delay, uniform
    tail_permille: int = 0  # share of messages with a long delay
    tail_ms: int = 0  # the long delay's upper bound
    drop_permille: int = 0
    dup_permille: int = 0

    def healed(self) -> LinkFaults:
        """The liveness phase's network: the usual delays, nothing lost or doubled."""
        return LinkFaults(self.delay_ms)


@dataclass(slots=True)
class NetStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0  # by the fault model
    partitioned: int = 0  # sent across a partition or a cut link
    duplicated: int = 0
    link_full: int = 0
    inbox_full: int = 0
    dead: int = 0  # addressed to a crashed member
    penalties: int = 0
    bans: int = 0
    bytes_delivered: int = 0
    max_in_flight: int = 0
    penalized: dict[tuple[int, int], int] = field(default_factory=dict)  # (by, peer)


@dataclass(slots=True, order=True)
class _Flight:
    at: float
    seq: int
    src: int = field(compare=False)
    dst: int = field(compare=False)
    incarnation: int = field(compare=False)
    payload: bytes = field(compare=False)


class SimNetwork:
    def __init__(
        self,
        n: int,
        rng: random.Random,
        faults: LinkFaults,
        trace: Trace,
        config: TransportConfig | None = None,
    ) -> None:
        self.n = n
        self.faults = faults
        self.config = config or TransportConfig()
        self.stats = NetStats()
        self._rng = rng
        self._trace = trace
        self._heap: list[_Flight] = []
        self._seq = 0
        self._in_flight: dict[tuple[int, int], int] = {}
        self._endpoints: dict[int, SimEndpoint] = {}
        self._incarnation = [0] * n
        self._group = [0] * n  # members talk only within their group
        self._cut_until: dict[tuple[int, int], float] = {}  # banned links, by pair
        self._wake = trio.Event()
        # (by, peer, reason): the checker's view of every penalty
        self.on_penalty: Callable[[int, int, str], None] | None = None

    # ------------------------------------------------------------ membership

    def attach(self, member: int) -> SimEndpoint:
        """A new incarnation of `member`: the old endpoint (if any) goes dead."""
        self.detach(member)
        self._incarnation[member] += 1
        endpoint = SimEndpoint(self, member, self._incarnation[member])
        self._endpoints[member] = endpoint
        return endpoint

    def detach(self, member: int) -> None:
        endpoint = self._endpoints.pop(member, None)
        if endpoint is not None:
            endpoint.dead = True

    def is_up(self, member: int) -> bool:
        return member in self._endpoints

    # ------------------------------------------------------------ faults

    def set_partition(self, groups: list[int]) -> None:
        """`groups[i]`: member i's side; members on different sides cannot talk."""
        assert len(groups) == self.n
        self._group = list(groups)

    def heal(self) -> None:
        """No partitions, no losses. Bans stay: they are the members' own decisions."""
        self._group = [0] * self.n
        self.faults = self.faults.healed()

    def can_talk(self, a: int, b: int) -> bool:
        if self._group[a] != self._group[b]:
            return False
        until = self._cut_until.get((min(a, b), max(a, b)))
        return until is None or trio.current_time() >= until

    def record_penalty(self, by: int, peer: int, reason: str) -> None:
        if self.on_penalty is not None:
            self.on_penalty(by, peer, reason)
        self.stats.penalties += 1
        key = (by, peer)
        self.stats.penalized[key] = self.stats.penalized.get(key, 0) + 1

    def cut(self, a: int, b: int, until: float) -> None:
        """A ban: neither side's messages get through until `until`."""
        pair = (min(a, b), max(a, b))
        self._cut_until[pair] = max(until, self._cut_until.get(pair, until))
        self.stats.bans += 1

    # ------------------------------------------------------------ traffic

    def send(self, src: int, dst: int, message: Any) -> bool:
        """Queue one message; the sender's codec errors raise here, as over TCP."""
        return self._route(src, dst, _frame(message, self.config.max_frame_bytes))

    def send_raw(self, src: int, dst: int, payload: bytes) -> bool:
        """A frame already packed (the Byzantine actor's own encodings)."""
        if len(payload) > self.config.max_frame_bytes:
            return False
        return self._route(src, dst, payload)

    def _route(self, src: int, dst: int, payload: bytes) -> bool:
        self.stats.sent += 1
        if dst == src or not 0 <= dst < self.n:
            return False
        if not self.can_talk(src, dst):
            self.stats.partitioned += 1
            return False
        faults = self.faults
        rng = self._rng
        if faults.drop_permille and rng.randrange(1000) < faults.drop_permille:
            self.stats.dropped += 1
            return True  # lost on the wire: the sender cannot tell
        copies = 1
        if faults.dup_permille and rng.randrange(1000) < faults.dup_permille:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            self._schedule(src, dst, payload, self._delay_s())
        return True

    def _delay_s(self) -> float:
        faults = self.faults
        lo, hi = faults.delay_ms
        delay_ms = self._rng.randint(lo, hi)
        if faults.tail_permille and self._rng.randrange(1000) < faults.tail_permille:
            delay_ms = self._rng.randint(hi, max(hi, faults.tail_ms))
        return delay_ms / 1000

    def _schedule(self, src: int, dst: int, payload: bytes, delay_s: float) -> None:
        link = (src, dst)
        in_flight = self._in_flight.get(link, 0)
        if in_flight >= self.config.queue_frames:
            self.stats.link_full += 1
            return
        self._in_flight[link] = in_flight + 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, in_flight + 1)
        self._seq += 1
        incarnation = self._incarnation[dst]
        flight = _Flight(trio.current_time() + delay_s, self._seq, src, dst, incarnation, payload)
        heapq.heappush(self._heap, flight)
        if self._heap[0] is flight:
            self._wake.set()

    async def run(self) -> None:
        """Deliver each message at its time, in (time, send order)."""
        while True:
            self._wake = trio.Event()
            if not self._heap:
                await self._wake.wait()
                continue
            now = trio.current_time()
            if self._heap[0].at > now:
                with trio.move_on_at(self._heap[0].at):
                    await self._wake.wait()
                continue
            while self._heap and self._heap[0].at <= now:
                self._deliver(heapq.heappop(self._heap), now)

    def _deliver(self, flight: _Flight, now: float) -> None:
        link = (flight.src, flight.dst)
        self._in_flight[link] -= 1
        endpoint = self._endpoints.get(flight.dst)
        if endpoint is None or endpoint.incarnation != flight.incarnation:
            self.stats.dead += 1
            return
        if not self.can_talk(flight.src, flight.dst):
            self.stats.partitioned += 1
            return
        if not endpoint.inbound.put_nowait(flight.src, flight.payload):
            self.stats.inbox_full += 1
            return
        self.stats.delivered += 1
        self.stats.bytes_delivered += len(flight.payload)
        trace = self._trace
        trace.update(b"%d %d %d %d|" % (round(now * 1_000_000), flight.src, flight.dst, flight.seq))
        trace.update(hashlib.blake2b(flight.payload, digest_size=8).digest())

    def queue_stats(self) -> dict[str, int]:
        return {
            "in_flight": len(self._heap),
            "max_link_in_flight": max(self._in_flight.values(), default=0),
        }


def _frame(message: Any, max_frame_bytes: int) -> bytes:
    payload = pack(message)
    if len(payload) > max_frame_bytes:  # the transport refuses it in the sender too
        raise ValueError(f"message of {len(payload)} bytes exceeds max_frame_bytes")
    return payload


class SimEndpoint:
    """One member incarnation's `PeerNetwork` (node/seam.py)."""

    def __init__(self, net: SimNetwork, me: int, incarnation: int) -> None:
        self.net = net
        self.me = me
        self.incarnation = incarnation
        self.dead = False
        config = net.config
        self.inbound = InboundQueue(
            config.inbound_peer_bytes, config.inbound_bytes, self._undecodable
        )
        self.penalties = PenaltyLedger(
            points=config.penalty_points,
            ban_score=config.ban_score,
            decay_per_s=config.penalty_decay_per_s,
            ban_initial_s=config.ban_initial_s,
            ban_max_s=config.ban_max_s,
        )

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def send(self, peer_id: int, message: Any) -> bool:
        if self.dead:
            return False
        return self.net.send(self.me, peer_id, message)

    def broadcast(self, message: Any) -> None:
        if self.dead:
            return
        payload = _frame(message, self.net.config.max_frame_bytes)  # encoded once
        for peer in range(self.net.n):
            if peer != self.me:
                self.net._route(self.me, peer, payload)

    def connected_peers(self) -> frozenset[int]:
        net = self.net
        return frozenset(
            p for p in range(net.n) if p != self.me and net.is_up(p) and net.can_talk(self.me, p)
        )

    def penalize(self, peer_id: int, reason: str) -> None:
        """The transport's policy: score the fault; at the ban score, drop what the peer
        has waiting and cut the link both ways for the ban's back-off."""
        if self.dead or peer_id == self.me or not 0 <= peer_id < self.net.n:
            return
        self.net.record_penalty(self.me, peer_id, reason)
        now = trio.current_time()
        ban = self.penalties.penalize(peer_id, now)
        if ban is not None:
            self.inbound.discard(peer_id)
            self.net.cut(self.me, peer_id, now + ban.duration_s)

    def _undecodable(self, peer_id: int, error: FrameError) -> None:
        self.penalize(peer_id, f"protocol violation: {error}")
