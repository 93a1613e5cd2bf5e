"""What the API answers beyond the engine's live state: order history, fills, trades,
and the sequenced book deltas that streams carry.

The indexer is a block listener (`Node.add_block_listener`): after each executed block it
folds the engine's events into bounded tables (orders by id and by client id, each
account's recent orders and fills, each market's recent trades) and works out which
aggregated book levels changed. Each market's book changes are numbered: delta `seq`
follows `seq - 1` with no gap, so a client that sees a gap knows it missed something and
takes a fresh snapshot (docs/API.md, streams).

It reads the engine (never writes it) and only on the event loop, right after the block
was applied, so what it reads is the state at that block's height. Everything is bounded:
a node that runs for months keeps the most recent history, and an open order whose
record was evicted is still found through the engine.

It may not touch: consensus, storage, sockets. Publishing goes through `Publisher`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from matching.book import Book, Order
from matching.events import (
    Accepted,
    BalanceChanged,
    Cancelled,
    Deposited,
    Event,
    Expired,
    Fill,
    Modified,
    Rejected,
    Trade,
    Withdrawn,
)

if TYPE_CHECKING:
    from matching.engine import Engine
    from node.runtime import ExecutedBlock

Topic = tuple[Any, ...]  # ("book", market) | ("trades", market) | ("account", address) | ...


@dataclass(frozen=True, slots=True)
class IndexLimits:
    max_orders: int = 200_000  # order records kept (least recently updated evicted)
    max_accounts: int = 50_000  # accounts with kept history (least recently active evicted)
    history_per_account: int = 500  # recent orders per account
    fills_per_account: int = 500
    trades_per_market: int = 1_000
    max_depth_levels: int = 1_000  # levels per side in a query answer


@runtime_checkable
class IndexedNode(Protocol):
    """What the indexer needs from the node (node/runtime.py's `Node` has it)."""

    engine: Engine
    exec_height: int

    def add_block_listener(self, listener: Callable[[ExecutedBlock], None]) -> None: ...


class Publisher(Protocol):
    """Where stream messages go (node/api/streams.py's `StreamHub`)."""

    def wants(self, topic: Topic) -> bool: ...
    def publish(self, topic: Topic, message: dict[str, Any]) -> None: ...


class _NoPublisher:
    def wants(self, topic: Topic) -> bool:
        return False

    def publish(self, topic: Topic, message: dict[str, Any]) -> None:
        return None


@dataclass(slots=True)
class OrderRecord:
    """One order's life as the indexer saw it. `size` is the original size, `open` the
    size still resting (0 once closed), `filled` the sum of its fills."""

    oid: int
    account: bytes
    market: int
    side: str
    kind: str
    price: int
    size: int
    tif: str
    cloid: int | None
    height: int
    timestamp_ms: int
    intent_id: bytes | None
    status: str = "open"  # open | filled | cancelled | expired
    open: int = 0
    filled: int = 0
    reason: str | None = None  # why it was cancelled
    updated_height: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "oid": self.oid,
            "account": _hex(self.account),
            "market": self.market,
            "side": self.side,
            "kind": self.kind,
            "price": self.price,
            "size": self.size,
            "tif": self.tif,
            "cloid": self.cloid,
            "status": self.status,
            "open": self.open,
            "filled": self.filled,
            "reason": self.reason,
            "height": self.height,
            "timestamp_ms": self.timestamp_ms,
            "updated_height": self.updated_height,
            "intent_id": None if self.intent_id is None else _hex(self.intent_id),
        }


@dataclass(slots=True)
class _AccountHistory:
    orders: deque[int]
    fills: deque[dict[str, Any]]


@dataclass(slots=True)
class _BookMirror:
    """The aggregated levels (price -> open size) last published, and their sequence."""

    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    seq: int = 0
    height: int = 0


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _level_size(book: Book, is_buy: bool, price: int) -> int:
    level = book.side(is_buy).levels.get(price if is_buy else -price)
    return 0 if level is None else level.open_size()


def _all_levels(book: Book, is_buy: bool) -> dict[int, int]:
    return {level.price: level.open_size() for level in book.side(is_buy).best_first()}


