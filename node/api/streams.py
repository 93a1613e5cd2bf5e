"""WebSocket streams (/v1/stream): book updates, trades, an account's orders and fills,
checkpoints, and for perpetual markets prices (index, mark, funding), liquidations and an
account's positions and margin, with subscribe/unsubscribe on one connection (docs/API.md,
streams).

`StreamHub` is the indexer's `Publisher`: a message is encoded once (orjson) and offered
to each subscriber of its topic without waiting. Every subscriber has a bounded queue;
one that is full means the client reads slower than the exchange moves, and that client
is dropped with the reason `slow_consumer` — the node never waits for a reader and never
grows memory for one. A book subscription starts with a snapshot at sequence `seq`, and
every later delta of that market carries `seq + 1`, `seq + 2`, …: the snapshot and the
deltas are queued on the event loop with no await in between, so none can slip between.

Shape of the I/O as in node/api/ws.py: one reader (client requests), one writer (the
queue), heartbeats from a third task; the session ends when any of them does.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog
import trio
from starlette.websockets import WebSocket

from node.api.intake import ApiError, Intake, dumps_json
from node.intents import IntentError, parse_address, parse_json_bounded

if TYPE_CHECKING:
    from node.api.indexer import Indexer, Topic

log = structlog.get_logger("seqnet.api")

CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_GRACE_S: Final = 1.0
MAX_REQUEST_BYTES: Final = 4096
CHANNELS: Final = (
    "book", "trades", "account", "checkpoints", "prices", "liquidations", "positions"
)  # fmt: skip
PERP_MARKET_CHANNELS: Final = ("prices", "liquidations")
ACCOUNT_CHANNELS: Final = ("account", "positions")


@dataclass(frozen=True, slots=True)
class StreamLimits:
    # Per connection. Streams send at most one message per block and topic, so this is
    # about how many blocks a client may fall behind before it is dropped.
    queue_messages: int = 1024
    max_subscriptions: int = 64  # per connection
    # Distinct accounts followed on the `positions` channel, node-wide: each costs a
    # margin summary per block in which it changes (node/api/indexer.py).
    max_position_accounts: int = 1024
    heartbeat_s: float = 5.0
    checkpoint_poll_s: float = 0.5
    max_bad_requests: int = 10


class Subscriber:
    """One connection's side of the hub: its subscriptions and its bounded queue."""

    __slots__ = ("_cancel", "_hub", "_send", "dropped", "receive", "topics")

    def __init__(self, hub: StreamHub, queue_messages: int) -> None:
        self._hub = hub
        self._send, self.receive = trio.open_memory_channel[str](queue_messages)
        self.topics: set[Topic] = set()
        self.dropped: str | None = None
        self._cancel: trio.CancelScope | None = None

    def bind(self, cancel: trio.CancelScope) -> None:
        self._cancel = cancel

    def offer(self, text: str) -> None:
        if self.dropped is not None:
            return
        try:
            self._send.send_nowait(text)
        except trio.WouldBlock:
            self.drop("slow_consumer")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.drop("closed")

    def drop(self, reason: str) -> None:
        """Stop at once: no more messages are queued, the session ends. (Its writer may
        still sit in a send to a client that does not read; that holds one frame, and the
        client gets the reason once it reads again.)"""
        if self.dropped is None:
            self.dropped = reason
            self._hub.leave(self)
            if self._cancel is not None:
                self._cancel.cancel()


class StreamHub:
    """Topic -> subscribers. All methods run on the event loop, none awaits."""

    def __init__(self) -> None:
        self._topics: dict[Topic, set[Subscriber]] = {}
        self._by_channel: dict[str, set[Topic]] = {}  # channel -> its subscribed topics
        self.connections = 0
        self.dropped: dict[str, int] = {}
        self.messages = 0

    def wants(self, topic: Topic) -> bool:
        return topic in self._topics

    def subscribed(self, channel: str) -> list[Topic]:
        """The topics of a channel with at least one subscriber."""
        return list(self._by_channel.get(channel, ()))

    def publish(self, topic: Topic, message: dict[str, Any]) -> None:
        subscribers = self._topics.get(topic)
        if not subscribers:
            return
        text = dumps_json(message).decode()
        self.messages += 1
        for subscriber in tuple(subscribers):
            subscriber.offer(text)

    def subscribe(self, subscriber: Subscriber, topic: Topic) -> None:
        self._topics.setdefault(topic, set()).add(subscriber)
        self._by_channel.setdefault(topic[0], set()).add(topic)
        subscriber.topics.add(topic)

    def unsubscribe(self, subscriber: Subscriber, topic: Topic) -> None:
        subscriber.topics.discard(topic)
        subscribers = self._topics.get(topic)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._topics[topic]
                self._by_channel[topic[0]].discard(topic)

    def leave(self, subscriber: Subscriber) -> None:
        for topic in tuple(subscriber.topics):
            self.unsubscribe(subscriber, topic)
        reason = subscriber.dropped
        if reason is not None and reason != "closed":
            self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def subscriptions(self) -> dict[str, int]:
        """Subscriptions per channel (for metrics)."""
        counts = dict.fromkeys(CHANNELS, 0)
        for topic, subscribers in self._topics.items():
            counts[topic[0]] += len(subscribers)
        return counts


