"""One contract suite for every Storage implementation, plus corruption handling on disk."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.merkle import keccak
from node.store.storage import (
    CorruptStorage,
    MemoryStorage,
    SafetyFile,
    SqliteStorage,
    Storage,
    WriteBatch,
    _seal,
    open_storage,
)

GENESIS = b"\x01" * 32


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    store: Storage = (
        MemoryStorage() if request.param == "memory" else open_storage(tmp_path, GENESIS)
    )
    yield store
    store.close()


def test_safety_record_roundtrip(storage: Storage) -> None:
    assert storage.load_safety() is None
    storage.save_safety(b"round=3")
    storage.save_safety(b"round=4")
    assert storage.load_safety() == b"round=4"


def test_blocks_are_kept_once_and_pruned_by_round(storage: Storage) -> None:
    storage.save_blocks([(b"b2", 2, b"two"), (b"b1", 1, b"one"), (b"b3", 3, b"three")])
    storage.save_blocks([(b"b2", 2, b"other")])
    assert storage.load_blocks() == [b"one", b"two", b"three"]
    assert storage.prune_blocks(below_round=3) == 2
    assert storage.load_blocks() == [b"three"]


def test_committed_log_is_contiguous(storage: Storage) -> None:
    storage.append_committed([(1, b"a"), (2, b"b")])
    storage.append_committed([(3, b"c")])
    assert storage.committed_height() == 3
    assert storage.load_committed(2, 10) == [(2, b"b"), (3, b"c")]
    with pytest.raises(ValueError):
        storage.append_committed([(5, b"gap")])
    assert storage.committed_height() == 3


def test_a_byte_bound_stops_the_read_before_the_record_that_would_pass_it(
    storage: Storage,
) -> None:
    """A sync reply's read: records up to `max_bytes` in total, always the first one."""
    storage.append_committed([(h, bytes([h]) * 100) for h in range(1, 11)])
    assert [h for h, _ in storage.load_committed(1, 10, max_bytes=350)] == [1, 2, 3]
    assert [h for h, _ in storage.load_committed(4, 10, max_bytes=300)] == [4, 5, 6]
    assert [h for h, _ in storage.load_committed(9, 10, max_bytes=10_000)] == [9, 10]
    assert storage.load_committed(2, 10, max_bytes=1) == [(2, b"\x02" * 100)]
    assert [h for h, _ in storage.load_committed(1, 2, max_bytes=10_000)] == [1, 2]


def test_snapshots_keep_the_latest(storage: Storage) -> None:
    assert storage.latest_snapshot() is None
    for h in (10, 20, 30):
        storage.save_snapshot(h, f"s{h}".encode(), keep=2)
    assert storage.latest_snapshot() == (30, b"s30")


def test_data_survives_reopen(tmp_path: Path) -> None:
    store = open_storage(tmp_path, GENESIS)
    store.save_safety(b"voted")
    store.append_committed([(1, b"x")])
    store.close()
    store = open_storage(tmp_path, GENESIS)
    assert store.load_safety() == b"voted"
    assert store.committed_height() == 1
    store.close()


def test_other_genesis_is_refused(tmp_path: Path) -> None:
    open_storage(tmp_path, GENESIS).close()
    with pytest.raises(CorruptStorage, match="another genesis"):
        open_storage(tmp_path, b"\x02" * 32)


def test_tampered_safety_record_is_refused(tmp_path: Path) -> None:
    store = open_storage(tmp_path, GENESIS)
    store.save_safety(b"last_voted_round=7")
    store.close()
    path = tmp_path / "safety.bin"
    data = bytearray(path.read_bytes())
    at = data.index(b"last_voted_round=7") + len(b"last_voted_round=")
    data[at] ^= 1  # 7 -> 6: well-formed, but not what was written
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStorage, match="safety record"):
        open_storage(tmp_path, GENESIS)


def test_safety_file_keeps_the_newest_of_its_two_slots(tmp_path: Path) -> None:
    path = tmp_path / "safety.bin"
    safety = SafetyFile(path)
    assert safety.load() is None
    for round_ in range(1, 6):
        safety.save(f"round={round_}".encode())
    safety.close()
    assert path.stat().st_size == 2 * SafetyFile.SLOT_BYTES  # preallocated, never grows
    reopened = SafetyFile(path)
    assert reopened.load() == b"round=5"
    reopened.save(b"round=6")  # continues the sequence in the other slot
    reopened.close()
    assert SafetyFile(path).load() == b"round=6"


