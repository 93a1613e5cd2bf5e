"""Streams from a node's /v1/stream WebSocket, with local order books that resync.

    async with Stream.connect(url) as stream:
        await stream.subscribe_book(0)
        await stream.subscribe_account("0x…")
        async for message in stream:      # every message, as the node sent it
            book = stream.books[0]          # the local book, kept from snapshot + deltas

A book subscription starts with a snapshot at sequence `seq`; each delta must carry the
next sequence. A delta that skips one means a message was lost: the local book is marked
stale, the stream resubscribes (the node answers with a fresh snapshot), deltas are
ignored until that snapshot, and a {"channel": "book", "type": "gap", …} message is
yielded so the caller knows. `stream.gaps` counts them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from node.intents import format_address, parse_address


class StreamClosed(Exception):
    """The node closed the stream; `reason` says why (e.g. slow_consumer)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"stream closed: {code} {reason}")
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class LocalBook:
    market: int
    seq: int = -1
    height: int = 0
    bids: dict[int, int] = field(default_factory=dict)  # price (ticks per lot) -> open size
    asks: dict[int, int] = field(default_factory=dict)
    stale: bool = True

    def apply_snapshot(self, message: dict[str, Any]) -> None:
        self.bids = {p: s for p, s in message["bids"]}
        self.asks = {p: s for p, s in message["asks"]}
        self.seq = message["seq"]
        self.height = message["height"]
        self.stale = False

    def apply_delta(self, message: dict[str, Any]) -> bool:
        """Apply a delta; False (and nothing applied) if it does not follow `seq`."""
        if self.stale or message["seq"] != self.seq + 1:
            return False
        for levels, changes in ((self.bids, message["bids"]), (self.asks, message["asks"])):
            for price, size in changes:
                if size:
                    levels[price] = size
                else:
                    levels.pop(price, None)
        self.seq = message["seq"]
        self.height = message["height"]
        return True

    def best_bid(self) -> int | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> int | None:
        return min(self.asks) if self.asks else None

    def levels(self, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids = sorted(self.bids.items(), reverse=True)[:depth]
        asks = sorted(self.asks.items())[:depth]
        return bids, asks


class Stream:
    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self.books: dict[int, LocalBook] = {}
        self.gaps = 0
        self._next_id = 1

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[Stream]:
        ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        async with open_websocket_url(ws_url.rstrip("/") + "/v1/stream") as ws:
            yield cls(ws)

    async def _send(self, request: dict[str, Any]) -> int:
        request_id = self._next_id
        self._next_id += 1
        await self._ws.send_message(json.dumps({**request, "id": request_id}))
        return request_id

    async def subscribe_book(self, market: int) -> None:
        self.books[market] = LocalBook(market)
        await self._send({"op": "subscribe", "channel": "book", "market": market})

    async def subscribe_trades(self, market: int) -> None:
        await self._send({"op": "subscribe", "channel": "trades", "market": market})

    async def subscribe_account(self, account: bytes | str) -> None:
        address = account if isinstance(account, str) else format_address(account)
        parse_address(address)  # refuse a bad address here, not in an error message later
        await self._send({"op": "subscribe", "channel": "account", "account": address})

    async def subscribe_prices(self, market: int) -> None:
        """A perp market's index, mark, premium and funding (a snapshot first)."""
        await self._send({"op": "subscribe", "channel": "prices", "market": market})

    async def subscribe_liquidations(self, market: int) -> None:
        """A perp market's liquidation records (orders, fills, backstops, ADL), per block."""
        await self._send({"op": "subscribe", "channel": "liquidations", "market": market})

    async def subscribe_positions(self, account: bytes | str) -> None:
        """An account's margin summary and positions (a snapshot first, then whenever its
        perp state, its balance or the mark of a market it holds moves)."""
        address = account if isinstance(account, str) else format_address(account)
        parse_address(address)
        await self._send({"op": "subscribe", "channel": "positions", "account": address})

    async def subscribe_checkpoints(self) -> None:
        await self._send({"op": "subscribe", "channel": "checkpoints"})

    async def unsubscribe(self, channel: str, **key: Any) -> None:
        if channel == "book":
            self.books.pop(key["market"], None)
        await self._send({"op": "unsubscribe", "channel": channel, **key})

    async def ping(self) -> None:
        await self._send({"op": "ping"})

    async def receive(self) -> dict[str, Any]:
        """The next message; book messages also update `books` (resyncing after a gap)."""
        try:
            raw = await self._ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason
            raise StreamClosed(
                getattr(reason, "code", None), getattr(reason, "reason", None)
            ) from None
        message: dict[str, Any] = json.loads(raw)
        if message.get("channel") == "book":
            return await self._on_book(message)
        return message

    async def _on_book(self, message: dict[str, Any]) -> dict[str, Any]:
        book = self.books.get(message["market"])
        if book is None:  # unsubscribed meanwhile
            return message
        if message["type"] == "snapshot":
            book.apply_snapshot(message)
        elif not book.apply_delta(message) and not book.stale:
            expected = book.seq + 1
            book.stale = True
            self.gaps += 1
            await self._send({"op": "subscribe", "channel": "book", "market": book.market})
            return {
                "channel": "book",
                "type": "gap",
                "market": book.market,
                "expected": expected,
                "got": message["seq"],
            }
        return message

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self.receive()
        except StreamClosed as closed:
            if closed.code in (None, 1000):
                raise StopAsyncIteration from None
            raise


async def receive_until(stream: Stream, predicate: Any, timeout_s: float) -> dict[str, Any]:
    """The first message for which `predicate(message)` holds (for tests and scripts)."""
    with trio.fail_after(timeout_s):
        while True:
            message = await stream.receive()
            if predicate(message):
                return message
