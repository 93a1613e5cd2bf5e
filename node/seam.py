"""The I/O seam of a committee member: what the runtime needs from the world.

`node.runtime.Node` talks to the network, the clock and the disk only through these
small interfaces. Production binds them to the authenticated TCP transport
(node/net/transport.py), the wall clock and SQLite plus the safety file
(node/store/storage.py); the runtime simulator (node/sim/runtime_sim.py) binds them to a
seeded in-memory network, trio's MockClock and an in-memory store that loses unsynced
writes on a crash. The same runtime code runs above both (TigerBeetle's VOPR and
FoundationDB's simulator work this way).

Timers and sleeps are trio's own (`trio.sleep`, `move_on_after`): under a MockClock
they run on virtual time, so they need no seam of their own. The wall clock (`Clock`)
is separate because block timestamps and intent nonces are wall-clock milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import trio

from node.store.storage import WriteBatch

Clock = Callable[[], int]  # wall-clock milliseconds since the Unix epoch


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class InboundMessages(Protocol):
    """A receive channel of `(peer index, message)` in trio's shape (a trio memory
    channel is one; the transport's is bounded in bytes, node/net/inbound.py). Taking a
    message frees what it held; EndOfChannel once the network has stopped."""

    async def receive(self) -> tuple[int, Any]: ...

    def receive_nowait(self) -> tuple[int, Any]: ...

    def __aiter__(self) -> AsyncIterator[tuple[int, Any]]: ...


class PeerNetwork(Protocol):
    """Links to the other members. Messages are msgpack-able lists `[kind, …]`.

    `inbound` yields `(peer index, message)`; a message has only been decoded from
    msgpack, nothing more: the runtime's peer boundary (node/net/messages.py) checks it.
    `send`/`broadcast` never block (a full queue drops the oldest frame)."""

    @property
    def inbound(self) -> InboundMessages: ...

    async def run(self, *, task_status: trio.TaskStatus[Any] = ...) -> None: ...

    def send(self, peer_id: int, message: Any) -> bool: ...

    def broadcast(self, message: Any) -> None: ...

    def connected_peers(self) -> frozenset[int]: ...

    def penalize(self, peer_id: int, reason: str) -> None:
        """The peer broke the protocol: count it against the peer; a repeat offender is
        disconnected and kept out for a back-off period."""
        ...


class NodeStorage(Protocol):
    """What the runtime reads and writes (node/store/storage.py has both implementations)."""

    def load_meta(self, key: str) -> bytes | None: ...

    def load_safety(self) -> bytes | None: ...

    def load_blocks(self, min_round: int = 0) -> list[bytes]: ...

    def committed_height(self) -> int: ...

    def first_committed_height(self) -> int:
        """Where the committed log starts now (0 when empty): the log is pruned below the
        snapshots (`WriteBatch.prune_log_below`), so older heights are gone."""
        ...

    def load_committed(
        self, from_height: int, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, bytes]]: ...

    def iter_committed(self, from_height: int) -> Iterator[tuple[int, bytes]]: ...

    def latest_snapshot(self) -> tuple[int, bytes] | None: ...

    def load_shares(self, height: int) -> bytes | None: ...

    def write(self, batch: WriteBatch) -> None: ...

    def install_snapshot(self, height: int, snapshot: bytes, record: bytes) -> None: ...

    def checkpoint_wal(self) -> None: ...

    def close(self) -> None: ...
