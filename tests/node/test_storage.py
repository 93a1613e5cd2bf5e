"""One contract suite for every Storage implementation, plus corruption handling on disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.store.storage import (
    CorruptStorage,
    MemoryStorage,
    SafetyFile,
    SqliteStorage,
    Storage,
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