class Indexer:
    """Subscribe with `attach(node)`; query from the event loop."""

    def __init__(
        self,
        engine: Engine,
        height: int,
        limits: IndexLimits | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.engine = engine
        self.height = height
        self.timestamp_ms = 0
        self.limits = limits or IndexLimits()
        self.publisher: Publisher = publisher or _NoPublisher()
        self._orders: OrderedDict[int, OrderRecord] = OrderedDict()
        self._by_cloid: dict[tuple[bytes, int], int] = {}
        self._by_intent: dict[bytes, int] = {}
        self._accounts: OrderedDict[bytes, _AccountHistory] = OrderedDict()
        self._trades: dict[int, deque[dict[str, Any]]] = {
            m: deque(maxlen=self.limits.trades_per_market) for m in engine.books
        }
        self._books: dict[int, _BookMirror] = {}
        for market, book in engine.books.items():
            self._books[market] = _BookMirror(
                _all_levels(book, True), _all_levels(book, False), 0, height
            )
        self.blocks_indexed = 0

    @classmethod
    def attach(
        cls,
        node: IndexedNode,
        limits: IndexLimits | None = None,
        publisher: Publisher | None = None,
    ) -> Indexer:
        indexer = cls(node.engine, node.exec_height, limits, publisher)
        node.add_block_listener(indexer.on_block)
        return indexer

    # ------------------------------------------------------------------ queries

    def order(self, oid: int) -> dict[str, Any] | None:
        record = self._orders.get(oid)
        return None if record is None else record.view()

    def oid_of_intent(self, intent_id: bytes) -> int | None:
        """The order a committed `place` intent created (while its record is kept)."""
        return self._by_intent.get(intent_id)

    def order_by_cloid(self, account: bytes, cloid: int) -> dict[str, Any] | None:
        oid = self._by_cloid.get((account, cloid))
        if oid is not None and oid in self._orders:
            return self._orders[oid].view()
        found = self.engine.accounts.get(account)
        order = None if found is None else found.cloids.get(cloid)
        return None if order is None else _open_order_view(order)

    def open_orders(self, account: bytes) -> list[dict[str, Any]]:
        views = []
        for order in self.engine.open_orders(account):
            record = self._orders.get(order.oid)
            views.append(_open_order_view(order) if record is None else record.view())
        return views

    def order_history(self, account: bytes, limit: int) -> list[dict[str, Any]]:
        """Most recent first."""
        history = self._accounts.get(account)
        if history is None:
            return []
        out = []
        for oid in reversed(history.orders):
            record = self._orders.get(oid)
            if record is not None:
                out.append(record.view())
                if len(out) >= limit:
                    break
        return out

    def fills(self, account: bytes, limit: int) -> list[dict[str, Any]]:
        history = self._accounts.get(account)
        if history is None:
            return []
        return list(reversed(history.fills))[:limit]

    def trades(self, market: int, limit: int) -> list[dict[str, Any]]:
        return list(reversed(self._trades[market]))[:limit]

    def depth(self, market: int, levels: int) -> dict[str, Any]:
        """Aggregated levels, best first: [price, open size, order count]."""
        book = self.engine.books[market]
        mirror = self._books[market]
        return {
            "market": market,
            "height": self.height,
            "seq": mirror.seq,
            "bids": [list(level) for level in book.depth(True, levels)],
            "asks": [list(level) for level in book.depth(False, levels)],
        }

    def book_snapshot(self, market: int) -> dict[str, Any]:
        """The whole aggregated book at the current `seq`: what a stream starts from."""
        mirror = self._books[market]
        return {
            "channel": "book",
            "type": "snapshot",
            "market": market,
            "seq": mirror.seq,
            "height": mirror.height,
            "bids": sorted(([p, s] for p, s in mirror.bids.items()), reverse=True),
            "asks": sorted([p, s] for p, s in mirror.asks.items()),
        }

    # ------------------------------------------------------------------ indexing

    def on_block(self, block: ExecutedBlock) -> None:
        self.height = block.height
        self.timestamp_ms = block.timestamp_ms
        self.blocks_indexed += 1
        work = _BlockWork()
        self._fold(block.result.expired, None, None, work)
        for entry, events in zip(block.entries, block.result.events, strict=True):
            self._fold(events, entry.engine_entry, entry.intent_id, work)
        self._publish_book_deltas(work)
        self._publish_account_updates(work)

    def _fold(
        self,
        events: Iterable[Event],
        entry: dict[str, Any] | None,
        intent_id: bytes | None,
        work: _BlockWork,
    ) -> None:
        height = self.height
        for ev in events:
            kind = type(ev)
            if isinstance(ev, Fill):
                self._on_fill(ev, work)
            elif isinstance(ev, Trade):
                self._on_trade(ev, work)
            elif isinstance(ev, Accepted):
                a: Accepted = ev
                record = OrderRecord(
                    a.oid, a.account, a.market, a.side, a.kind, a.price, a.size, a.tif,
                    a.cloid, height, self.timestamp_ms, intent_id, "open", a.size, 0, None, height,
                )  # fmt: skip
                self._remember(record)
                work.touch(a.market, a.side == "buy", a.price)
                work.order_update(record)
            elif isinstance(ev, Cancelled | Expired):
                c: Cancelled | Expired = ev
                record_or_none = self._orders.get(c.oid)
                if record_or_none is None:
                    work.resync.add(c.market)
                    continue
                record_or_none.status = "cancelled" if kind is Cancelled else "expired"
                record_or_none.reason = c.reason if isinstance(c, Cancelled) else None
                record_or_none.open = 0
                record_or_none.updated_height = height
                self._orders.move_to_end(c.oid)
                work.touch(c.market, record_or_none.side == "buy", record_or_none.price)
                work.order_update(record_or_none)
            elif isinstance(ev, Modified):
                m: Modified = ev
                record_or_none = self._orders.get(m.oid)
                if record_or_none is None:
                    work.resync.add(m.market)
                    continue
                is_buy = record_or_none.side == "buy"
                work.touch(m.market, is_buy, record_or_none.price)
                work.touch(m.market, is_buy, m.price)
                record_or_none.price = m.price
                record_or_none.size = record_or_none.filled + m.size
                record_or_none.open = m.size
                record_or_none.updated_height = height
                self._orders.move_to_end(m.oid)
                work.order_update(record_or_none)
            elif isinstance(ev, Rejected) and entry is not None:
                account = entry.get("account")
                if isinstance(account, bytes):
                    r: Rejected = ev
                    action = entry.get("action")
                    work.account_message(
                        account,
                        {
                            "type": "rejected",
                            "intent_id": None if intent_id is None else _hex(intent_id),
                            "action": action.get("type") if isinstance(action, dict) else None,
                            "code": r.code,
                            "message": r.message,
                            "height": height,
                        },
                    )
            elif isinstance(ev, BalanceChanged):
                b: BalanceChanged = ev
                work.account_message(
                    b.account,
                    {
                        "type": "balance",
                        "asset": b.asset,
                        "available": b.available,
                        "locked": b.locked,
                        "height": height,
                    },
                )
            elif isinstance(ev, Deposited | Withdrawn):
                d: Deposited | Withdrawn = ev
                message = {
                    "type": "deposit" if kind is Deposited else "withdrawal",
                    "id": d[0],
                    "asset": d.asset,
                    "amount": d.amount,
                    "height": height,
                }
                work.account_message(d.account, message)

    def _on_fill(self, f: Fill, work: _BlockWork) -> None:
        fill = {
            "trade_id": f.trade_id,
            "oid": f.oid,
            "market": f.market,
            "side": f.side,
            "price": f.price,
            "size": f.size,
            "fee": f.fee,
            "maker": f.maker,
            "remaining": f.remaining,
            "height": self.height,
            "timestamp_ms": self.timestamp_ms,
        }
        self._history(f.account).fills.append(fill)
        work.account_message(f.account, {"type": "fill", **fill})
        record = self._orders.get(f.oid)
        if record is not None:
            record.filled += f.size
            record.open = f.remaining
            if not f.remaining:
                record.status = "filled"
            record.updated_height = self.height
            self._orders.move_to_end(f.oid)
            work.order_update(record)
        if f.maker:
            work.touch(f.market, f.side == "buy", f.price)

    def _on_trade(self, t: Trade, work: _BlockWork) -> None:
        trade = {
            "trade_id": t.trade_id,
            "market": t.market,
            "price": t.price,
            "size": t.size,
            "taker_side": t.taker_side,
            "height": self.height,
            "timestamp_ms": self.timestamp_ms,
        }
        self._trades[t.market].append(trade)
        work.trades.setdefault(t.market, []).append(trade)

    def _remember(self, record: OrderRecord) -> None:
        orders = self._orders
        orders[record.oid] = record
        if record.cloid is not None:
            self._by_cloid[(record.account, record.cloid)] = record.oid
        if record.intent_id is not None:
            self._by_intent[record.intent_id] = record.oid
        self._history(record.account).orders.append(record.oid)
        while len(orders) > self.limits.max_orders:
            _, old = orders.popitem(last=False)
            if old.cloid is not None and self._by_cloid.get((old.account, old.cloid)) == old.oid:
                del self._by_cloid[(old.account, old.cloid)]
            if old.intent_id is not None:
                self._by_intent.pop(old.intent_id, None)

    def _history(self, account: bytes) -> _AccountHistory:
        accounts = self._accounts
        history = accounts.get(account)
        if history is None:
            history = accounts[account] = _AccountHistory(
                deque(maxlen=self.limits.history_per_account),
                deque(maxlen=self.limits.fills_per_account),
            )
            while len(accounts) > self.limits.max_accounts:
                accounts.popitem(last=False)
        else:
            accounts.move_to_end(account)
        return history

    # ------------------------------------------------------------------ streams

    def _publish_book_deltas(self, work: _BlockWork) -> None:
        for market in work.touched.keys() | work.resync:
            book = self.engine.books.get(market)
            if book is None:
                continue
            mirror = self._books[market]
            changed_bids: list[list[int]] = []
            changed_asks: list[list[int]] = []
            if market in work.resync:
                for is_buy, levels, changed in (
                    (True, mirror.bids, changed_bids),
                    (False, mirror.asks, changed_asks),
                ):
                    now = _all_levels(book, is_buy)
                    for price in levels.keys() | now.keys():
                        _diff(levels, price, now.get(price, 0), changed)
            else:
                for is_buy, price in work.touched[market]:
                    _diff(
                        mirror.bids if is_buy else mirror.asks,
                        price,
                        _level_size(book, is_buy, price),
                        changed_bids if is_buy else changed_asks,
                    )
            if not changed_bids and not changed_asks:
                continue
            mirror.seq += 1
            mirror.height = self.height
            topic = ("book", market)
            if self.publisher.wants(topic):
                changed_bids.sort(reverse=True)
                changed_asks.sort()
                self.publisher.publish(
                    topic,
                    {
                        "channel": "book",
                        "type": "delta",
                        "market": market,
                        "seq": mirror.seq,
                        "height": self.height,
                        "bids": changed_bids,
                        "asks": changed_asks,
                    },
                )

    def _publish_account_updates(self, work: _BlockWork) -> None:
        """One message per block and topic, so that a queue bound counts blocks behind,
        whatever the size of a block."""
        publisher = self.publisher
        for market, trades in work.trades.items():
            if publisher.wants(("trades", market)):
                message = {"channel": "trades", "market": market, "height": self.height}
                publisher.publish(("trades", market), {**message, "trades": trades})
        for record in work.orders.values():
            if publisher.wants(("account", record.account)):
                work.account_message(record.account, {"type": "order", **record.view()})
        for account, updates in work.messages.items():
            if publisher.wants(("account", account)):
                message = {"channel": "account", "account": _hex(account), "height": self.height}
                publisher.publish(("account", account), {**message, "updates": updates})


class _BlockWork:
    """What one block changed: book levels to re-read, order records and account
    messages to publish."""

    __slots__ = ("messages", "orders", "resync", "touched", "trades")

    def __init__(self) -> None:
        self.trades: dict[int, list[dict[str, Any]]] = {}
        self.touched: dict[int, set[tuple[bool, int]]] = {}
        self.resync: set[int] = set()
        self.orders: dict[int, OrderRecord] = {}
        self.messages: dict[bytes, list[dict[str, Any]]] = {}

    def touch(self, market: int, is_buy: bool, price: int) -> None:
        self.touched.setdefault(market, set()).add((is_buy, price))

    def order_update(self, record: OrderRecord) -> None:
        self.orders[record.oid] = record  # published once per block, in its final state

    def account_message(self, account: bytes, message: dict[str, Any]) -> None:
        self.messages.setdefault(account, []).append(message)


def _diff(levels: dict[int, int], price: int, size: int, changed: list[list[int]]) -> None:
    if levels.get(price, 0) == size:
        return
    if size:
        levels[price] = size
    else:
        levels.pop(price, None)
    changed.append([price, size])


def _open_order_view(order: Order) -> dict[str, Any]:
    """An open order known only to the engine (placed before this node's index began)."""
    return {
        "oid": order.oid,
        "account": _hex(order.account.address),
        "market": order.book.id,
        "side": "buy" if order.is_buy else "sell",
        "kind": "limit",
        "price": order.price,
        "size": None,
        "tif": "post" if order.post_only else "gtc",
        "cloid": order.cloid,
        "status": "open",
        "open": order.size,
        "filled": None,
        "reason": None,
        "height": None,
        "timestamp_ms": None,
        "updated_height": None,
        "intent_id": None,
    }


HISTORY_LIMIT_MAX: Final = 500
