"""What the API answers beyond the engine's live state: order history, fills, trades,
deposits and withdrawals, checkpoints, candles, and the sequenced book deltas that
streams carry.

The indexer is a block listener (`Node.add_block_listener`): after each executed block it
folds the engine's events into rows of the persistent history (node/api/history.py: one
SQLite file beside the node's storage) and works out which aggregated book levels
changed. Each market's book changes are numbered: delta `seq` follows `seq - 1` with no
gap, so a client that sees a gap knows it missed something and takes a fresh snapshot
(docs/API.md, streams).

At start (`attach`) the history is brought up to the node's executed height by replaying
the committed log through this same code (`catch_up`): a missing file is rebuilt, a file
behind the node is topped up. A withdrawal's life (pending, in checkpoint N, landed,
claimed) is put together from the engine's events, the checkpoints it seals (each with
every withdrawal's Merkle proof) and, on a node wired to a chain, what the settlement
loop reports (`ChainView`: deposit transactions, the landed sequence, claims seen).

It reads the engine (never writes it) and only on the event loop, right after the block
was applied, so what it reads is the state at that block's height. Everything is bounded:
the history by its retention, the order cache by `max_orders`; an open order whose record
was evicted is still found through the history or the engine.

It may not touch: consensus, the node's storage, sockets. Publishing goes through
`Publisher`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import structlog

from matching.book import Book, Order
from matching.checkpoint import Checkpoint
from matching.events import (
    Accepted,
    Backstop,
    BadDebt,
    BalanceChanged,
    Cancelled,
    Deleveraged,
    Deposited,
    Event,
    Expired,
    Fill,
    Funding,
    FundingPaid,
    LeverageSet,
    Liquidation,
    LiquidationFee,
    LiquidationOrder,
    MarginChanged,
    Modified,
    PositionChanged,
    Prices,
    Rejected,
    Trade,
    Withdrawn,
)
from matching.margin import PerpMarket
from matching.merkle import MerkleTree
from matching.perp import LIQUIDATION_OID
from node.api import perps as perps_view
from node.api.history import (
    BlockRows,
    HistoryStore,
    Page,
    fill_row,
    money_row,
    order_row,
    packed,
    rows_or_none,
    trade_row,
)

if TYPE_CHECKING:
    from matching.engine import Engine
    from node.runtime import ExecutedBlock

log = structlog.get_logger("seqnet.indexer")

Topic = tuple[Any, ...]  # ("book", market) | ("trades", market) | ("account", address) | ...
LIQUIDATION_KEY_BITS: Final = 24  # a liquidation record's id: height << 24 | its place
# A `positions` update caused only by a mark move is sent at most this often per account
# (block time); an update of the account's own state (fill, funding, margin action,
# balance, liquidation) is sent in its block.
POSITIONS_MARK_INTERVAL_MS: Final = 1_000
_PERP_EVENTS: Final = frozenset(
    (PositionChanged, LeverageSet, MarginChanged, FundingPaid, Funding, Prices, Liquidation,
     LiquidationOrder, Backstop, Deleveraged, LiquidationFee, BadDebt)
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IndexLimits:
    max_orders: int = 200_000  # order records cached in memory (least recently updated out)
    max_intents: int = 100_000  # intent id -> order id, for submit answers
    max_depth_levels: int = 1_000  # levels per side in a query answer


@runtime_checkable
class IndexedNode(Protocol):
    """What the indexer needs from the node (node/runtime.py's `Node` has it)."""

    engine: Engine
    exec_height: int

    def add_block_listener(self, listener: Callable[[ExecutedBlock], None]) -> None: ...


@runtime_checkable
class ReplaySource(Protocol):
    """A node that can re-execute its kept committed log (node/runtime's `Node`)."""

    def replay_blocks(self, after: int) -> Iterator[ExecutedBlock]:
        """The executed blocks above `after` up to the executed height, re-run on a
        separate engine; from a later height when the log no longer reaches back."""
        ...


class ChainEvent(Protocol):
    """A confirmed settlement event (node/chain/watcher.py's `ChainSeen`): a deposit
    (`id` its deposit id) or a claim (`id` the withdrawal id, `sequence` its checkpoint)."""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> int: ...
    @property
    def tx_hash(self) -> bytes: ...
    @property
    def block_number(self) -> int: ...
    @property
    def sequence(self) -> int | None: ...


@runtime_checkable
class ChainView(Protocol):
    """What the settlement loop knows that the committed log does not (node/runtime)."""

    def deposit_origin(self, deposit_id: int) -> tuple[bytes, int] | None:
        """(transaction hash, chain block) of a deposit the watcher saw."""
        ...

    def chain_head(self) -> int | None: ...
    def landed_sequence(self) -> int | None: ...
    def add_chain_listener(self, listener: Callable[[ChainEvent], None]) -> None: ...


class Publisher(Protocol):
    """Where stream messages go (node/api/streams.py's `StreamHub`)."""

    def wants(self, topic: Topic) -> bool: ...
    def publish(self, topic: Topic, message: dict[str, Any]) -> None: ...
    def subscribed(self, channel: str) -> list[Topic]:
        """The topics of `channel` someone subscribed to (bounded by the hub's limits)."""
        ...


class _NoPublisher:
    def wants(self, topic: Topic) -> bool:
        return False

    def subscribed(self, channel: str) -> list[Topic]:
        return []

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

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> OrderRecord:
        intent = view["intent_id"]
        return cls(
            view["oid"], _unhex(view["account"]), view["market"], view["side"], view["kind"],
            view["price"], view["size"], view["tif"], view["cloid"], view["height"],
            view["timestamp_ms"], None if intent is None else _unhex(intent), view["status"],
            view["open"], view["filled"], view["reason"], view["updated_height"],
        )  # fmt: skip


@dataclass(slots=True)
class _BookMirror:
    """The aggregated levels (price -> open size) last published, and their sequence."""

    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    seq: int = 0
    height: int = 0


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:])


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
        store: HistoryStore | None = None,
        chain: ChainView | None = None,
    ) -> None:
        self.engine = engine
        self.height = height
        self.timestamp_ms = engine.timestamp_ms
        self.limits = limits or IndexLimits()
        self.publisher: Publisher = publisher or _NoPublisher()
        self.store = store or HistoryStore.open(":memory:", b"")
        self.chain = chain
        self._orders: OrderedDict[int, OrderRecord] = OrderedDict()
        self._by_intent: OrderedDict[bytes, int] = OrderedDict()  # place intent -> oid
        self._withdrawal_by_intent: OrderedDict[bytes, int] = OrderedDict()
        self._books: dict[int, _BookMirror] = {}
        for market, book in engine.books.items():
            self._books[market] = _BookMirror(
                _all_levels(book, True), _all_levels(book, False), 0, height
            )
        self.blocks_indexed = 0
        self.assets = {a.id: a for a in engine.genesis.assets}
        self.lot_sizes = {m.id: m.lot_size for m in engine.genesis.markets}
        self.symbols = {m.id: m.symbol for m in engine.genesis.markets}
        self._positions_sent_ms: dict[bytes, int] = {}  # last `positions` update per account

    @classmethod
    def attach(
        cls,
        node: IndexedNode,
        limits: IndexLimits | None = None,
        publisher: Publisher | None = None,
        store: HistoryStore | None = None,
    ) -> Indexer:
        chain = node if isinstance(node, ChainView) else None
        indexer = cls(node.engine, node.exec_height, limits, publisher, store, chain)
        indexer.catch_up(node)
        node.add_block_listener(indexer.on_block)
        if chain is not None:
            chain.add_chain_listener(indexer.on_chain_event)
        return indexer

    def catch_up(self, node: IndexedNode) -> int:
        """Bring the history up to the node's executed height: replay the committed log
        above the history's height through `on_block` (a missing file is rebuilt from
        the log's start). Returns the blocks replayed."""
        store = self.store
        target = node.exec_height
        if store.height > target:
            # A history ahead of the node: the node's data was replaced. Start over.
            log.warning("index ahead of the node: rebuilt", index=store.height, node=target)
            store.reset()
        replayed = 0
        if store.height < target and isinstance(node, ReplaySource):
            for block in node.replay_blocks(store.height):
                self._index(block, live=False, first=replayed == 0)
                replayed += 1
        if store.height < target:  # a source that cannot replay: history starts here
            store.write_block(BlockRows(target, self.timestamp_ms, first_height=target + 1))
        store.flush()
        self.height = target
        self.timestamp_ms = node.engine.timestamp_ms
        if replayed:
            log.info("index caught up", replayed=replayed, height=target)
        return replayed

    # ------------------------------------------------------------------ queries

    def order(self, oid: int) -> dict[str, Any] | None:
        record = self._orders.get(oid)
        return record.view() if record is not None else self.store.order(oid)

    def oid_of_intent(self, intent_id: bytes) -> int | None:
        """The order a committed `place` intent created (while its record is kept)."""
        return self._by_intent.get(intent_id)

    def withdrawal_of_intent(self, intent_id: bytes) -> int | None:
        """The withdrawal a committed `withdraw` intent created (recent ones; the
        history has them all: `GET /v1/accounts/{address}/withdrawals`)."""
        return self._withdrawal_by_intent.get(intent_id)

    def order_by_cloid(self, account: bytes, cloid: int) -> dict[str, Any] | None:
        found = self.engine.accounts.get(account)
        order = None if found is None else found.cloids.get(cloid)
        if order is not None:
            return self.order(order.oid) or _open_order_view(order)
        return self.store.order_by_cloid(account, cloid)

    def open_orders(self, account: bytes) -> list[dict[str, Any]]:
        views = []
        for order in self.engine.open_orders(account):
            view = self.order(order.oid)
            views.append(_open_order_view(order) if view is None else view)
        return views

    def order_history(self, account: bytes, limit: int, **page: Any) -> Page:
        """Orders of any status, most recent first (`page`: cursor, start_ms, end_ms)."""
        return self.store.page("orders", account, limit, **page)

    def fills(self, account: bytes, limit: int, **page: Any) -> Page:
        return self.store.page("fills", account, limit, **page)

    def trades(self, market: int, limit: int, **page: Any) -> Page:
        return self.store.page("trades", market, limit, **page)

    def deposits(self, account: bytes, limit: int, **page: Any) -> Page:
        found = self.store.page("deposits", account, limit, **page)
        return Page([self._deposit_view(d) for d in found.items], found.next_cursor)

    def withdrawals(self, account: bytes, limit: int, **page: Any) -> Page:
        found = self.store.page("withdrawals", account, limit, **page)
        return Page([self._withdrawal_view(w) for w in found.items], found.next_cursor)

    def withdrawal(self, withdrawal_id: int) -> dict[str, Any] | None:
        found = self.store.withdrawal(withdrawal_id)
        return None if found is None else self._withdrawal_view(found)

    def funding(self, account: bytes, limit: int, **page: Any) -> Page:
        """An account's funding payments (> 0 received, < 0 paid), most recent first."""
        return self.store.page("funding", account, limit, **page)

    def funding_rates(self, market: int, limit: int, **page: Any) -> Page:
        return self.store.page("funding_rates", market, limit, **page)

    def liquidations(self, account: bytes, limit: int, **page: Any) -> Page:
        return self.store.page("liquidations", account, limit, **page)

    def market_liquidations(self, market: int, limit: int, **page: Any) -> Page:
        return self.store.page("market_liquidations", market, limit, **page)

    def prices(self, market: int) -> dict[str, Any]:
        """A perp market's prices and oracle (node/api/perps.py), at the indexed height."""
        found = self.perp_market(market)
        return {"height": self.height, **perps_view.prices_view(self.engine, found,
                self.symbols[market])}  # fmt: skip

    def margin(self, account: bytes) -> dict[str, Any]:
        return {"account": _hex(account), "height": self.height,
                **perps_view.margin(self.engine, account, self.symbols)}  # fmt: skip

    def positions(self, account: bytes) -> dict[str, Any]:
        found = perps_view.positions(self.engine, account, self.symbols)
        return {"account": _hex(account), "height": self.height, "positions": found}

    def perp_market(self, market: int) -> PerpMarket:
        """The perp market, or LookupError with a client-facing message."""
        found = perps_view.perp_market(self.engine, market)
        if found is None:
            what = "a spot market" if market in self.engine.books else "no market"
            raise LookupError(f"market {market} is {what}, not a perpetual market")
        return found

    def checkpoint_records(self, limit: int) -> list[dict[str, Any]]:
        return self.store.checkpoints(limit)

    def _deposit_view(self, record: dict[str, Any]) -> dict[str, Any]:
        head = None if self.chain is None else self.chain.chain_head()
        block = record["chain_block"]
        confirmations = None if head is None or block is None or head < 0 else head - block + 1
        return {**record, "confirmations": confirmations}

    def _withdrawal_view(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with its status: pending -> checkpointed (in checkpoint
        `sequence`) -> landed (that checkpoint accepted on chain) -> claimed."""
        landed = None if self.chain is None else self.chain.landed_sequence()
        sequence = record["sequence"]
        if record.get("claim") is not None:
            status = "claimed"
        elif sequence is None:
            status = "pending"
        elif landed is not None and sequence <= landed:
            status = "landed"
        else:
            status = "checkpointed"
        return {**record, "claim": record.get("claim"), "status": status}

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
        if block.height != self.height + 1:
            log.warning("index gap", indexed=self.height, block=block.height)
        self._index(block, live=True)

    def on_chain_event(self, event: ChainEvent) -> None:
        """A claim or deposit seen on chain (idempotent: a rescan reports it again). A
        deposit fills in the transaction of a record indexed without it (rebuilt from
        the log, which does not carry it)."""
        if event.kind == "claim":
            claim = {
                "sequence": event.sequence,
                "tx_hash": _hex(event.tx_hash),
                "chain_block": event.block_number,
            }
            self.store.set_claim(event.id, claim)
        elif event.kind == "deposit":
            self.store.set_deposit_origin(event.id, _hex(event.tx_hash), event.block_number)

    def _learn_markets(self) -> None:
        """Markets listed since we looked (an option series listed by the committee,
        docs/MATCHING.md "Series by admin action"): their lot, symbol and book mirror."""
        for market in self.engine.genesis.markets[len(self.lot_sizes) :]:
            self.lot_sizes[market.id] = market.lot_size
            self.symbols[market.id] = market.symbol
            self._books.setdefault(market.id, _BookMirror(height=self.height))

    def _index(self, block: ExecutedBlock, live: bool, first: bool = False) -> None:
        if len(self.lot_sizes) != len(self.engine.books):
            self._learn_markets()
        self.height = block.height
        self.timestamp_ms = block.timestamp_ms
        self.blocks_indexed += 1
        work = _BlockWork()
        self._fold(block.result.expired, None, None, work)
        for entry, events in zip(block.entries, block.result.events, strict=True):
            self._fold(events, entry.engine_entry, entry.intent_id, work)
        # The end step (perp markets): prices, funding, liquidations and their fills.
        self._fold(block.result.end, None, None, work)
        rows = self._rows(block, work)
        if first and block.height > self.store.height + 1:
            rows.first_height = block.height  # the log no longer reaches further back
        self.store.write_block(rows)
        if live:
            self._publish_book_deltas(work)
            self._publish_account_updates(work)
            self._publish_perp_updates(work)

    def _rows(self, block: ExecutedBlock, work: _BlockWork) -> BlockRows:
        rows = BlockRows(block.height, block.timestamp_ms)
        trades = [t for ts in work.trades.values() for t in ts]
        rows.trades = rows_or_none(trade_row(t) for t in trades)
        rows.candle_trades = [
            (t["market"], t["timestamp_ms"], t["price"], t["size"],
             t["price"] * t["size"] // self.lot_sizes[t["market"]])
            for t in trades
        ]  # fmt: skip
        rows.fills = rows_or_none(fill_row(a, f) for a, f in work.fills)
        rows.orders = rows_or_none(order_row(r.view(), r.account) for r in work.orders.values())
        rows.deposits = rows_or_none(money_row(d["deposit_id"], a, d) for a, d in work.deposits)
        rows.withdrawals = rows_or_none(
            (w["withdrawal_id"], a, w["timestamp_ms"], i, packed(w)) for a, w, i in work.withdrawals
        )
        height = block.height
        rows.funding = rows_or_none(
            (a, height << 32 | f["market"], f["timestamp_ms"], packed(f)) for a, f in work.funding
        )
        rows.funding_rates = rows_or_none(
            (f["market"], height, f["timestamp_ms"], packed(f)) for f in work.funding_rates
        )
        rows.liquidations = rows_or_none(
            (r["id"], a, m, r["timestamp_ms"], packed(r)) for a, m, r in work.liquidations
        )
        if block.checkpoint is not None:
            # A withdrawal of this very block is in its checkpoint but not in the store yet.
            fresh = {w["withdrawal_id"]: w for _, w, _ in work.withdrawals}
            self._seal(block, block.checkpoint, rows, fresh)
        return rows

    def _seal(
        self,
        block: ExecutedBlock,
        cp: Checkpoint,
        rows: BlockRows,
        fresh: dict[int, dict[str, Any]],
    ) -> None:
        """The checkpoint's record, and each of its withdrawals' proof: what a claim
        needs, kept as long as the withdrawal (the engine keeps 256 checkpoints' trees)."""
        record = {
            "sequence": cp.sequence,
            "height": block.height,
            "timestamp_ms": block.timestamp_ms,
            "state_root": _hex(cp.state_root),
            "withdrawals_root": _hex(cp.withdrawals_root),
            "last_deposit_id": cp.last_deposit_id,
            "withdrawals": len(cp.withdrawals),
        }
        rows.checkpoints = [(cp.sequence, block.timestamp_ms, packed(record))]
        tree = MerkleTree(w.leaf() for w in cp.withdrawals)
        sealed = []
        for index, w in enumerate(cp.withdrawals):
            same_block = fresh.get(w.withdrawal_id)
            found = dict(same_block) if same_block else self.store.withdrawal(w.withdrawal_id)
            if found is None:  # withdrawn before the history began
                continue
            found.pop("claim", None)
            found.update(
                sequence=cp.sequence,
                checkpoint_height=block.height,
                leaf=_hex(tree.leaf(index)),
                proof=[_hex(p) for p in tree.proof(index)],
            )
            sealed.append((cp.sequence, packed(found), w.withdrawal_id))
        rows.sealed = sealed or None

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
                record_or_none = self._record(c.oid)
                if record_or_none is None:
                    work.resync.add(c.market)
                    continue
                record_or_none.status = "cancelled" if kind is Cancelled else "expired"
                record_or_none.reason = c.reason if isinstance(c, Cancelled) else None
                record_or_none.open = 0
                record_or_none.updated_height = height
                work.touch(c.market, record_or_none.side == "buy", record_or_none.price)
                work.order_update(record_or_none)
            elif isinstance(ev, Modified):
                m: Modified = ev
                record_or_none = self._record(m.oid)
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
            elif isinstance(ev, Deposited):
                self._on_deposit(ev, work)
            elif isinstance(ev, Withdrawn):
                self._on_withdrawal(ev, intent_id, work)
            elif kind in _PERP_EVENTS:
                self._on_perp_event(ev, work)

    def _on_perp_event(self, ev: Event, work: _BlockWork) -> None:
        """Funding, prices and liquidation records (docs/MATCHING.md "Perpetual futures";
        the liquidation's fills come as `Fill`s with oid 0, `_on_fill`)."""
        stamp = {"height": self.height, "timestamp_ms": self.timestamp_ms}
        if isinstance(ev, PositionChanged | LeverageSet | MarginChanged):
            work.perp_accounts[ev.account] = None
        elif isinstance(ev, FundingPaid):
            record = {"account": _hex(ev.account), "market": ev.market, "amount": ev.amount}
            work.funding.append((ev.account, {**record, **stamp}))
            work.perp_accounts[ev.account] = None
        elif isinstance(ev, Funding):
            record = {
                "market": ev.market,
                "rate_ppb": ev.rate_ppb,
                "mark": ev.mark,
                "residue": ev.residue,
                **stamp,
            }
            work.funding_rates.append(record)
            work.prices[ev.market] = None
        elif isinstance(ev, Prices):
            work.prices[ev.market] = None
        elif isinstance(ev, Liquidation):
            unit = "cross" if ev.market < 0 else "isolated"
            market = None if ev.market < 0 else ev.market
            work.liquidation(
                ev.account,
                market,
                {
                    "kind": "liquidation",
                    "unit": unit,
                    "equity": ev.equity,
                    "maintenance": ev.maintenance,
                },
                stamp,
            )
        elif isinstance(ev, LiquidationOrder):
            record = {
                "kind": "liquidation_order",
                "size": ev.size,
                "bankruptcy_price": ev.bankruptcy_price,
            }
            work.liquidation(ev.account, ev.market, record, stamp)
        elif isinstance(ev, Backstop):
            insurance = self.engine.genesis.insurance_account or bytes(20)
            record = {
                "kind": "backstop",
                "size": ev.size,
                "price": ev.price,
                "counterparty": _hex(insurance),
            }
            work.liquidation(ev.account, ev.market, record, stamp)
        elif isinstance(ev, Deleveraged):
            record = {
                "kind": "deleveraged",
                "size": ev.size,
                "price": ev.price,
                "liquidated": _hex(ev.account),
                "counterparty": _hex(ev.counterparty),
            }
            work.liquidation(ev.account, ev.market, {**record, "role": "liquidated"}, stamp)
            # The counterparty's row has no market: a market's list shows the event once.
            work.liquidation(
                ev.counterparty,
                None,
                {**record, "role": "counterparty", "market": ev.market},
                stamp,
            )
        elif isinstance(ev, LiquidationFee):
            work.liquidation(
                ev.account, None, {"kind": "liquidation_fee", "amount": ev.amount}, stamp
            )
        elif isinstance(ev, BadDebt):
            record = {"kind": "bad_debt", "deficit": ev.deficit, "covered": ev.covered}
            work.liquidation(ev.account, None, record, stamp)

    def _on_deposit(self, d: Deposited, work: _BlockWork) -> None:
        origin = None if self.chain is None else self.chain.deposit_origin(d.deposit_id)
        asset = self.assets.get(d.asset)
        record = {
            "deposit_id": d.deposit_id,
            "account": _hex(d.account),
            "asset": d.asset,
            "amount": d.amount,
            "token": None if asset is None else _hex(asset.token),
            "token_amount": None if asset is None else str(d.amount * asset.unit),
            "height": self.height,
            "timestamp_ms": self.timestamp_ms,
            "tx_hash": None if origin is None else _hex(origin[0]),
            "chain_block": None if origin is None else origin[1],
        }
        work.deposits.append((d.account, record))
        message = {"type": "deposit", "id": d.deposit_id, "asset": d.asset, "amount": d.amount}
        work.account_message(d.account, {**message, "height": self.height})

    def _on_withdrawal(self, w: Withdrawn, intent_id: bytes | None, work: _BlockWork) -> None:
        asset = self.assets[w.asset]
        record = {
            "withdrawal_id": w.withdrawal_id,
            "account": _hex(w.account),
            "asset": w.asset,
            "amount": w.amount,
            "token": _hex(asset.token),
            "token_amount": str(w.amount * asset.unit),  # what the claim pays, base units
            "height": self.height,
            "timestamp_ms": self.timestamp_ms,
            "intent_id": None if intent_id is None else _hex(intent_id),
            "sequence": None,
            "checkpoint_height": None,
            "leaf": None,
            "proof": None,
        }
        work.withdrawals.append((w.account, record, intent_id))
        if intent_id is not None:
            _remember_bounded(self._withdrawal_by_intent, intent_id, w.withdrawal_id, self.limits)
        message = {"type": "withdrawal", "id": w.withdrawal_id, "asset": w.asset}
        work.account_message(w.account, {**message, "amount": w.amount, "height": self.height})

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
        work.fills.append((f.account, fill))
        work.account_message(f.account, {"type": "fill", **fill})
        if f.oid == LIQUIDATION_OID and not f.maker:  # a liquidation's order on the book
            liquidation = {"kind": "fill", "trade_id": f.trade_id, "side": f.side,
                           "price": f.price, "size": f.size, "fee": f.fee}  # fmt: skip
            stamp = {"height": self.height, "timestamp_ms": self.timestamp_ms}
            work.liquidation(f.account, f.market, liquidation, stamp)
        record = self._record(f.oid)
        if record is not None:
            record.filled += f.size
            record.open = f.remaining
            if not f.remaining:
                record.status = "filled"
            record.updated_height = self.height
            work.order_update(record)
            # The order's own level: a batch auction's fills are at the clearing price
            # and none is a maker's, yet both sides rested in the book.
            work.touch(f.market, f.side == "buy", record.price)
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
        work.trades.setdefault(t.market, []).append(trade)

    def _record(self, oid: int) -> OrderRecord | None:
        """The cached record, else the one in the history (cached again)."""
        record = self._orders.get(oid)
        if record is not None:
            self._orders.move_to_end(oid)
            return record
        view = self.store.order(oid)
        if view is None:
            return None
        record = OrderRecord.from_view(view)
        self._cache(record)
        return record

    def _remember(self, record: OrderRecord) -> None:
        self._cache(record)
        if record.intent_id is not None:
            _remember_bounded(self._by_intent, record.intent_id, record.oid, self.limits)

    def _cache(self, record: OrderRecord) -> None:
        orders = self._orders
        orders[record.oid] = record
        while len(orders) > self.limits.max_orders:
            orders.popitem(last=False)

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

    def _publish_perp_updates(self, work: _BlockWork) -> None:
        """Per perp market a `prices` message when its prices or funding moved and a
        `liquidations` message with the block's records; per subscribed account a
        `positions` message (its margin summary) when its perp state, its balance or
        the mark of a market it holds moved. One message per block and topic."""
        perps = self.engine.perps
        if perps is None:
            return
        publisher = self.publisher
        stamp = {"height": self.height, "timestamp_ms": self.timestamp_ms}
        for market in work.prices:
            if publisher.wants(("prices", market)):
                found = perps.markets[market]
                funding = [f for f in work.funding_rates if f["market"] == market]
                publisher.publish(("prices", market), {
                    "channel": "prices", "type": "update", "market": market, **stamp,
                    "index_price": found.index if found.fresh else None,
                    "mark": found.mark or None, "premium_ppb": found.premium_ema,
                    "fresh": found.fresh, "next_funding_ms": found.next_funding_ms or None,
                    "funding": funding[0] if funding else None,
                })  # fmt: skip
        by_market: dict[int, list[dict[str, Any]]] = {}
        for _, market_or_none, record in work.liquidations:
            if market_or_none is not None:
                by_market.setdefault(market_or_none, []).append(record)
        for market, records in by_market.items():
            if publisher.wants(("liquidations", market)):
                message = {"channel": "liquidations", "market": market, **stamp}
                publisher.publish(("liquidations", market), {**message, "events": records})
        moved = work.prices
        now = self.timestamp_ms
        sent = self._positions_sent_ms
        followed = publisher.subscribed("positions")
        if len(sent) > 2 * len(followed):  # forget accounts nobody follows any more
            self._positions_sent_ms = sent = {t[1]: sent[t[1]] for t in followed if t[1] in sent}
        for topic in followed:
            address = topic[1]
            if address not in work.perp_accounts and address not in work.messages:
                # Only the mark moved: at most one update per POSITIONS_MARK_INTERVAL_MS.
                if now - sent.get(address, -POSITIONS_MARK_INTERVAL_MS) < (
                    POSITIONS_MARK_INTERVAL_MS
                ):
                    continue
                account = self.engine.accounts.get(address)
                held = None if account is None or account.perp is None else account.perp
                if held is None or not any(
                    p.size and m in moved for m, p in held.positions.items()
                ):
                    continue
            sent[address] = now
            publisher.publish(topic, {**self.positions_message(address), "type": "update"})

    def positions_message(self, address: bytes) -> dict[str, Any]:
        """What the `positions` channel sends: the account's margin summary (a snapshot
        when it is subscribed to)."""
        return {"channel": "positions", "type": "snapshot", "timestamp_ms": self.timestamp_ms,
                **self.margin(address)}  # fmt: skip

    def prices_message(self, market: int) -> dict[str, Any]:
        """The snapshot a `prices` subscription starts with."""
        return {"channel": "prices", "type": "snapshot", **self.prices(market)}


class _BlockWork:
    """What one block changed: book levels to re-read, order records and account
    messages to publish."""

    __slots__ = (
        "deposits",
        "fills",
        "funding",
        "funding_rates",
        "liquidations",
        "messages",
        "orders",
        "perp_accounts",
        "prices",
        "resync",
        "touched",
        "trades",
        "withdrawals",
    )

    def __init__(self) -> None:
        self.trades: dict[int, list[dict[str, Any]]] = {}
        self.fills: list[tuple[bytes, dict[str, Any]]] = []
        self.deposits: list[tuple[bytes, dict[str, Any]]] = []
        self.withdrawals: list[tuple[bytes, dict[str, Any], bytes | None]] = []
        self.touched: dict[int, set[tuple[bool, int]]] = {}
        self.resync: set[int] = set()
        self.orders: dict[int, OrderRecord] = {}
        self.messages: dict[bytes, list[dict[str, Any]]] = {}
        self.funding: list[tuple[bytes, dict[str, Any]]] = []
        self.funding_rates: list[dict[str, Any]] = []
        # (account, market or None, record): market None keeps it out of market lists
        self.liquidations: list[tuple[bytes, int | None, dict[str, Any]]] = []
        self.prices: dict[int, None] = {}  # perp markets whose prices or funding moved
        self.perp_accounts: dict[bytes, None] = {}  # accounts whose perp state moved

    def liquidation(
        self, account: bytes, market: int | None, record: dict[str, Any], stamp: dict[str, Any]
    ) -> None:
        """One liquidation record; its id orders the block's records (height, position)."""
        n = len(self.liquidations)
        assert n < 1 << LIQUIDATION_KEY_BITS
        key = stamp["height"] << LIQUIDATION_KEY_BITS | n
        full = {"id": key, "account": _hex(account), "market": market, **record, **stamp}
        self.liquidations.append((account, market, full))
        self.perp_accounts[account] = None

    def touch(self, market: int, is_buy: bool, price: int) -> None:
        self.touched.setdefault(market, set()).add((is_buy, price))

    def order_update(self, record: OrderRecord) -> None:
        self.orders[record.oid] = record  # published once per block, in its final state

    def account_message(self, account: bytes, message: dict[str, Any]) -> None:
        self.messages.setdefault(account, []).append(message)


def _remember_bounded(
    table: OrderedDict[bytes, int], intent_id: bytes, value: int, limits: IndexLimits
) -> None:
    table[intent_id] = value
    while len(table) > limits.max_intents:
        table.popitem(last=False)


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
