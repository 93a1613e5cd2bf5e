"""Crash-safe node storage: safety record, blocks, committed log, matching snapshots.

Two implementations of one interface: `MemoryStorage` (the simulator and unit tests) and
`SqliteStorage` (a node on disk). Two durability levels, because only one record needs
the strong one:

- the safety record ("persisted before any vote leaves the node") lives in a file of its
  own, `SafetyFile`: two fixed slots written in turn with `pwrite` + `fdatasync` into a
  preallocated file, so a save is one small in-place write and one data sync (~0.15 ms
  here) and survives a power cut;
- everything else (blocks, the committed log, meta, snapshots) is SQLite in WAL mode with
  `synchronous=NORMAL`: a committed transaction survives a crash of the process (it is in
  the OS), a power cut may lose the last few, which the node re-fetches from its peers.
  WAL checkpoints (the only fsyncs SQLite then does) run off the event loop, from
  `checkpoint_wal()` in a worker thread.

Every stored value carries a checksum: the first 8 bytes of its SHA-256 (keccak-256 in
data written before 2026-12-05, still accepted when read, so an older data directory
opens as it is; the safety file keeps keccak). SHA-256 because this CPU hashes it in
hardware: ~7x faster than keccak on a 100 KB record, and a catching-up member writes, and
its peers read, every record of the log once (docs/BENCHMARKS.md, "Log catch-up"). A
checksum guards against damage, not against an adversary. SQLite's own page checks do not
catch a value that was overwritten with well-formed garbage, and a node must refuse to start (and
so refuse to sign) from a record it cannot trust: `open_storage` raises `CorruptStorage`
with the reason, never returns half-read state.

Values are opaque bytes: the consensus core and the matching engine own their encodings.

What is kept, and for how long (the runtime decides when; a `WriteBatch` carries it):

- consensus blocks only until they commit: `prune_blocks_below_round` drops those below
  the committed root, so a committed block is stored once, as its committed record;
- the committed log from some height to the top, contiguous: `prune_log_below` drops the
  records below a height, but never the record at the latest snapshot's height nor any
  above it (snapshot sync serves that record with the snapshot, and start-up replays the
  records above it); `first_committed_height()` says where the log starts now;
- the two latest snapshots.

Start-up needs the safety record, meta, the consensus blocks, the latest snapshot and the
committed records from its height to the top, and `check()` verifies exactly those, so its
cost follows the snapshot interval and size, not the history kept or the age of the node.
SQLite's `PRAGMA quick_check` is not run at start-up: it reads every page (measured: 0.2 s
for a 500 MB file in the page cache, 4-6 s when it is not, 13 s for 1.25 GB;
docs/OPERATIONS.md, "Disk"), and the file is as large as the retention chosen. Reading
the rows start-up needs walks their B-tree pages, and SQLite refuses a malformed page it
meets (`sqlite3.DatabaseError`, turned into `CorruptStorage`); the checksums catch
well-formed garbage. A value read later (an older record served to a peer, or read for
the leader-reputation window) is checked when it is read and raises `CorruptStorage`
then. `check(full=True)` still runs the whole-file check and reads every value.

Pages freed by pruning are reused by the next writes, so the file grows to the retention
window and then stays at that size; it does not shrink. `auto_vacuum` is deliberately off:
it would add pointer-map writes to every insert and delete (each record spans several
overflow pages) to reclaim space that is reused anyway. A node whose retention was cut
for good can be compacted offline with `VACUUM`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from matching.merkle import keccak

SCHEMA_VERSION = 1
_CHECKSUM_BYTES = 8


class CorruptStorage(Exception):
    """The data directory cannot be trusted; the node must not start from it."""


class Storage(Protocol):
    """What the node runtime persists. A write has survived a crash of the process when
    the call returns; the safety record has also survived a power cut."""

    def load_meta(self, key: str) -> bytes | None: ...
    def save_meta(self, key: str, value: bytes) -> None: ...

    def load_safety(self) -> bytes | None: ...
    def save_safety(self, record: bytes) -> None: ...

    def save_blocks(self, blocks: list[tuple[bytes, int, bytes]]) -> None:
        """Store (block_id, round, encoded block) triples; existing ids are kept."""

    def load_blocks(self, min_round: int = 0) -> list[bytes]: ...
    def prune_blocks(self, below_round: int) -> int: ...

    def append_committed(self, records: list[tuple[int, bytes]]) -> None:
        """Append (height, encoded committed block); heights must follow the last one."""

    def committed_height(self) -> int: ...

    def first_committed_height(self) -> int:
        """The lowest height still in the committed log (0 when the log is empty)."""

    def load_committed(
        self, from_height: int, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, bytes]]:
        """Up to `limit` records from `from_height` (or from the first kept height, if
        that is higher), in height order; a negative limit means no limit. With
        `max_bytes`, the records stop before the one that would take their total over
        it (the first is always given): the rest are not read, nor checked."""

    def iter_committed(self, from_height: int = 1) -> Iterator[tuple[int, bytes]]: ...

    def save_snapshot(self, height: int, snapshot: bytes, keep: int = 2) -> None: ...
    def latest_snapshot(self) -> tuple[int, bytes] | None: ...

    def load_shares(self, height: int) -> bytes | None:
        """The decryption-share record kept beside committed `height` (encrypted
        intents, docs/PROTOCOL.md §10.8), if that block had envelopes to open."""

    def write(self, batch: WriteBatch) -> None:
        """Everything in `batch` in one transaction, its pruning last: one fsync on the
        critical path."""

    def install_snapshot(self, height: int, snapshot: bytes, record: bytes) -> None:
        """Replace the committed log by a snapshot taken at `height` plus the committed
        record of that height (the log continues at height + 1): snapshot sync."""

    def close(self) -> None: ...


@dataclass
class WriteBatch:
    """One transaction. Pruning is applied last, after the batch's own writes."""

    safety: bytes | None = None
    blocks: list[tuple[bytes, int, bytes]] = field(default_factory=list)
    committed: list[tuple[int, bytes]] = field(default_factory=list)
    meta: dict[str, bytes] = field(default_factory=dict)
    snapshot: tuple[int, bytes] | None = None
    # Drop the consensus blocks of rounds below this one.
    prune_blocks_below_round: int | None = None
    # Drop the committed records below this height, clamped to the latest snapshot's
    # height (after this batch's snapshot) and to the top: nothing without a snapshot.
    prune_log_below: int | None = None
    # Decryption-share records (height, record) of committed blocks with envelopes;
    # pruned with the committed records of their heights.
    shares: list[tuple[int, bytes]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.shares
            or self.safety is not None
            or self.blocks
            or self.committed
            or self.meta
            or self.snapshot
            or self.prune_blocks_below_round is not None
            or self.prune_log_below is not None
        )


