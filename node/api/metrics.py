"""Prometheus metrics of one node (docs/OPERATIONS.md, docs/API.md "Metrics").

Two sources, so that the hot paths pay nothing for metrics they already count:
- `NodeCollector` reads the node at scrape time: consensus status, the node's counters,
  mempool, transport links, stream subscribers, checkpoints. Nothing is updated per
  message; a scrape costs a few dictionary reads.
- A block listener observes what only exists at the moment a block executes: the time
  per round, how long after its proposal a block executed, entries per block, and (when
  the runtime reports it) the engine's apply time.
API requests are counted by an ASGI middleware (route template, method, status: label
values are bounded by the routes), intake outcomes by a wrapper around the facade.

Served at GET /metrics on the node's API listener (one port to open and probe; the text
format is cheap to render). Each app has its own registry, so apps never share series.

It reads the node, never changes it; it may not touch consensus or the engine's state.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.api.facade import NodeFacade, SubmitResult
from node.intents import Domain, SignedIntent

if TYPE_CHECKING:
    from node.api.streams import StreamHub
    from node.runtime import ExecutedBlock

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_ROUND_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_APPLY_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1)
_ENTRY_BUCKETS: Final = (0, 1, 4, 16, 64, 256, 1024, 4096, 16384)
RATE_WINDOW_S: Final = 10.0


class NodeMetrics:
    """The registry of one API app, with the node (if any) and the stream hub wired in."""

    def __init__(self, node: Any | None = None, hub: StreamHub | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.node = node
        self.hub = hub
        r = self.registry
        self.api_requests = Counter(
            "seqnet_api_requests",
            "API requests answered, by route template, method and HTTP status",
            ["route", "method", "status"],
            registry=r,
        )
        self.intake_results = Counter(
            "seqnet_intake_results",
            "Intents answered by this node's intake, by status and rejection code",
            ["status", "code"],
            registry=r,
        )
        self.round_seconds = Histogram(
            "seqnet_consensus_round_duration_seconds",
            "Wall time per consensus round (rounds advanced between executed blocks)",
            buckets=_ROUND_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "seqnet_block_commit_latency_seconds",
            "From a block's proposal timestamp to its execution on this node",
            buckets=_ROUND_BUCKETS,
            registry=r,
        )
        self.block_entries = Histogram(
            "seqnet_block_entries",
            "Entries per executed block",
            buckets=_ENTRY_BUCKETS,
            registry=r,
        )
        self.apply_seconds = Histogram(
            "seqnet_block_apply_seconds",
            "Matching-engine time to apply one block",
            buckets=_APPLY_BUCKETS,
            registry=r,
        )
        self._round: tuple[int, float] | None = None
        self._high_tc_round = 0
        self.timeout_certificates = 0
        self._entries: deque[tuple[float, int]] = deque()
        if node is not None or hub is not None:
            r.register(NodeCollector(self))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ block listener

    def on_block(self, block: ExecutedBlock) -> None:
        now = time.monotonic()
        self.block_entries.observe(len(block.entries))
        self.commit_latency.observe(max(0.0, time.time() - block.timestamp_ms / 1000))
        apply_s = getattr(block, "apply_s", None)
        if isinstance(apply_s, float):
            self.apply_seconds.observe(apply_s)
        self._entries.append((now, len(block.entries)))
        while self._entries and self._entries[0][0] < now - RATE_WINDOW_S:
            self._entries.popleft()
        self._observe_rounds(now)

    def _observe_rounds(self, now: float) -> None:
        status = _core_status(self.node)
        if status is None:
            return
        round_ = int(status.round)
        if status.high_tc_round > self._high_tc_round:
            self.timeout_certificates += 1
            self._high_tc_round = int(status.high_tc_round)
        if self._round is not None:
            last_round, last_t = self._round
            advanced = round_ - last_round
            if advanced > 0:
                per_round = (now - last_t) / advanced
                for _ in range(min(advanced, 100)):
                    self.round_seconds.observe(per_round)
            else:
                return
        self._round = (round_, now)

    def entries_per_s(self) -> float:
        if not self._entries:
            return 0.0
        return sum(n for _, n in self._entries) / RATE_WINDOW_S

    # ------------------------------------------------------------------ intake

    def observe_results(self, results: list[SubmitResult]) -> None:
        for result in results:
            self.intake_results.labels(result.status, result.code or "").inc()


def _core_status(node: Any) -> Any:
    core = getattr(node, "core", None)
    return None if core is None else core.status()


class NodeCollector(Collector):
    """Reads the node's state at scrape time."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        node = self.metrics.node
        if node is not None:
            yield from _consensus(node, self.metrics)
            yield from _node_counters(node)
            yield from _mempool(node)
            yield from _transport(node)
            yield from _settlement(node)
            yield _gauge(
                "seqnet_execution_entries_per_second",
                f"Entries executed per second over the last {RATE_WINDOW_S:g} s",
                self.metrics.entries_per_s(),
            )
        hub = self.metrics.hub
        if hub is not None:
            yield from _streams(hub)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _consensus(node: Any, metrics: NodeMetrics) -> Iterator[Metric]:
    status = _core_status(node)
    if status is not None:
        yield _gauge("seqnet_consensus_round", "Current consensus round", status.round)
        yield _gauge(
            "seqnet_consensus_high_qc_round", "Round of the highest QC", status.high_qc_round
        )
        yield _gauge(
            "seqnet_consensus_high_tc_round", "Round of the highest TC", status.high_tc_round
        )
        yield _gauge(
            "seqnet_consensus_last_voted_round",
            "Last round this node voted in",
            status.last_voted_round,
        )
        yield _gauge(
            "seqnet_consensus_committed_height",
            "Height committed by consensus",
            status.committed_height,
        )
        yield _gauge(
            "seqnet_consensus_blocks_in_tree", "Uncommitted blocks held", status.blocks_in_tree
        )
        yield _gauge(
            "seqnet_consensus_is_leader",
            "1 when this node leads the current round",
            1.0 if status.leader == getattr(node, "me", -1) else 0.0,
        )
        yield _counter(
            "seqnet_consensus_timeout_certificates",
            "New timeout certificates seen (counted when a block executes)",
            metrics.timeout_certificates,
        )
    height = getattr(node, "exec_height", None)
    if height is not None:
        yield _gauge("seqnet_committed_height", "Height executed by this node's engine", height)
    ready = getattr(node, "is_ready", None)
    if callable(ready):
        yield _gauge("seqnet_ready", "1 once the node joined and caught up", float(bool(ready())))


