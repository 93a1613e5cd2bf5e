"""WebSocket intake: pipelined intent batches for high-rate clients.

One connection carries many requests in flight. A client sends {"id", "intents", ...}
messages (JSON text frames, or msgpack binary frames with packed intents) without
waiting; each answer {"id", "results"} (or {"id", "error"}) comes back when its batch is
done, in any order, in the encoding of the request.

Shape of the I/O (trio-websocket's `_impl.py`): one reader, one writer, one task per
message in flight. The number in flight is bounded per connection: at the bound the
reader stops reading, so a fast client is slowed by TCP backpressure rather than by a
growing task list. Answers go through a bounded channel to the single writer, so frames
never interleave. A frame that cannot be decoded gets an error answer; after
`ws_max_bad_frames` of them the connection is closed with 1008 (policy violation).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Final

import trio
from starlette.websockets import WebSocket

from node.api.intake import ApiError, Intake, Message, decode_ws_binary, decode_ws_text
from node.api.intake import dumps_json as _dumps_json
from node.api.intake import dumps_msgpack as _dumps_msgpack

CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_TRY_AGAIN_LATER: Final = 1013
CLOSE_GRACE_S: Final = 1.0


class ConnectionCounter:
    """Open WebSocket connections, in total and per client (the table holds only
    clients with a connection open, so it is bounded by `max_total`)."""

    __slots__ = ("_per_client", "max_per_client", "max_total", "total")

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0
        self._per_client: dict[Hashable, int] = {}

    def open(self, client: Hashable) -> bool:
        count = self._per_client.get(client, 0)
        if self.total >= self.max_total or count >= self.max_per_client:
            return False
        self._per_client[client] = count + 1
        self.total += 1
        return True

    def close(self, client: Hashable) -> None:
        left = self._per_client[client] - 1
        if left:
            self._per_client[client] = left
        else:
            del self._per_client[client]
        self.total -= 1


class IntakeSession:
    """One accepted WebSocket connection."""

    def __init__(self, websocket: WebSocket, intake: Intake, client: Hashable) -> None:
        limits = intake.limits
        self._ws = websocket
        self._intake = intake
        self._client = client
        self._slots = trio.Semaphore(limits.ws_max_inflight_messages)
        self._outbox_send, self._outbox = trio.open_memory_channel[dict[str, Any]](
            limits.ws_max_inflight_messages
        )
        self._closed = trio.Event()
        self._bad_frames = 0

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop, nursery.cancel_scope)
            await self._read_loop(nursery)
            nursery.cancel_scope.cancel()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        limits = self._intake.limits
        while True:
            frame = await self._ws.receive()
            if frame["type"] != "websocket.receive":
                return  # websocket.disconnect
            await self._slots.acquire()  # backpressure: no new work past the bound
            try:
                message = self._decode(frame)
            except ApiError as error:
                await self._reply(frame, _error_answer(error))
                self._slots.release()
                if error.status in (400, 413):
                    self._bad_frames += 1
                    if self._bad_frames >= limits.ws_max_bad_frames:
                        await self._close(CLOSE_POLICY_VIOLATION, "too many bad frames")
                        return
                continue
            nursery.start_soon(self._handle, message, frame.get("bytes") is not None)

    def _decode(self, frame: Mapping[str, Any]) -> Message:
        """Decode, then charge the message to the client's IP (after decoding, so that a
        refusal can carry the client's request id)."""
        limits = self._intake.limits
        data = frame.get("bytes")
        text = frame.get("text")
        if data is not None:
            message = decode_ws_binary(data, limits)
        elif text is not None:
            message = decode_ws_text(text, limits)
        else:
            raise ApiError(400, "bad_encoding", "empty frame")
        self._intake.charge_request(self._client, message.request_id)
        return message

    async def _handle(self, message: Message, binary: bool) -> None:
        try:
            answer: dict[str, Any]
            try:
                results = await self._intake.submit(
                    self._client,
                    message.items,
                    message.wait,
                    message.timeout_s,
                    message.request_id,
                )
                answer = {"id": message.request_id, "results": results}
            except ApiError as error:
                answer = _error_answer(error)
            await self._send(answer, binary=binary)
        finally:
            self._slots.release()

    async def _reply(self, frame: Mapping[str, Any], answer: dict[str, Any]) -> None:
        await self._send(answer, binary=frame.get("bytes") is not None)

    async def _send(self, answer: dict[str, Any], *, binary: bool) -> None:
        if binary:
            await self._outbox_send.send(
                {"type": "websocket.send", "bytes": _dumps_msgpack(answer)}
            )
        else:
            text = _dumps_json(answer).decode()
            await self._outbox_send.send({"type": "websocket.send", "text": text})

    async def _close(self, code: int, reason: str) -> None:
        await self._outbox_send.send({"type": "websocket.close", "code": code, "reason": reason})
        with trio.move_on_after(CLOSE_GRACE_S):
            await self._closed.wait()

    async def _write_loop(self, cancel_scope: trio.CancelScope) -> None:
        try:
            async for event in self._outbox:
                await self._ws.send(event)
                if event["type"] == "websocket.close":
                    return
        except Exception:
            # The client went away mid-send: nothing more can be answered.
            cancel_scope.cancel()
        finally:
            self._closed.set()


def _error_answer(error: ApiError) -> dict[str, Any]:
    return {"id": error.request_id, **error.body()}