_sha256 = hashlib.sha256


def _seal(value: bytes) -> bytes:
    return _sha256(value).digest()[:_CHECKSUM_BYTES] + value


def _within(rows: list[tuple[int, bytes]], max_bytes: int) -> list[tuple[int, bytes]]:
    """The leading `rows` whose values total at most `max_bytes` (at least one)."""
    size = 0
    for i, (_, value) in enumerate(rows):
        if i and size + len(value) > max_bytes:
            return rows[:i]
        size += len(value)
    return rows


def _log_prune_bound(below: int, snapshot_height: int | None, top: int) -> int:
    """The records below the returned height may go: those below `below`, never the one
    at the latest snapshot's height nor any above it (with no snapshot, none), and never
    the top one (`committed_height()` must not go back)."""
    if snapshot_height is None:
        return 0
    return min(below, snapshot_height, top)


def _open(sealed: bytes, what: str) -> bytes:
    checksum, value = sealed[:_CHECKSUM_BYTES], sealed[_CHECKSUM_BYTES:]
    if len(sealed) < _CHECKSUM_BYTES or (
        _sha256(value).digest()[:_CHECKSUM_BYTES] != checksum
        and keccak(value)[:_CHECKSUM_BYTES] != checksum  # written before SHA-256 seals
    ):
        raise CorruptStorage(f"checksum mismatch in {what}")
    return value


