"""The indexer's persistent history: one SQLite file beside the node's consensus storage.

What a client reads about the past — trades, fills, order records, deposits, withdrawals
(with their checkpoint, Merkle proof and claim), checkpoints, candles — lives here, so a
restarted node answers with the history it had. The file is derived data: it is never
read by consensus, and a missing, foreign or stale file is rebuilt (or topped up) from
the committed log by replaying it through the same indexing code (node/api/indexer.py,
`Indexer.catch_up`). Losing the last few blocks' rows in a crash costs nothing: the
file's `height` is written in the same transaction as the rows, so the replay at the
next start fills them in.

Every list is a *series* (`SERIES`): rows of one scope (a market or an account), keyed
by a per-series id that grows with the block timestamp, read most recent first with a
cursor `"<timestamp_ms>.<id>"` and a time range [start_ms, end_ms). Perpetual futures add
funding payments (per account), funding rates (per market) and liquidation records (per
account and per market, one table read by either column).

Integers only. Engine values (prices, sizes, amounts) are u64 and may exceed SQLite's
signed 64-bit integers, so a row's values travel as one msgpack record; the indexed key
columns (ids, heights, timestamps) stay far below 2^63.

Bounded: rows older than the retention (`Retention`) are deleted in bounded batches
every `prune_every_blocks` blocks; every query has a limit. It may not touch: the
engine, consensus, the node's storage, sockets.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack

SCHEMA_VERSION: Final = 2  # 2: perpetual futures (funding, liquidations)
DAY_MS: Final = 86_400_000
MAX_PAGE: Final = 1_000  # the largest `limit` of any history query
# Standard candle intervals (name -> milliseconds).
INTERVALS: Final = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
STATS_WINDOW_MS: Final = DAY_MS
_I63: Final = (1 << 63) - 1
_CURSOR: Final = re.compile(r"^(\d{1,19})\.(\d{1,19})$")


_SQLITE_MAX = (1 << 63) - 1


class HistoryError(ValueError):
    """A client's bad history query (cursor, range): a 400 at the API."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Retention:
    """How long rows are kept, by the timestamp of the latest indexed block (config
    `[index]`, docs/OPERATIONS.md "Indexer")."""

    days: int = 30  # trades, fills, closed orders
    money_days: int = 365  # deposits, withdrawals, checkpoints
    candle_days: int = 365
    prune_every_blocks: int = 100
    prune_batch_rows: int = 10_000  # rows deleted per table per pruning pass (bounded pause)

    def __post_init__(self) -> None:
        assert min(self.days, self.money_days, self.candle_days) >= 1
        assert self.prune_every_blocks >= 1 and self.prune_batch_rows >= 1


@dataclass(frozen=True, slots=True)
class Series:
    """A paginated list: its table, scope column (market or account) and key column."""

    table: str
    scope: str
    key: str
    retention: str  # which Retention field bounds it


