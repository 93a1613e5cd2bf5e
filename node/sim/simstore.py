"""The runtime simulator's disk: `MemoryStorage` with `SqliteStorage`'s durability.

node/store/storage.py documents two durability levels, and this store keeps both apart:

- the safety record is synced before `write` returns (the safety file's `fdatasync`):
  it survives every crash;
- everything else (blocks, committed log, meta, snapshots) is SQLite in WAL mode at
  `synchronous=NORMAL`: a transaction that returned survives a crash of the process (it
  is in the OS), but a power cut loses the transactions since the last WAL sync, always
  a suffix (the WAL is appended in order and a torn tail is discarded).

So a `write` is journalled; `sync()` (the WAL checkpoint, which the simulator runs at a
seeded interval) makes the journal durable; `crash(power_loss=True)` keeps the durable
image plus a random prefix of the journal, and `crash(power_loss=False)` keeps it all.

`on_commit` sees every committed record as it is written: the checker's safety hook.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from node.store.storage import MemoryStorage, WriteBatch


@dataclass(slots=True)
class _Image:
    meta: dict[str, bytes]
    blocks: dict[bytes, tuple[int, bytes]]
    committed: list[tuple[int, bytes]]
    snapshots: list[tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class _Install:
    height: int
    snapshot: bytes
    record: bytes


class SimStorage(MemoryStorage):
    def __init__(self, on_commit: Callable[[int, bytes], None] | None = None) -> None:
        super().__init__()
        self.on_commit = on_commit
        self._durable = self._image()
        self._journal: list[WriteBatch | _Install] = []
        self.writes = 0
        self.lost_writes = 0  # journal entries dropped by power cuts, in total

    def _image(self) -> _Image:
        # Values are immutable bytes: copying the containers is a full copy.
        return _Image(
            dict(self._meta), dict(self._blocks), list(self._committed), list(self._snapshots)
        )

    def _restore(self, image: _Image) -> None:
        self._meta = dict(image.meta)
        self._blocks = dict(image.blocks)
        self._committed = list(image.committed)
        self._snapshots = list(image.snapshots)

    def write(self, batch: WriteBatch) -> None:
        super().write(batch)  # validates first: a refused batch is not journalled
        self.writes += 1
        unsynced = replace(batch, safety=None)
        if unsynced:
            self._journal.append(unsynced)
        if self.on_commit is not None:
            for height, record in batch.committed:
                self.on_commit(height, record)

    def install_snapshot(self, height: int, snapshot: bytes, record: bytes) -> None:
        super().install_snapshot(height, snapshot, record)
        self.writes += 1
        self._journal.append(_Install(height, snapshot, record))
        if self.on_commit is not None:
            self.on_commit(height, record)

    def sync(self) -> None:
        """The WAL reached the disk: everything written so far survives a power cut."""
        if self._journal:
            self._durable = self._image()
            self._journal = []

    def crash(self, rng: random.Random, power_loss: bool) -> int:
        """The process died (and with `power_loss`, the machine): returns how many
        journalled transactions were lost."""
        if not power_loss or not self._journal:
            return 0
        keep = rng.randint(0, len(self._journal))
        lost = len(self._journal) - keep
        if lost:
            kept = self._journal[:keep]
            self._restore(self._durable)
            self._journal = []
            for entry in kept:
                if isinstance(entry, _Install):
                    MemoryStorage.install_snapshot(self, entry.height, entry.snapshot, entry.record)
                else:
                    MemoryStorage.write(self, entry)
            self._journal = kept
            self.lost_writes += lost
        return lost