class MemoryStorage:
    """In-memory storage with the same semantics (no durability)."""

    def __init__(self) -> None:
        self._meta: dict[str, bytes] = {}
        self._safety: bytes | None = None
        self._blocks: dict[bytes, tuple[int, bytes]] = {}
        self._committed: list[tuple[int, bytes]] = []
        self._snapshots: list[tuple[int, bytes]] = []
        self._shares: dict[int, bytes] = {}

    def load_shares(self, height: int) -> bytes | None:
        return self._shares.get(height)

    def load_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    def save_meta(self, key: str, value: bytes) -> None:
        self._meta[key] = value

    def load_safety(self) -> bytes | None:
        return self._safety

    def save_safety(self, record: bytes) -> None:
        self._safety = record

    def save_blocks(self, blocks: list[tuple[bytes, int, bytes]]) -> None:
        for block_id, round_, data in blocks:
            self._blocks.setdefault(block_id, (round_, data))

    def load_blocks(self, min_round: int = 0) -> list[bytes]:
        rows = sorted((r, d) for r, d in self._blocks.values() if r >= min_round)
        return [d for _, d in rows]

    def prune_blocks(self, below_round: int) -> int:
        doomed = [k for k, (r, _) in self._blocks.items() if r < below_round]
        for k in doomed:
            del self._blocks[k]
        return len(doomed)

    def append_committed(self, records: list[tuple[int, bytes]]) -> None:
        for height, data in records:
            _check_next_height(self.committed_height(), height)
            self._committed.append((height, data))

    def committed_height(self) -> int:
        return self._committed[-1][0] if self._committed else 0

    def first_committed_height(self) -> int:
        return self._committed[0][0] if self._committed else 0

    def load_committed(
        self, from_height: int, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, bytes]]:
        # The log is contiguous from its first height: a slice, not a scan. A start below
        # the first height is clamped to it, one above the top gives an empty slice. A
        # negative limit means none, as SQLite's LIMIT does.
        log = self._committed
        if not log:
            return []
        start = max(0, from_height - log[0][0])
        rows = log[start:] if limit < 0 else log[start : start + limit]
        return rows if max_bytes is None else _within(rows, max_bytes)

    def iter_committed(self, from_height: int = 1) -> Iterator[tuple[int, bytes]]:
        return iter(self.load_committed(from_height, len(self._committed)))

    def checkpoint_wal(self) -> None:
        pass  # nothing to copy

    def save_snapshot(self, height: int, snapshot: bytes, keep: int = 2) -> None:
        # As SQLite does: one per height (the new one replaces), the `keep` highest kept.
        others = [s for s in self._snapshots if s[0] != height]
        self._snapshots = sorted([*others, (height, snapshot)])[-keep:]

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        return self._snapshots[-1] if self._snapshots else None

    def write(self, batch: WriteBatch) -> None:
        if batch.committed:
            last = self.committed_height()
            for height, _ in batch.committed:
                _check_next_height(last, height)
                last = height
        if batch.blocks:
            self.save_blocks(batch.blocks)
        self.append_committed(batch.committed)
        self._shares.update(batch.shares)
        for key, value in batch.meta.items():
            self.save_meta(key, value)
        if batch.snapshot is not None:
            self.save_snapshot(*batch.snapshot)
        if batch.prune_blocks_below_round is not None:
            self.prune_blocks(batch.prune_blocks_below_round)
        if batch.prune_log_below is not None:
            latest = self.latest_snapshot()
            bound = _log_prune_bound(
                batch.prune_log_below,
                None if latest is None else latest[0],
                self.committed_height(),
            )
            del self._committed[: max(0, bound - self.first_committed_height())]
            for h in [h for h in self._shares if h < bound]:
                del self._shares[h]
        if batch.safety is not None:
            self.save_safety(batch.safety)

    def install_snapshot(self, height: int, snapshot: bytes, record: bytes) -> None:
        self._shares = {}
        self._committed = [(height, record)]
        self._snapshots = [(height, snapshot)]

    def close(self) -> None:
        pass


def _check_next_height(last: int, height: int) -> None:
    if height != last + 1:
        raise ValueError(f"committed log must be contiguous: have {last}, got {height}")