def test_torn_safety_slot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "safety.bin"
    safety = SafetyFile(path)
    safety.save(b"round=1")
    safety.save(b"round=2")
    safety.close()
    with path.open("r+b") as f:  # the newer slot half overwritten, as a torn write leaves it
        f.seek(8)
        f.write(b"\xff" * 8)
    with pytest.raises(CorruptStorage, match="slot 0 is damaged"):
        SafetyFile(path)


def test_oversized_safety_record_is_refused_before_writing(tmp_path: Path) -> None:
    safety = SafetyFile(tmp_path / "safety.bin")
    safety.save(b"ok")
    with pytest.raises(ValueError, match="exceeds"):
        safety.save(bytes(SafetyFile.SLOT_BYTES))
    assert safety.load() == b"ok"
    safety.close()


def test_safety_record_of_an_older_data_directory_is_read(tmp_path: Path) -> None:
    open_storage(tmp_path, GENESIS).close()
    (tmp_path / "safety.bin").unlink()
    db = sqlite3.connect(tmp_path / "node.sqlite")
    db.execute("INSERT INTO safety VALUES (0, ?)", (_seal(b"voted-before-upgrade"),))
    db.commit()
    db.close()
    store = open_storage(tmp_path, GENESIS)
    assert store.load_safety() == b"voted-before-upgrade"
    store.save_safety(b"voted-after")
    store.close()
    assert open_storage(tmp_path, GENESIS).load_safety() == b"voted-after"


def test_wal_checkpoint_from_another_thread(tmp_path: Path) -> None:
    import threading

    store = open_storage(tmp_path, GENESIS)
    assert isinstance(store, SqliteStorage)
    store.append_committed([(h, bytes(3000)) for h in range(1, 50)])
    worker = threading.Thread(target=store.checkpoint_wal)
    worker.start()
    worker.join()
    store.append_committed([(50, b"after")])
    assert store.committed_height() == 50
    store.close()


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "node.sqlite").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(CorruptStorage):
        open_storage(tmp_path, GENESIS)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    store = open_storage(tmp_path, GENESIS)
    store.append_committed([(h, bytes(3000)) for h in range(1, 200)])
    store.close()
    path = tmp_path / "node.sqlite"
    assert isinstance(store, SqliteStorage)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptStorage):
        open_storage(tmp_path, GENESIS)


def test_install_snapshot_restarts_the_log_above_it(storage: Storage) -> None:
    storage.append_committed([(1, b"a"), (2, b"b")])
    storage.install_snapshot(100, b"state@100", b"block@100")
    assert storage.committed_height() == 100
    assert storage.latest_snapshot() == (100, b"state@100")
    assert storage.load_committed(1, 10) == [(100, b"block@100")]
    storage.append_committed([(101, b"c")])
    with pytest.raises(ValueError):
        storage.append_committed([(103, b"gap")])


# ---------------------------------------------------------------- retention (pruning)


def _commit(
    storage: Storage,
    heights: range,
    snapshot: tuple[int, bytes] | None = None,
    prune_log_below: int | None = None,
    blocks: list[tuple[bytes, int, bytes]] | None = None,
) -> None:
    records = [(h, b"r%d" % h) for h in heights]
    batch = WriteBatch(blocks=blocks or [], committed=records, snapshot=snapshot)
    batch.prune_log_below = prune_log_below
    storage.write(batch)


def test_a_batch_prunes_consensus_blocks_below_a_round(storage: Storage) -> None:
    storage.save_blocks([(b"b1", 1, b"one"), (b"b2", 2, b"two")])
    storage.write(
        WriteBatch(blocks=[(b"b3", 3, b"three"), (b"b4", 4, b"four")], prune_blocks_below_round=3)
    )
    assert storage.load_blocks() == [b"three", b"four"]
    storage.write(WriteBatch(prune_blocks_below_round=3))  # nothing left below: a no-op
    assert storage.load_blocks() == [b"three", b"four"]


def test_a_prune_only_batch_is_not_empty() -> None:
    assert not WriteBatch()
    assert WriteBatch(prune_blocks_below_round=0)
    assert WriteBatch(prune_log_below=0)


def test_log_pruning_without_a_snapshot_keeps_everything(storage: Storage) -> None:
    _commit(storage, range(1, 11), prune_log_below=8)
    assert storage.first_committed_height() == 1
    assert storage.committed_height() == 10


def test_log_pruning_stops_at_the_latest_snapshot(storage: Storage) -> None:
    _commit(storage, range(1, 21), snapshot=(10, b"s10"))
    _commit(storage, range(21, 31), snapshot=(20, b"s20"), prune_log_below=25)
    # Asked for 25, clamped to the snapshot just written: its record stays.
    assert storage.first_committed_height() == 20
    assert storage.load_committed(1, 1) == [(20, b"r20")]
    _commit(storage, range(31, 33), prune_log_below=15)  # below what is kept: no-op
    assert storage.first_committed_height() == 20
    assert storage.committed_height() == 32