SERIES: Final = {
    "trades": Series("trades", "market", "trade_id", "days"),
    "fills": Series("fills", "account", "fill_key", "days"),
    "orders": Series("orders", "account", "oid", "days"),
    "deposits": Series("deposits", "account", "deposit_id", "money_days"),
    "withdrawals": Series("withdrawals", "account", "withdrawal_id", "money_days"),
    # Perpetual futures: an account's funding payments, a market's funding rates, and
    # liquidation records (one table, read by account or by market; an ADL counterparty's
    # row has no market, so a market's list shows each event once).
    "funding": Series("funding", "account", "funding_key", "days"),
    "funding_rates": Series("funding_rates", "market", "height", "days"),
    "liquidations": Series("liquidations", "account", "liq_key", "days"),
    "market_liquidations": Series("liquidations", "market", "liq_key", "days"),
}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS trades (
    trade_id INTEGER PRIMARY KEY, market INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL,
    record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS trades_page ON trades (market, timestamp_ms, trade_id);
CREATE INDEX IF NOT EXISTS trades_time ON trades (timestamp_ms);
CREATE TABLE IF NOT EXISTS fills (
    account BLOB NOT NULL, fill_key INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL,
    record BLOB NOT NULL, PRIMARY KEY (account, fill_key));
CREATE INDEX IF NOT EXISTS fills_page ON fills (account, timestamp_ms, fill_key);
CREATE INDEX IF NOT EXISTS fills_time ON fills (timestamp_ms);
CREATE TABLE IF NOT EXISTS orders (
    oid INTEGER PRIMARY KEY, account BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,
    cloid BLOB, closed INTEGER NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS orders_page ON orders (account, timestamp_ms, oid);
CREATE INDEX IF NOT EXISTS orders_cloid ON orders (account, cloid, oid);
CREATE INDEX IF NOT EXISTS orders_time ON orders (closed, timestamp_ms);
CREATE TABLE IF NOT EXISTS deposits (
    deposit_id INTEGER PRIMARY KEY, account BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,
    record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS deposits_page ON deposits (account, timestamp_ms, deposit_id);
CREATE INDEX IF NOT EXISTS deposits_time ON deposits (timestamp_ms);
CREATE TABLE IF NOT EXISTS withdrawals (
    withdrawal_id INTEGER PRIMARY KEY, account BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,
    sequence INTEGER, intent_id BLOB, record BLOB NOT NULL, claim BLOB);
CREATE INDEX IF NOT EXISTS withdrawals_page
    ON withdrawals (account, timestamp_ms, withdrawal_id);
CREATE INDEX IF NOT EXISTS withdrawals_intent ON withdrawals (intent_id);
CREATE INDEX IF NOT EXISTS withdrawals_time ON withdrawals (timestamp_ms);
CREATE TABLE IF NOT EXISTS checkpoints (
    sequence INTEGER PRIMARY KEY, timestamp_ms INTEGER NOT NULL, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS funding (
    account BLOB NOT NULL, funding_key INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL,
    record BLOB NOT NULL, PRIMARY KEY (account, funding_key));
CREATE INDEX IF NOT EXISTS funding_page ON funding (account, timestamp_ms, funding_key);
CREATE INDEX IF NOT EXISTS funding_time ON funding (timestamp_ms);
CREATE TABLE IF NOT EXISTS funding_rates (
    market INTEGER NOT NULL, height INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL,
    record BLOB NOT NULL, PRIMARY KEY (market, height));
CREATE INDEX IF NOT EXISTS funding_rates_page ON funding_rates (market, timestamp_ms, height);
CREATE INDEX IF NOT EXISTS funding_rates_time ON funding_rates (timestamp_ms);
CREATE TABLE IF NOT EXISTS liquidations (
    liq_key INTEGER PRIMARY KEY, account BLOB NOT NULL, market INTEGER,
    timestamp_ms INTEGER NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS liquidations_page ON liquidations (account, timestamp_ms, liq_key);
CREATE INDEX IF NOT EXISTS liquidations_market ON liquidations (market, timestamp_ms, liq_key);
CREATE INDEX IF NOT EXISTS liquidations_time ON liquidations (timestamp_ms);
CREATE TABLE IF NOT EXISTS candles (
    market INTEGER NOT NULL, interval_ms INTEGER NOT NULL, open_ms INTEGER NOT NULL,
    record BLOB NOT NULL, PRIMARY KEY (market, interval_ms, open_ms)) WITHOUT ROWID;
"""


def _pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _u64_key(value: int | None) -> bytes | None:
    """A u64 as a sortable, exact SQLite value (client order ids may exceed 2^63)."""
    return None if value is None else value.to_bytes(8, "big")


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    """`"<timestamp_ms>.<id>"` as given in an answer's `next_cursor`; HistoryError if it
    is not one."""
    if cursor is None:
        return None
    found = _CURSOR.match(cursor)
    if found is None or int(found[1]) > _I63 or int(found[2]) > _I63:
        raise HistoryError("bad_cursor", f"cursor {cursor[:40]!r} is not a cursor", "cursor")
    return int(found[1]), int(found[2])


def check_range(start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    """[start_ms, end_ms) with defaults (all time); HistoryError if inverted."""
    start = 0 if start_ms is None else start_ms
    end = _I63 if end_ms is None else end_ms
    if start > end:
        raise HistoryError("bad_range", f"start_ms {start} is after end_ms {end}", "start_ms")
    return start, end


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None  # None: no more items in the range


class HistoryStore:
    """Open with `HistoryStore.open(path, genesis_hash)` (":memory:" for a node without a
    data directory). All calls on one thread (the event loop)."""

    def __init__(self, db: sqlite3.Connection, retention: Retention | None = None) -> None:
        self._db = db
        self.retention = retention or Retention()
        self._dirty = False
        self._last_commit = time.monotonic()
        self.commit_interval_s = 0.2

    @classmethod
    def open(
        cls, path: Path | str, genesis_hash: bytes, retention: Retention | None = None
    ) -> HistoryStore:
        """Open (or create) the file; a file of another genesis or schema is emptied (it
        is rebuilt from the committed log)."""
        db = sqlite3.connect(str(path), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")  # derived data: a lost tail is replayed
        store = cls(db, retention)
        store._prepare(genesis_hash)
        return store

    def _prepare(self, genesis_hash: bytes) -> None:
        db = self._db
        db.executescript(_SCHEMA)
        version = self._meta("schema")
        owner = self._meta("genesis")
        if (version is not None and version != SCHEMA_VERSION) or (
            owner is not None and owner != genesis_hash
        ):
            self.reset()
        db.execute("BEGIN")
        self._set_meta("schema", SCHEMA_VERSION)
        self._set_meta("genesis", genesis_hash)
        db.execute("COMMIT")

    def reset(self) -> None:
        """Empty every table (a foreign or unreadable file): the caller rebuilds."""
        db = self._db
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        db.execute("BEGIN")
        for table in tables:
            db.execute(f"DELETE FROM {table}")
        db.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        self._db.close()

    # ------------------------------------------------------------------ meta

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else _unpack(row[0])

    def _set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _pack(value)))

    @property
    def height(self) -> int:
        """The last block whose rows are in the file (0: none)."""
        value = self._meta("height")
        return 0 if value is None else int(value)

    @property
    def first_height(self) -> int:
        """The first block the history covers (later than 1 when it was rebuilt from a
        pruned log or after a snapshot sync: older history is not known)."""
        value = self._meta("first_height")
        return 1 if value is None else int(value)

    # ------------------------------------------------------------------ writing

    def _begin(self) -> None:
        if not self._dirty:
            self._db.execute("BEGIN")
            self._dirty = True

    def write_block(self, rows: BlockRows) -> None:
        """One block's rows and the new height, in the open transaction; committed at
        most every `commit_interval_s` (and by `flush`)."""
        self._begin()
        db = self._db
        if rows.first_height is not None:
            self._set_meta("first_height", rows.first_height)
        if rows.trades:
            db.executemany("INSERT OR REPLACE INTO trades VALUES (?, ?, ?, ?)", rows.trades)
        if rows.fills:
            db.executemany("INSERT OR REPLACE INTO fills VALUES (?, ?, ?, ?)", rows.fills)
        if rows.orders:
            db.executemany("INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?)", rows.orders)
        if rows.deposits:
            db.executemany("INSERT OR REPLACE INTO deposits VALUES (?, ?, ?, ?)", rows.deposits)
        if rows.withdrawals:
            db.executemany(  # first write wins: a replayed block keeps sequence and claim
                "INSERT OR IGNORE INTO withdrawals VALUES (?, ?, ?, NULL, ?, ?, NULL)",
                rows.withdrawals,
            )
        if rows.sealed:
            db.executemany(
                "UPDATE withdrawals SET sequence = ?, record = ? WHERE withdrawal_id = ?",
                rows.sealed,
            )
        if rows.checkpoints:
            db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)", rows.checkpoints)
        if rows.funding:
            db.executemany("INSERT OR REPLACE INTO funding VALUES (?, ?, ?, ?)", rows.funding)
        if rows.funding_rates:
            db.executemany(
                "INSERT OR REPLACE INTO funding_rates VALUES (?, ?, ?, ?)", rows.funding_rates
            )
        if rows.liquidations:
            db.executemany(
                "INSERT OR REPLACE INTO liquidations VALUES (?, ?, ?, ?, ?)", rows.liquidations
            )
        if rows.trades:
            self._fold_candles(rows.candle_trades or [])
        self._set_meta("height", rows.height)
        if rows.height % self.retention.prune_every_blocks == 0:
            self._prune(rows.timestamp_ms)
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.flush()

    def flush(self) -> None:
        if self._dirty:
            self._db.execute("COMMIT")
            self._dirty = False
        self._last_commit = time.monotonic()

    def set_claim(self, withdrawal_id: int, claim: dict[str, Any]) -> bool:
        """The claim of a withdrawal seen on chain; False if the withdrawal is unknown."""
        self._begin()
        cursor = self._db.execute(
            "UPDATE withdrawals SET claim = ? WHERE withdrawal_id = ?",
            (_pack(claim), withdrawal_id),
        )
        self.flush()
        return cursor.rowcount > 0

    def set_deposit_origin(self, deposit_id: int, tx_hash: str, chain_block: int) -> None:
        """The chain transaction of a deposit record that lacks it."""
        row = self._db.execute(
            "SELECT record FROM deposits WHERE deposit_id = ?", (deposit_id,)
        ).fetchone()
        if row is None:
            return
        record = _unpack(row[0])
        if record.get("tx_hash") == tx_hash and record.get("chain_block") == chain_block:
            return
        record.update(tx_hash=tx_hash, chain_block=chain_block)
        self._begin()
        self._db.execute(
            "UPDATE deposits SET record = ? WHERE deposit_id = ?", (_pack(record), deposit_id)
        )
        self.flush()

    def _fold_candles(self, trades: Sequence[tuple[int, int, int, int, int]]) -> None:
        """Fold (market, timestamp_ms, price, size, quote) trades into every interval's
        candle: one read and one write per touched candle per block."""
        touched: dict[tuple[int, int, int], list[int]] = {}
        for market, ts, price, size, quote in trades:
            for interval_ms in INTERVALS.values():
                key = (market, interval_ms, ts - ts % interval_ms)
                candle = touched.get(key)
                if candle is None:
                    row = self._db.execute(
                        "SELECT record FROM candles WHERE market = ? AND interval_ms = ? "
                        "AND open_ms = ?",
                        key,
                    ).fetchone()
                    candle = touched[key] = (
                        [price, price, price, price, 0, 0, 0] if row is None else _unpack(row[0])
                    )
                # open, high, low, close, volume (base units), quote volume, trades
                candle[1] = max(candle[1], price)
                candle[2] = min(candle[2], price)
                candle[3] = price
                candle[4] += size
                candle[5] += quote
                candle[6] += 1
        self._db.executemany(
            "INSERT OR REPLACE INTO candles VALUES (?, ?, ?, ?)",
            [(*key, _pack(candle)) for key, candle in touched.items()],
        )

    def _prune(self, now_ms: int) -> None:
        r = self.retention
        batch = r.prune_batch_rows
        for table, days, extra in (
            ("trades", r.days, ""),
            ("fills", r.days, ""),
            ("orders", r.days, "closed = 1 AND "),
            ("deposits", r.money_days, ""),
            ("withdrawals", r.money_days, ""),
            ("checkpoints", r.money_days, ""),
            ("funding", r.days, ""),
            ("funding_rates", r.days, ""),
            ("liquidations", r.days, ""),
        ):
            self._db.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                f"WHERE {extra}timestamp_ms < ? LIMIT ?)",
                (now_ms - days * DAY_MS, batch),
            )
        self._db.execute(
            "DELETE FROM candles WHERE (market, interval_ms, open_ms) IN (SELECT market, "
            "interval_ms, open_ms FROM candles WHERE open_ms < ? LIMIT ?)",
            (now_ms - r.candle_days * DAY_MS, batch),
        )

    # ------------------------------------------------------------------ reading

    def page(
        self,
        series: str,
        scope: int | bytes,
        limit: int,
        cursor: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Page:
        """Most recent first; `limit` ≤ MAX_PAGE. Items come back exactly once across
        the pages of one range (ids and timestamps grow together)."""
        s = SERIES[series]
        assert 1 <= limit <= MAX_PAGE
        start, end = check_range(start_ms, end_ms)
        after = parse_cursor(cursor) or (_I63, _I63)
        extra = ", claim" if series == "withdrawals" else ""
        rows = self._db.execute(
            f"SELECT timestamp_ms, {s.key}, record{extra} FROM {s.table} "
            f"WHERE {s.scope} = ? AND timestamp_ms >= ? AND timestamp_ms < ? "
            f"AND (timestamp_ms, {s.key}) < (?, ?) "
            f"ORDER BY timestamp_ms DESC, {s.key} DESC LIMIT ?",
            (scope, start, end, *after, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [_with_claim(_unpack(r[2]), r[3] if extra else None) for r in rows]
        next_cursor = f"{rows[-1][0]}.{rows[-1][1]}" if more else None
        return Page(items, next_cursor)

    def order(self, oid: int) -> dict[str, Any] | None:
        if oid > _SQLITE_MAX:  # a u64 the engine never reaches; SQLite's is i64
            return None
        row = self._db.execute("SELECT record FROM orders WHERE oid = ?", (oid,)).fetchone()
        return None if row is None else _as_dict(_unpack(row[0]))

    def order_by_cloid(self, account: bytes, cloid: int) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT record FROM orders WHERE account = ? AND cloid = ? ORDER BY oid DESC LIMIT 1",
            (account, _u64_key(cloid)),
        ).fetchone()
        return None if row is None else _as_dict(_unpack(row[0]))

    def withdrawal(self, withdrawal_id: int) -> dict[str, Any] | None:
        if withdrawal_id > _SQLITE_MAX:  # a u64 the engine never reaches; SQLite's is i64
            return None
        row = self._db.execute(
            "SELECT record, claim FROM withdrawals WHERE withdrawal_id = ?", (withdrawal_id,)
        ).fetchone()
        return None if row is None else _with_claim(_unpack(row[0]), row[1])

    def checkpoints(self, limit: int) -> list[dict[str, Any]]:
        """Most recent first."""
        rows = self._db.execute(
            "SELECT record FROM checkpoints ORDER BY sequence DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_unpack(r[0]) for r in rows]

    def candles(
        self, market: int, interval_ms: int, start_ms: int, end_ms: int, limit: int
    ) -> list[list[int]]:
        """The latest `limit` candles opening in [start_ms, end_ms), oldest first:
        [open_ms, open, high, low, close, volume, quote_volume, trades]."""
        rows = self._db.execute(
            "SELECT open_ms, record FROM candles WHERE market = ? AND interval_ms = ? "
            "AND open_ms >= ? AND open_ms < ? ORDER BY open_ms DESC LIMIT ?",
            (market, interval_ms, start_ms, end_ms, limit),
        ).fetchall()
        return [[r[0], *_unpack(r[1])] for r in reversed(rows)]

    def stats(self, market: int, now_ms: int) -> dict[str, Any]:
        """The last 24 h ending at `now_ms`, from one-minute candles (so the window starts
        at a minute boundary): open, high, low, last, volume, quote volume, trades."""
        minute = INTERVALS["1m"]
        start = now_ms - STATS_WINDOW_MS + minute - now_ms % minute
        found = self.candles(market, minute, start, now_ms + 1, STATS_WINDOW_MS // minute)
        if not found:
            return {"open": None, "high": None, "low": None, "last": None, "volume": 0,
                    "quote_volume": 0, "trades": 0, "start_ms": start}  # fmt: skip
        return {
            "open": found[0][1],
            "high": max(c[2] for c in found),
            "low": min(c[3] for c in found),
            "last": found[-1][4],
            "volume": sum(c[5] for c in found),
            "quote_volume": sum(c[6] for c in found),
            "trades": sum(c[7] for c in found),
            "start_ms": start,
        }


def _as_dict(value: Any) -> dict[str, Any]:
    assert isinstance(value, dict)
    return value


def _with_claim(record: dict[str, Any], claim: bytes | None) -> dict[str, Any]:
    if claim is not None:
        record = {**record, "claim": _unpack(claim)}
    return record


@dataclass(slots=True)
class BlockRows:
    """What one block adds to the history, as table rows (built by the indexer)."""

    height: int
    timestamp_ms: int
    first_height: int | None = None
    trades: list[tuple[int, int, int, bytes]] | None = None
    candle_trades: list[tuple[int, int, int, int, int]] | None = None
    fills: list[tuple[bytes, int, int, bytes]] | None = None
    orders: list[tuple[int, bytes, int, bytes | None, int, bytes]] | None = None
    deposits: list[tuple[int, bytes, int, bytes]] | None = None
    withdrawals: list[tuple[int, bytes, int, bytes | None, bytes]] | None = None
    sealed: list[tuple[int, bytes, int]] | None = None
    checkpoints: list[tuple[int, int, bytes]] | None = None
    funding: list[tuple[bytes, int, int, bytes]] | None = None
    funding_rates: list[tuple[int, int, int, bytes]] | None = None
    liquidations: list[tuple[int, bytes, int | None, int, bytes]] | None = None


def trade_row(trade: dict[str, Any]) -> tuple[int, int, int, bytes]:
    return (trade["trade_id"], trade["market"], trade["timestamp_ms"], _pack(trade))


def fill_row(account: bytes, fill: dict[str, Any]) -> tuple[bytes, int, int, bytes]:
    # Both sides of a trade may be one account's (two of its orders): the side tells them.
    key = fill["trade_id"] * 2 + (fill["side"] == "sell")
    return (account, key, fill["timestamp_ms"], _pack(fill))


def order_row(
    view: dict[str, Any], account: bytes
) -> tuple[int, bytes, int, bytes | None, int, bytes]:
    return (
        view["oid"],
        account,
        view["timestamp_ms"],
        _u64_key(view["cloid"]),
        int(view["status"] != "open"),
        _pack(view),
    )


def money_row(key: int, account: bytes, record: dict[str, Any]) -> tuple[int, bytes, int, bytes]:
    return (key, account, record["timestamp_ms"], _pack(record))


def packed(value: Any) -> bytes:
    return _pack(value)


def rows_or_none(items: Iterable[Any]) -> list[Any] | None:
    out = list(items)
    return out or None