class SafetyFile:
    """The safety record on disk: `safety.bin`, two slots of `SLOT_BYTES`, preallocated.

    Slot layout: magic `SQSR`, u64 sequence, u32 length, 8-byte keccak checksum of
    (sequence ‖ record), then the record. A save writes the slot the previous one did not
    use, then `fdatasync`s; the file never changes size, so no metadata sync is needed.
    Loading takes the valid slot with the higher sequence. A slot that is neither empty
    nor valid is refused (`CorruptStorage`): the node cannot tell a torn write of a record
    it never sent from a damaged record it did send, and must not sign from either.
    """

    SLOT_BYTES = 256 * 1024  # a TC of a 1000-member committee fits
    _HEADER = struct.Struct(">4sQI8s")
    _MAGIC = b"SQSR"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(self._fd).st_size < 2 * self.SLOT_BYTES:  # new (or cut short)
                os.ftruncate(self._fd, 2 * self.SLOT_BYTES)
                os.fsync(self._fd)
                fsync_dir(path.parent)
            slots = [self._read_slot(i) for i in (0, 1)]
        except BaseException:
            os.close(self._fd)
            raise
        valid = [slot for slot in slots if slot is not None]
        newest = max(valid) if valid else None
        self._seq = 0 if newest is None else newest[0]
        self._record: bytes | None = None if newest is None else newest[1]

    def _read_slot(self, index: int) -> tuple[int, bytes] | None:
        raw = os.pread(self._fd, self.SLOT_BYTES, index * self.SLOT_BYTES)
        if not raw.strip(b"\0"):
            return None  # never written
        magic, seq, length, checksum = self._HEADER.unpack_from(raw)
        body = raw[self._HEADER.size : self._HEADER.size + length]
        if magic != self._MAGIC or len(body) != length or _slot_checksum(seq, body) != checksum:
            raise CorruptStorage(f"{self.path}: safety record slot {index} is damaged")
        return seq, body

    def load(self) -> bytes | None:
        return self._record

    def save(self, record: bytes) -> None:
        limit = self.SLOT_BYTES - self._HEADER.size
        if len(record) > limit:
            raise ValueError(f"safety record of {len(record)} bytes exceeds {limit}")
        seq = self._seq + 1
        header = self._HEADER.pack(self._MAGIC, seq, len(record), _slot_checksum(seq, record))
        os.pwrite(self._fd, header + record, (seq % 2) * self.SLOT_BYTES)
        os.fdatasync(self._fd)
        self._seq, self._record = seq, record

    def close(self) -> None:
        os.close(self._fd)


def _slot_checksum(seq: int, record: bytes) -> bytes:
    return keccak(seq.to_bytes(8, "big") + record)[:_CHECKSUM_BYTES]