_COUNTER_HELP: Final = {
    "blocks_committed": "Blocks executed",
    "entries_committed": "Entries executed (deposits and intents)",
    "proposals_rejected": "Proposals refused for an invalid payload",
    "peer_messages_rejected": "Peer messages dropped at the boundary",
    "intents_admitted": "Intents admitted to the mempool (clients and peers)",
    "syncs": "Committed-log syncs started",
    "share_recovery_requests": "Requests for a DKG run's dealings (our key share is missing)",
    "share_recovery_recovered": "Key shares recovered from peers' dealings",
    "share_recovery_refused": "Dealings answers refused as the sender's fault",
    "share_recovery_unopened": "Authentic dealings whose share for us did not open",
    "share_repair_sessions": "Share repair sessions we started (our share does not open)",
    "share_repair_repaired": "Key shares repaired by helpers (PROTOCOL.md 10.11)",
    "share_repair_refused": "Share repair messages refused, blamed on a member",
    "share_repair_helped": "Share repair sums we sent as a helper",
    "share_repair_throttled": "Share repair requests dropped: one per requester per 0.5 s",
    "dkg_relay_sent": "Offers of our pending DKG entries sent to the peers (PROTOCOL.md 10.9)",
    "dkg_relay_kept": "Peers' relayed DKG entries whose proofs held, kept for our proposals",
    "dkg_relay_dropped": "Peers' relayed DKG entries dropped (a failed proof, or too often)",
}


def _node_counters(node: Any) -> Iterator[Metric]:
    clock = getattr(node, "clock", None)
    if clock is not None:
        yield _gauge(
            "seqnet_clock_offset_ms",
            "Offset of the committee's clock from this member's (peers' signed timestamps)",
            clock.offset_ms,
        )
    counters: dict[str, int] = getattr(node, "counters", {}) or {}
    for name, value in sorted(counters.items()):
        help_text = _COUNTER_HELP.get(name, name.replace("_", " "))
        yield _counter(f"seqnet_{name}", help_text, value)
    if "entries_committed" in counters:
        yield _counter(
            "seqnet_execution_entries", "Entries executed", counters["entries_committed"]
        )


def _mempool(node: Any) -> Iterator[Metric]:
    mempool = getattr(node, "mempool", None)
    if mempool is None:
        return
    yield _gauge("seqnet_mempool_size", "Intents waiting in the mempool", len(mempool))
    size_bytes = getattr(mempool, "size_bytes", None)
    if size_bytes is not None:
        yield _gauge("seqnet_mempool_bytes", "Bytes of intents in the mempool", size_bytes)


_PEER_FIELDS: Final = (
    ("bytes_in", "seqnet_transport_received_bytes", "counter", "Bytes received from a peer"),
    ("bytes_out", "seqnet_transport_sent_bytes", "counter", "Bytes sent to a peer"),
    ("frames_in", "seqnet_transport_received_frames", "counter", "Frames received from a peer"),
    ("frames_out", "seqnet_transport_sent_frames", "counter", "Frames sent to a peer"),
    ("drops", "seqnet_transport_dropped_frames", "counter", "Frames evicted from a full queue"),
    ("connects", "seqnet_transport_connects", "counter", "Connections adopted"),
    ("disconnects", "seqnet_transport_disconnects", "counter", "Connections lost"),
    ("dial_failures", "seqnet_transport_dial_failures", "counter", "Failed dials"),
    ("protocol_errors", "seqnet_transport_protocol_errors", "counter", "Bad-frame disconnects"),
    ("queue_depth", "seqnet_transport_queue_depth", "gauge", "Frames queued for a peer"),
    ("connected", "seqnet_transport_peer_connected", "gauge", "1 while a peer is connected"),
    ("queue_bytes", "seqnet_transport_queue_bytes", "gauge", "Bytes queued for a peer"),
    ("inbound_bytes", "seqnet_transport_inbound_bytes", "gauge", "A peer's bytes waiting for us"),
    ("score", "seqnet_transport_peer_score", "gauge", "A peer's misbehaviour score"),
    ("banned", "seqnet_transport_peer_banned", "gauge", "1 while a peer is banned"),
    ("penalties", "seqnet_transport_penalties", "counter", "Faults counted against a peer"),
    ("bans", "seqnet_transport_bans", "counter", "Times a peer was banned"),
)


