"""The shared inbound queue: peers' messages waiting for the node, bounded in bytes.

Each connection's reader puts the payloads of the frames it has read here, still
msgpack-encoded, and the node takes them out decoded, one at a time. Two budgets bound
what waits: each peer's bytes (`peer_budget_bytes`) and all peers' bytes together
(`total_budget_bytes`). A reader whose peer is over either budget waits before it reads
its socket again, so TCP pushes back on that peer alone, and the other peers' messages
keep arriving within what is left.

Payloads wait encoded because that is the only size known exactly: a decoded value can
take tens of times its wire bytes (4 MiB of empty msgpack arrays decode to ~250 MB of
lists), so decoding waits until the consumer takes the message. A payload that does not
decode is reported to `on_undecodable` (the transport drops that peer's connection) and
skipped. Every item also costs ITEM_OVERHEAD_BYTES, so a flood of tiny frames is bounded
in count too.

No sockets here, only trio's parking lots: readers park while over budget, consumers
park while the queue is empty.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

import trio
import trio.lowlevel

from node.net.framing import FrameError, unpack

ITEM_OVERHEAD_BYTES: Final = 128  # the item's tuple, bytes object and deque slot, rounded up

Item = tuple[int, Any]  # (peer id, decoded message)


def item_cost(payload: bytes) -> int:
    return len(payload) + ITEM_OVERHEAD_BYTES


class InboundQueue:
    """Many producers (connection readers), one consumer (the node), bounded in bytes.

    The consumer side has the shape of a trio receive channel: `receive_nowait`
    (trio.WouldBlock when empty), `receive`, `async for`; both raise trio.EndOfChannel
    once the queue is closed and drained. Taking a message releases its bytes.
    """

    __slots__ = (
        "_closed",
        "_items",
        "_on_undecodable",
        "_peer_budget_bytes",
        "_peer_bytes",
        "_readable",
        "_room",
        "_total_budget_bytes",
        "_total_bytes",
    )

    def __init__(
        self,
        peer_budget_bytes: int,
        total_budget_bytes: int,
        on_undecodable: Callable[[int, FrameError], None],
    ) -> None:
        assert 0 < peer_budget_bytes <= total_budget_bytes, (peer_budget_bytes, total_budget_bytes)
        self._peer_budget_bytes = peer_budget_bytes
        self._total_budget_bytes = total_budget_bytes
        self._on_undecodable = on_undecodable
        self._items: deque[tuple[int, bytes]] = deque()
        self._peer_bytes: dict[int, int] = {}
        self._total_bytes = 0
        self._closed = False
        self._readable = trio.lowlevel.ParkingLot()  # consumers waiting for an item
        self._room = trio.lowlevel.ParkingLot()  # readers waiting for budget

    # -- producers ---------------------------------------------------------------------

    def fits(self, peer: int, cost: int) -> bool:
        return (
            self._peer_bytes.get(peer, 0) + cost <= self._peer_budget_bytes
            and self._total_bytes + cost <= self._total_budget_bytes
        )

    def put_nowait(self, peer: int, payload: bytes) -> bool:
        """Queue one payload if both budgets allow it now; False (nothing queued) if not."""
        if self._closed:
            raise trio.ClosedResourceError("the inbound queue is closed")
        cost = item_cost(payload)
        # The transport keeps max_frame_bytes under the peer budget, so a peer with
        # nothing waiting always fits its own budget.
        assert cost <= self._peer_budget_bytes, cost
        if not self.fits(peer, cost):
            return False
        self._items.append((peer, payload))
        self._peer_bytes[peer] = self._peer_bytes.get(peer, 0) + cost
        self._total_bytes += cost
        if self._readable:
            self._readable.unpark_all()
        return True

    async def put(self, peer: int, payload: bytes) -> None:
        """Queue one payload, waiting while the peer or the queue is over budget."""
        while not self.put_nowait(peer, payload):
            await self._room.park()

    def discard(self, peer: int) -> int:
        """Drop every message a peer has waiting (it was banned); how many were dropped."""
        if not self._peer_bytes.get(peer):
            return 0
        kept = deque(item for item in self._items if item[0] != peer)
        dropped = len(self._items) - len(kept)
        self._items = kept
        self._total_bytes -= self._peer_bytes.pop(peer)
        self._room.unpark_all()
        return dropped

    def close(self) -> None:
        """No more puts; the consumer drains what is left, then sees EndOfChannel."""
        self._closed = True
        self._readable.unpark_all()
        self._room.unpark_all()

    # -- the consumer ------------------------------------------------------------------

    def receive_nowait(self) -> Item:
        while True:
            if not self._items:
                raise trio.EndOfChannel if self._closed else trio.WouldBlock
            peer, payload = self._items.popleft()
            self._release(peer, item_cost(payload))
            try:
                return peer, unpack(payload)
            except FrameError as error:
                self._on_undecodable(peer, error)

    async def receive(self) -> Item:
        # A checkpoint on every call, as trio's own channels do.
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                item = self.receive_nowait()
            except trio.WouldBlock:
                await self._readable.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item

    def __aiter__(self) -> InboundQueue:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def _release(self, peer: int, cost: int) -> None:
        left = self._peer_bytes[peer] - cost
        if left:
            self._peer_bytes[peer] = left
        else:
            del self._peer_bytes[peer]
        self._total_bytes -= cost
        assert left >= 0 and self._total_bytes >= 0, (left, self._total_bytes)
        if self._room:
            self._room.unpark_all()

    # -- introspection -----------------------------------------------------------------

    def buffered_bytes(self, peer: int | None = None) -> int:
        """Bytes charged to one peer's waiting messages, or to all of them."""
        return self._total_bytes if peer is None else self._peer_bytes.get(peer, 0)

    def __len__(self) -> int:
        return len(self._items)