def test_log_pruning_never_removes_the_top(storage: Storage) -> None:
    storage.save_snapshot(50, b"ahead of the log")  # cannot happen in a node; still safe
    _commit(storage, range(1, 6), prune_log_below=100)
    assert (storage.first_committed_height(), storage.committed_height()) == (5, 5)


def test_pruned_log_reads_from_its_first_height(storage: Storage) -> None:
    assert storage.first_committed_height() == 0
    assert storage.load_committed(1, 10) == []
    _commit(storage, range(1, 31), snapshot=(20, b"s20"), prune_log_below=18)
    assert storage.first_committed_height() == 18
    assert storage.load_committed(1, 3) == [(18, b"r18"), (19, b"r19"), (20, b"r20")]
    assert storage.load_committed(17, 2) == [(18, b"r18"), (19, b"r19")]
    assert storage.load_committed(29, 10) == [(29, b"r29"), (30, b"r30")]
    assert storage.load_committed(31, 10) == []
    assert storage.load_committed(40, 10) == []
    assert storage.load_committed(25, 0) == []
    assert [h for h, _ in storage.load_committed(1, -1)] == list(range(18, 31))
    assert [h for h, _ in storage.iter_committed(1)] == list(range(18, 31))
    assert [h for h, _ in storage.iter_committed(28)] == [28, 29, 30]
    _commit(storage, range(31, 32))  # the log goes on where it was
    with pytest.raises(ValueError):
        _commit(storage, range(33, 34))
    assert storage.committed_height() == 31


def test_install_snapshot_after_pruning(storage: Storage) -> None:
    _commit(storage, range(1, 11), snapshot=(10, b"s10"), prune_log_below=10)
    storage.install_snapshot(500, b"s500", b"r500")
    assert storage.first_committed_height() == storage.committed_height() == 500
    _commit(storage, range(501, 503), prune_log_below=502)  # clamped to the snapshot, 500
    assert [h for h, _ in storage.load_committed(0, -1)] == [500, 501, 502]


def _pruned_store(tmp_path: Path) -> None:
    """A closed store: log 31..60 (pruned), snapshots at 40 and 50, blocks of 59..61."""
    store = open_storage(tmp_path, GENESIS)
    _commit(store, range(1, 41), snapshot=(40, b"state@40"))
    _commit(
        store,
        range(41, 61),
        snapshot=(50, b"state@50"),
        blocks=[(b"b%d" % r, r, b"block%d" % r) for r in (59, 60, 61)],
        prune_log_below=31,
    )
    store.close()


def _tamper(tmp_path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(tmp_path / "node.sqlite")
    db.execute(sql, args)
    db.commit()
    db.close()


def test_pruned_store_reopens(tmp_path: Path) -> None:
    _pruned_store(tmp_path)
    store = open_storage(tmp_path, GENESIS)
    assert (store.first_committed_height(), store.committed_height()) == (31, 60)
    assert store.latest_snapshot() == (50, b"state@50")
    store.check(full=True)
    store.close()


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE committed SET data = ? WHERE height = 60", "committed block 60"),
        ("UPDATE committed SET data = ? WHERE height = 50", "committed block 50"),
        ("UPDATE snapshots SET data = ? WHERE height = 50", "snapshot 50"),
        ("UPDATE blocks SET data = ? WHERE round = 61", "block of round 61"),
        ("UPDATE meta SET value = ? WHERE key = 'genesis_hash'", "genesis_hash"),
    ],
)
def test_start_refuses_a_damaged_value_it_reads(tmp_path: Path, sql: str, reason: str) -> None:
    _pruned_store(tmp_path)
    _tamper(tmp_path, sql, _seal(b"well-formed")[:-1] + b"?")  # checksum no longer matches
    with pytest.raises(CorruptStorage, match=reason):
        open_storage(tmp_path, GENESIS)


def test_start_refuses_a_log_without_the_snapshot_record(tmp_path: Path) -> None:
    _pruned_store(tmp_path)
    _tamper(tmp_path, "DELETE FROM committed WHERE height = 50")
    with pytest.raises(CorruptStorage, match=r"\(51\.\.60\) lacks snapshot height 50"):
        open_storage(tmp_path, GENESIS)
    _tamper(tmp_path, "DELETE FROM committed WHERE height >= 50")
    with pytest.raises(CorruptStorage, match=r"\(0\.\.0\) lacks snapshot height 50"):
        open_storage(tmp_path, GENESIS)