def _transport(node: Any) -> Iterator[Metric]:
    transport = getattr(node, "transport", None)
    if transport is None:
        return
    stats = transport.stats()
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for attr, name, kind, help_text in _PEER_FIELDS:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        families[attr] = cls(name, help_text, labels=["peer"])
    connected = 0
    for peer, peer_stats in sorted(stats.peers.items()):
        connected += bool(peer_stats.connected)
        for attr, family in families.items():
            family.add_metric([str(peer)], float(getattr(peer_stats, attr)))
    yield from families.values()
    yield _gauge("seqnet_transport_peers", "Peers connected", connected)
    yield _counter(
        "seqnet_transport_handshakes_rejected", "Handshakes refused", stats.handshakes_rejected
    )
    refusals = CounterMetricFamily(
        "seqnet_transport_refusals",
        "Connections refused before a handshake, by reason",
        labels=["reason"],
    )
    for reason, count in sorted(stats.refusals.items()):
        refusals.add_metric([reason], float(count))
    yield refusals
    yield _counter(
        "seqnet_transport_source_backoffs",
        "Times a source failing handshakes was backed off",
        stats.source_backoffs,
    )
    yield _gauge(
        "seqnet_transport_handshakes_pending",
        "Unauthenticated connections holding a slot",
        stats.handshakes_pending,
    )
    yield _gauge(
        "seqnet_transport_sources_backed_off", "Sources refused now", stats.sources_backed_off
    )
    yield _gauge(
        "seqnet_transport_inbound_total_bytes",
        "Bytes of peer messages waiting for the node",
        stats.inbound_bytes,
    )


def _settlement(node: Any) -> Iterator[Metric]:
    checkpointer = getattr(node, "checkpointer", None)
    if checkpointer is not None:
        status = checkpointer.status()
        yield _gauge(
            "seqnet_checkpoint_latest_sequence", "Last checkpoint sealed", status["latest_sequence"]
        )
        yield _gauge(
            "seqnet_checkpoint_landed_sequence",
            "Last checkpoint accepted on chain",
            status["landed_sequence"],
        )
        yield _gauge("seqnet_checkpoint_pending", "Checkpoints not landed yet", status["pending"])
    engine = getattr(node, "engine", None)
    if engine is not None:
        yield _gauge("seqnet_last_deposit_id", "Last deposit applied", engine.last_deposit_id)


def _streams(hub: StreamHub) -> Iterator[Metric]:
    yield _gauge("seqnet_stream_connections", "Open /v1/stream connections", hub.connections)
    subs = GaugeMetricFamily(
        "seqnet_stream_subscriptions", "Stream subscriptions by channel", labels=["channel"]
    )
    for channel, count in hub.subscriptions().items():
        subs.add_metric([channel], count)
    yield subs
    dropped = CounterMetricFamily(
        "seqnet_stream_dropped", "Stream connections dropped, by reason", labels=["reason"]
    )
    for reason in sorted({"slow_consumer", *hub.dropped}):
        dropped.add_metric([reason], hub.dropped.get(reason, 0))
    yield dropped
    yield _counter("seqnet_stream_messages", "Stream messages published", hub.messages)


# ---------------------------------------------------------------------------------------
# API instrumentation


class CountingFacade:
    """A `NodeFacade` that counts each intent's outcome, then answers as the node did."""

    def __init__(self, facade: NodeFacade, metrics: NodeMetrics) -> None:
        self._facade = facade
        self._metrics = metrics
        self.domain: Domain = facade.domain

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        results = await self._facade.submit(intents, wait, timeout_s)
        self._metrics.observe_results(results)
        return results

    def status(self) -> dict[str, Any]:
        return self._facade.status()

    def is_ready(self) -> bool:
        return self._facade.is_ready()


ASGIApp = Callable[..., Any]


class RequestMetricsMiddleware:
    """Counts answered HTTP requests by route template (not by raw path: bounded labels)
    and opened WebSocket sessions (status "ws")."""

    def __init__(self, app: ASGIApp, metrics: NodeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        status = ["ws" if kind == "websocket" else "500"]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "WS")
            self.metrics.api_requests.labels(path, method, status[0]).inc()