def fsync_dir(path: Path) -> None:
    """Make a file created (or renamed) in `path` durable: sync the directory entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS safety (id INTEGER PRIMARY KEY CHECK (id = 0), record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (id BLOB PRIMARY KEY, round INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_round ON blocks (round);
CREATE TABLE IF NOT EXISTS committed (height INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (height INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS shares (height INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""


class SqliteStorage:
    """SQLite (WAL, synchronous=NORMAL) storage beside a `SafetyFile`. Not thread-safe:
    one owner at a time (`checkpoint_wal` opens its own connection)."""

    # Backstop only: the node checkpoints from a worker thread long before this.
    _WAL_AUTOCHECKPOINT_PAGES = 50_000
    # The WAL file is reused, not shrunk, after a checkpoint: a burst (a snapshot
    # install, a long catch-up) would leave it at its peak. Past this size SQLite
    # truncates it back when it starts over.
    _WAL_KEEP_BYTES = 64 * 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint={self._WAL_AUTOCHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={self._WAL_KEEP_BYTES}")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise CorruptStorage(f"{path}: {exc}") from exc
        try:
            self._safety = SafetyFile(path.with_name("safety.bin"))
        except BaseException:
            self._db.close()
            raise

    def checkpoint_wal(self) -> None:
        """Copy the WAL into the database (PASSIVE: never waits for the writer). Safe
        to call from another thread; this is where SQLite's fsyncs happen."""
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def _write(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        with self._transaction():
            self._db.executemany(sql, rows)

    def _transaction(self) -> _Tx:
        return _Tx(self._db)

    def load_meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else _open(row[0], f"meta[{key}]")

    def save_meta(self, key: str, value: bytes) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(key, _seal(value))])

    def load_safety(self) -> bytes | None:
        record = self._safety.load()
        if record is not None:
            return record
        # A data directory from before the safety file: its record is still in SQLite.
        row = self._db.execute("SELECT record FROM safety WHERE id = 0").fetchone()
        return None if row is None else _open(row[0], "safety record")

    def save_safety(self, record: bytes) -> None:
        self._safety.save(record)

    def save_blocks(self, blocks: list[tuple[bytes, int, bytes]]) -> None:
        rows: list[tuple[object, ...]] = [(i, r, _seal(d)) for i, r, d in blocks]
        self._write("INSERT OR IGNORE INTO blocks VALUES (?, ?, ?)", rows)

    def load_blocks(self, min_round: int = 0) -> list[bytes]:
        cur = self._db.execute(
            "SELECT round, data FROM blocks WHERE round >= ? ORDER BY round", (min_round,)
        )
        return [_open(d, f"block of round {r}") for r, d in cur]

    def prune_blocks(self, below_round: int) -> int:
        with self._transaction():
            cur = self._db.execute("DELETE FROM blocks WHERE round < ?", (below_round,))
        return cur.rowcount

    def append_committed(self, records: list[tuple[int, bytes]]) -> None:
        last = self.committed_height()
        for height, _ in records:
            _check_next_height(last, height)
            last = height
        rows: list[tuple[object, ...]] = [(h, _seal(d)) for h, d in records]
        self._write("INSERT INTO committed VALUES (?, ?)", rows)

    def committed_height(self) -> int:
        row = self._db.execute("SELECT MAX(height) FROM committed").fetchone()
        return int(row[0] or 0)

    def first_committed_height(self) -> int:
        row = self._db.execute("SELECT MIN(height) FROM committed").fetchone()
        return int(row[0] or 0)

    def load_committed(
        self, from_height: int, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, bytes]]:
        cur = self._db.execute(
            "SELECT height, data FROM committed WHERE height >= ? ORDER BY height LIMIT ?",
            (from_height, limit),
        )
        if max_bytes is None:
            return [(h, _open(d, f"committed block {h}")) for h, d in cur]
        # A sync reply takes a few records of large blocks out of the `limit` asked for:
        # the others are neither read from the cursor nor checksummed.
        rows: list[tuple[int, bytes]] = []
        size = 0
        for h, d in cur:
            if rows and size + len(d) - _CHECKSUM_BYTES > max_bytes:
                break
            rows.append((h, _open(d, f"committed block {h}")))
            size += len(d) - _CHECKSUM_BYTES
        return rows

    def iter_committed(
        self, from_height: int = 1, batch: int = 1000
    ) -> Iterator[tuple[int, bytes]]:
        while rows := self.load_committed(from_height, batch):
            yield from rows
            from_height = rows[-1][0] + 1

    def save_snapshot(self, height: int, snapshot: bytes, keep: int = 2) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?)", (height, _seal(snapshot))
            )
            self._db.execute(
                "DELETE FROM snapshots WHERE height NOT IN "
                "(SELECT height FROM snapshots ORDER BY height DESC LIMIT ?)",
                (keep,),
            )

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        row = self._db.execute(
            "SELECT height, data FROM snapshots ORDER BY height DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (row[0], _open(row[1], f"snapshot {row[0]}"))

    def _latest_snapshot_height(self) -> int | None:
        row = self._db.execute("SELECT MAX(height) FROM snapshots").fetchone()
        return None if row[0] is None else int(row[0])

    def write(self, batch: WriteBatch) -> None:
        if batch.committed:
            last = self.committed_height()
            for height, _ in batch.committed:
                _check_next_height(last, height)
                last = height
        db = self._db
        # The SQLite part goes through the OS (no fsync); then the safety record, the one
        # thing that must survive a power cut before the vote it guards leaves, is synced.
        with self._transaction():
            if batch.blocks:
                db.executemany(
                    "INSERT OR IGNORE INTO blocks VALUES (?, ?, ?)",
                    [(i, r, _seal(d)) for i, r, d in batch.blocks],
                )
            if batch.committed:
                db.executemany(
                    "INSERT INTO committed VALUES (?, ?)",
                    [(h, _seal(d)) for h, d in batch.committed],
                )
            if batch.shares:
                db.executemany(
                    "INSERT OR REPLACE INTO shares VALUES (?, ?)",
                    [(h, _seal(d)) for h, d in batch.shares],
                )
            for key, value in batch.meta.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _seal(value)))
            if batch.snapshot is not None:
                height, data = batch.snapshot
                db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?)", (height, _seal(data)))
                db.execute(
                    "DELETE FROM snapshots WHERE height NOT IN "
                    "(SELECT height FROM snapshots ORDER BY height DESC LIMIT 2)"
                )
            if batch.prune_blocks_below_round is not None:
                db.execute("DELETE FROM blocks WHERE round < ?", (batch.prune_blocks_below_round,))
            if batch.prune_log_below is not None:
                bound = _log_prune_bound(
                    batch.prune_log_below, self._latest_snapshot_height(), self.committed_height()
                )
                db.execute("DELETE FROM committed WHERE height < ?", (bound,))
                db.execute("DELETE FROM shares WHERE height < ?", (bound,))
        if batch.safety is not None:
            self._safety.save(batch.safety)

    def load_shares(self, height: int) -> bytes | None:
        row = self._db.execute("SELECT data FROM shares WHERE height = ?", (height,)).fetchone()
        return None if row is None else _open(row[0], f"share record {height}")

    def install_snapshot(self, height: int, snapshot: bytes, record: bytes) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM committed")
            self._db.execute("DELETE FROM shares")
            self._db.execute("INSERT INTO committed VALUES (?, ?)", (height, _seal(record)))
            self._db.execute("DELETE FROM snapshots")
            self._db.execute("INSERT INTO snapshots VALUES (?, ?)", (height, _seal(snapshot)))

    def check(self, full: bool = False) -> None:
        """Verify what start-up reads (module docstring): the safety record, meta, the
        consensus blocks, the latest snapshot and the committed records from its height
        to the top, which must be there and contiguous. Bounded by the retention, not by
        the age of the node. `full` adds SQLite's whole-file `quick_check`, the older
        snapshot and the whole committed log."""
        try:
            if full:
                result = self._db.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise CorruptStorage(f"{self.path}: sqlite quick_check: {result}")
                for (height,) in self._db.execute("SELECT height FROM snapshots").fetchall():
                    row = self._db.execute("SELECT data FROM snapshots WHERE height = ?", (height,))
                    _open(row.fetchone()[0], f"snapshot {height}")
            self.load_safety()
            for (key,) in self._db.execute("SELECT key FROM meta").fetchall():
                self.load_meta(key)
            self.load_blocks()
            latest = self.latest_snapshot()
            snapshot_height = None if latest is None else latest[0]
            first, top = self._check_log(1 if full or latest is None else latest[0])
            if snapshot_height is not None and not first <= snapshot_height <= top:
                raise CorruptStorage(
                    f"{self.path}: committed log ({first}..{top}) lacks snapshot height "
                    f"{snapshot_height}"
                )
        except sqlite3.DatabaseError as exc:
            raise CorruptStorage(f"{self.path}: {exc}") from exc

    def _check_log(self, start: int) -> tuple[int, int]:
        """Read every record from `start` (or the first kept one) to the top: sound and
        contiguous. Returns the first and last height read (0, 0 for none)."""
        first = last = 0
        for height, _ in self.iter_committed(start):
            if last and height != last + 1:
                raise CorruptStorage(f"{self.path}: committed log lacks height {last + 1}")
            first, last = first or height, height
        return first, last

    def close(self) -> None:
        self._db.close()
        self._safety.close()


class _Tx:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def open_storage(data_dir: Path, genesis_hash: bytes) -> SqliteStorage:
    """Open (or create) the node's database, verify it and that it belongs to this genesis."""
    data_dir.mkdir(parents=True, exist_ok=True)
    storage = SqliteStorage(data_dir / "node.sqlite")
    try:
        storage.check()
        version = storage.load_meta("schema_version")
        if version is None:
            storage.save_meta("schema_version", SCHEMA_VERSION.to_bytes(4, "big"))
            storage.save_meta("genesis_hash", genesis_hash)
        elif int.from_bytes(version, "big") != SCHEMA_VERSION:
            raise CorruptStorage(
                f"schema version {int.from_bytes(version, 'big')} is not {SCHEMA_VERSION}"
            )
        elif storage.load_meta("genesis_hash") != genesis_hash:
            raise CorruptStorage(f"{data_dir} belongs to another genesis")
    except BaseException:
        storage.close()
        raise
    return storage