class StreamSession:
    """One accepted /v1/stream connection."""

    def __init__(
        self,
        websocket: WebSocket,
        hub: StreamHub,
        indexer: Indexer,
        intake: Intake,
        client: Hashable,
        limits: StreamLimits,
        checkpoints: Callable[[], list[dict[str, Any]]] | None,
    ) -> None:
        self._ws = websocket
        self._hub = hub
        self._indexer = indexer
        self._intake = intake
        self._client = client
        self._limits = limits
        self._checkpoints = checkpoints
        self._sub = Subscriber(hub, limits.queue_messages)
        self._bad = 0
        self._checkpoint_task = False

    async def run(self) -> None:
        self._hub.connections += 1
        try:
            async with trio.open_nursery() as nursery:
                self._sub.bind(nursery.cancel_scope)
                nursery.start_soon(self._write_loop, nursery.cancel_scope)
                nursery.start_soon(self._heartbeats)
                self._nursery = nursery
                await self._read_loop()
                nursery.cancel_scope.cancel()
        finally:
            if self._sub.dropped is None:
                self._hub.leave(self._sub)
            self._hub.connections -= 1
        if self._sub.dropped is not None:
            log.info("stream subscriber dropped", reason=self._sub.dropped)
            with trio.move_on_after(CLOSE_GRACE_S) as scope:
                scope.shield = True
                try:
                    await self._ws.send_text(
                        _frame(
                            {
                                "channel": "error",
                                "error": {
                                    "code": self._sub.dropped,
                                    "message": "the client read too slowly; resubscribe",
                                },
                            }
                        )
                    )
                    await self._ws.close(CLOSE_POLICY_VIOLATION, self._sub.dropped)
                except Exception:
                    pass

    async def _read_loop(self) -> None:
        while True:
            frame = await self._ws.receive()
            if frame["type"] != "websocket.receive":
                return
            request_id: Any = None
            try:
                raw = frame.get("text")
                if raw is None:
                    raw = frame.get("bytes") or b""
                if len(raw) > MAX_REQUEST_BYTES:
                    raise ApiError(413, "too_large", f"a request is at most {MAX_REQUEST_BYTES} B")
                try:
                    request = parse_json_bounded(raw, MAX_REQUEST_BYTES)
                except IntentError as exc:
                    raise ApiError(400, exc.code, exc.message) from None
                if not isinstance(request, dict):
                    raise ApiError(400, "bad_type", "a request is a JSON object")
                request_id = request.get("id")
                if request_id is not None and not _valid_id(request_id):
                    request_id = None
                    raise ApiError(400, "bad_value", "id is a u64 or a string of ≤ 64 chars")
                self._intake.charge_request(self._client, request_id)
                self._handle(request, request_id)
            except ApiError as error:
                self._sub.offer(_frame({"channel": "error", "id": request_id, **error.body()}))
                if error.status != 429:
                    self._bad += 1
                    if self._bad >= self._limits.max_bad_requests:
                        self._sub.drop("too_many_bad_requests")
                        return

    def _handle(self, request: dict[str, Any], request_id: Any) -> None:
        op = request.get("op")
        if op == "ping":
            self._sub.offer(_frame({"channel": "pong", "id": request_id}))
            return
        if op not in ("subscribe", "unsubscribe"):
            raise ApiError(400, "bad_value", "op is subscribe, unsubscribe or ping", field="op")
        unknown = set(request) - {"op", "id", "channel", "market", "account"}
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field {sorted(unknown)[0]!r}")
        topic = self._topic(request)
        subscription = {k: v for k, v in request.items() if k in ("channel", "market", "account")}
        if op == "unsubscribe":
            self._hub.unsubscribe(self._sub, topic)
            self._sub.offer(
                _frame({"channel": "unsubscribed", "id": request_id, "subscription": subscription})
            )
            return
        if (
            topic not in self._sub.topics
            and len(self._sub.topics) >= self._limits.max_subscriptions
        ):
            raise ApiError(400, "too_many_subscriptions", "unsubscribe from something first")
        if (
            topic[0] == "positions"
            and not self._hub.wants(topic)
            and len(self._hub.subscribed("positions")) >= self._limits.max_position_accounts
        ):
            message = f"this node follows at most {self._limits.max_position_accounts} accounts"
            raise ApiError(503, "too_many_subscriptions", message)
        self._hub.subscribe(self._sub, topic)
        self._sub.offer(
            _frame({"channel": "subscribed", "id": request_id, "subscription": subscription})
        )
        # A book subscription (or a resubscription, to resync after a gap) starts with a
        # snapshot at the current seq; deltas after it are queued behind it.
        if topic[0] == "book":
            self._sub.offer(_frame(self._indexer.book_snapshot(topic[1])))
        elif topic[0] == "prices":
            self._sub.offer(_frame(self._indexer.prices_message(topic[1])))
        elif topic[0] == "positions":
            self._sub.offer(_frame(self._indexer.positions_message(topic[1])))
        elif topic[0] == "checkpoints" and not self._checkpoint_task:
            self._checkpoint_task = True
            self._nursery.start_soon(self._checkpoint_loop)

    def _topic(self, request: dict[str, Any]) -> Topic:
        channel = request.get("channel")
        if channel in ("book", "trades"):
            market = request.get("market")
            if type(market) is not int or market not in self._indexer.engine.books:
                raise ApiError(400, "unknown_market", f"no market {market!r}", field="market")
            return (channel, market)
        if channel in PERP_MARKET_CHANNELS:
            market = request.get("market")
            if type(market) is not int:
                raise ApiError(400, "unknown_market", f"no market {market!r}", field="market")
            try:
                self._indexer.perp_market(market)
            except LookupError as exc:
                raise ApiError(400, "not_perp", str(exc), field="market") from None
            return (channel, market)
        if channel in ACCOUNT_CHANNELS:
            if channel == "positions" and self._indexer.engine.perps is None:
                raise ApiError(400, "unavailable", "this exchange has no perpetual markets")
            account = request.get("account")
            if not isinstance(account, str):
                raise ApiError(400, "bad_address", "account is a 0x address", field="account")
            try:
                return (channel, parse_address(account))
            except IntentError as exc:
                raise ApiError(400, exc.code, exc.message, field="account") from None
        if channel == "checkpoints":
            if self._checkpoints is None:
                raise ApiError(400, "unavailable", "this node has no settlement checkpoints")
            return ("checkpoints",)
        raise ApiError(
            400, "bad_value", f"channel is one of {', '.join(CHANNELS)}", field="channel"
        )

    async def _checkpoint_loop(self) -> None:
        """Checkpoints change off the block path (signatures gathered, transaction
        landed), so this polls the node's view and sends what changed."""
        assert self._checkpoints is not None
        seen: dict[Any, Any] = {}
        while True:
            if ("checkpoints",) in self._sub.topics:
                for checkpoint in self._checkpoints():
                    key = checkpoint.get("sequence")
                    if seen.get(key) != checkpoint:
                        seen[key] = checkpoint
                        self._sub.offer(_frame({"channel": "checkpoints", **checkpoint}))
                while len(seen) > 64:
                    del seen[min(seen)]
            await trio.sleep(self._limits.checkpoint_poll_s)

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep(self._limits.heartbeat_s)
            self._sub.offer(_frame({"channel": "heartbeat", "height": self._indexer.height}))

    async def _write_loop(self, cancel_scope: trio.CancelScope) -> None:
        try:
            async for text in self._sub.receive:
                await self._ws.send_text(text)
        except Exception:
            cancel_scope.cancel()  # the client went away mid-send


def _valid_id(value: Any) -> bool:
    if type(value) is int:
        return 0 <= value < 2**64
    return isinstance(value, str) and len(value) <= 64


def _frame(message: dict[str, Any]) -> str:
    return dumps_json(message).decode()