def test_start_refuses_a_gap_above_the_snapshot(tmp_path: Path) -> None:
    _pruned_store(tmp_path)
    _tamper(tmp_path, "DELETE FROM committed WHERE height = 55")
    with pytest.raises(CorruptStorage, match="lacks height 55"):
        open_storage(tmp_path, GENESIS)


def test_old_records_are_checked_when_read_not_at_start(tmp_path: Path) -> None:
    _pruned_store(tmp_path)
    _tamper(tmp_path, "UPDATE committed SET data = ? WHERE height = 35", _seal(b"x")[:-1] + b"?")
    _tamper(tmp_path, "UPDATE snapshots SET data = ? WHERE height = 40", _seal(b"x")[:-1] + b"?")
    store = open_storage(tmp_path, GENESIS)  # start-up does not read them
    assert store.load_committed(36, 1) == [(36, b"r36")]
    with pytest.raises(CorruptStorage, match="committed block 35"):
        store.load_committed(35, 1)
    with pytest.raises(CorruptStorage, match="snapshot 40"):
        store.check(full=True)
    store.close()


# ---------------------------------------------------------------- both agree


# (kind, records or install gap, block round, prune blocks below, prune log below the top
# by, snapshot at the batch's last record). The log bound is relative to the top, so that
# it lands below, at and above the snapshot.
_Op = tuple[str, int, int, int | None, int | None, bool]
_maybe = st.none() | st.integers(min_value=-3, max_value=30)
_operations = st.lists(
    st.tuples(
        st.sampled_from(["batch", "batch", "batch", "install", "gap"]),
        st.integers(min_value=1, max_value=6),
        st.integers(min_value=0, max_value=40),
        _maybe,
        _maybe,
        st.booleans(),
    ),
    max_size=25,
)


def _state(store: Storage) -> tuple[object, ...]:
    return (
        store.committed_height(),
        store.first_committed_height(),
        store.load_committed(0, -1),
        store.latest_snapshot(),
        store.load_blocks(),
        store.load_safety(),
        store.load_meta("m"),
    )


@settings(max_examples=60, deadline=None)
@given(_operations)
def test_memory_and_sqlite_storage_agree(ops: list[_Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        disk = SqliteStorage(Path(tmp) / "node.sqlite")
        stores: list[Storage] = [MemoryStorage(), disk]
        try:
            for step, (kind, count, round_, prune_blocks, log_by, snap) in enumerate(ops):
                top = stores[0].committed_height()
                if kind == "install":
                    for store in stores:
                        store.install_snapshot(top + count, b"s%d" % step, b"i%d" % step)
                    continue
                first = top + (2 if kind == "gap" else 1)
                records = [(h, b"%d@%d" % (h, step)) for h in range(first, first + count)]
                batch = WriteBatch(
                    safety=b"safety%d" % step,
                    blocks=[(b"b%d" % (round_ % 7), round_, b"%d@%d" % (round_, step))],
                    committed=records,
                    meta={"m": b"%d" % step},
                    snapshot=(records[-1][0], b"s%d" % step) if snap else None,
                    prune_blocks_below_round=None if prune_blocks is None else max(0, prune_blocks),
                    prune_log_below=None if log_by is None else max(0, top - log_by),
                )
                outcomes = []
                for store in stores:
                    try:
                        store.write(batch)
                        outcomes.append("ok")
                    except ValueError:
                        outcomes.append("refused")
                assert outcomes[0] == outcomes[1]
                assert _state(stores[0]) == _state(stores[1])
                heights = [h for h, _ in stores[0].load_committed(0, -1)]
                assert heights == list(range(heights[0], heights[-1] + 1) if heights else [])
            disk.check()  # whatever happened, the store opens again
        finally:
            disk.close()


def test_values_sealed_with_keccak_before_sha256_still_open(tmp_path: Path) -> None:
    """A data directory written before the SHA-256 seals (keccak checksums) opens and
    reads as it is; a damaged value is still refused under either checksum."""
    _pruned_store(tmp_path)
    value = b"r45-old"
    assert _seal(value)[:8] == hashlib.sha256(value).digest()[:8]  # what is written now
    legacy = keccak(value)[:8] + value
    _tamper(tmp_path, "UPDATE committed SET data = ? WHERE height = 45", legacy)
    _tamper(tmp_path, "UPDATE committed SET data = ? WHERE height = 46", legacy[:-1] + b"?")
    store = open_storage(tmp_path, GENESIS)
    assert store.load_committed(45, 1) == [(45, value)]
    with pytest.raises(CorruptStorage, match="committed block 46"):
        store.load_committed(46, 1)
    store.close()
