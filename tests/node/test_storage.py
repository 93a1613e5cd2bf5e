"""One contract suite for every Storage implementation, plus corruption handling on disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.storage import CorruptStorage, MemoryStorage, SqliteStorage, Storage, open_storage

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
    db = sqlite3.connect(tmp_path / "node.sqlite")
    (sealed,) = db.execute("SELECT record FROM safety").fetchone()
    db.execute("UPDATE safety SET record = ?", (sealed[:-1] + b"1",))
    db.commit()
    db.close()
    with pytest.raises(CorruptStorage, match="safety record"):
        open_storage(tmp_path, GENESIS)


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
