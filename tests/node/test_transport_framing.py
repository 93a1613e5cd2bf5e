"""Frames and records: the codec alone (node/net/framing.py), then a Transport's reader and
writer over memory streams, fed by a hand-driven authenticated peer."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from nacl.signing import SigningKey
from structlog.testing import capture_logs

from node.net.framing import (
    FrameDecoder,
    FrameError,
    RecordCipher,
    encode_frame,
    header,
    pack,
    split_record,
    unpack,
)
from node.net.handshake import Identity, initiate
from node.net.inbound import ITEM_OVERHEAD_BYTES, item_cost
from node.net.transport import Peer, Transport, TransportConfig, keep_existing

GENESIS = b"\x47" * 32
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
PEERS = {i: Peer("127.0.0.1", 1, bytes(k.verify_key)) for i, k in enumerate(KEYS)}
MAX = 1024


# -- the codec ---------------------------------------------------------------------------


def test_decoder_reassembles_frames_split_at_every_byte() -> None:
    payloads = [pack({"n": i, "data": b"x" * i}) for i in range(0, 300, 37)]
    wire = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder(MAX)
    out: list[bytes] = []
    for i in range(len(wire)):
        decoder.feed(wire[i : i + 1])
        out += decoder.frames()
    assert out == payloads
    assert decoder.buffered_bytes == 0


def test_decoder_many_frames_in_one_read_and_a_limit() -> None:
    decoder = FrameDecoder(MAX)
    decoder.feed(b"".join(encode_frame(bytes([i])) for i in range(5)) + b"\x00\x00")
    assert decoder.frames(limit=2) == [b"\x00", b"\x01"]
    assert decoder.frames() == [b"\x02", b"\x03", b"\x04"]
    assert decoder.take_buffered() == b"\x00\x00"


def test_exact_maximum_passes_and_one_more_fails_on_the_header_alone() -> None:
    decoder = FrameDecoder(MAX)
    decoder.feed(encode_frame(b"m" * MAX))
    assert decoder.frames() == [b"m" * MAX]
    decoder.feed(header(MAX + 1))  # no body: the length alone condemns it
    with pytest.raises(FrameError, match=f"frame of {MAX + 1} bytes exceeds the maximum {MAX}"):
        decoder.frames()


def test_zero_length_frame_is_an_empty_payload() -> None:
    decoder = FrameDecoder(MAX)
    decoder.feed(b"\x00\x00\x00\x00")
    assert decoder.frames() == [b""]


def test_record_must_hold_whole_frames() -> None:
    assert split_record(encode_frame(b"ab") + encode_frame(b""), MAX) == [b"ab", b""]
    with pytest.raises(FrameError, match="ends inside a frame"):
        split_record(encode_frame(b"abc")[:-1], MAX)
    with pytest.raises(FrameError, match="exceeds"):
        split_record(header(MAX + 1) + b"x" * (MAX + 1), MAX)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x92\x01", b"\x01\x02", b"\x81\x91\x01\x02", b"\xd9\x02\xff\xfe", b"\xdd" * 9],
)
def test_undecodable_payloads_raise_frame_error(payload: bytes) -> None:
    with pytest.raises(FrameError, match="undecodable"):
        unpack(payload)


def test_random_payloads_decode_or_raise_frame_error_only() -> None:
    rng = random.Random(4)
    for _ in range(3000):
        payload = rng.randbytes(rng.randrange(1, 40))
        with suppress(FrameError):
            unpack(payload)


def test_record_cipher_refuses_tampered_replayed_and_reordered_records() -> None:
    key = bytes(range(32))
    sender, receiver = RecordCipher(key), RecordCipher(key)
    first, second = sender.seal(b"one"), sender.seal(b"two")
    assert receiver.open(first[4:]) == b"one"
    tampered = bytearray(second)
    tampered[-1] ^= 1
    with pytest.raises(FrameError, match="authentication"):
        receiver.open(bytes(tampered[4:]))
    with pytest.raises(FrameError, match="authentication"):  # replayed
        receiver.open(first[4:])
    with pytest.raises(FrameError, match="authentication"):  # reordered
        RecordCipher(key).open(second[4:])
    with pytest.raises(FrameError, match="shorter than its tag"):
        RecordCipher(key).open(b"short")


@pytest.mark.parametrize(
    ("existing", "age_s", "new", "keep"),
    [
        (0, 0.1, 0, False),  # same direction: the newer one (old is stale)
        (1, 0.1, 1, False),
        (0, 0.1, 1, True),  # crossing, existing dialed by the lower id and young: keep
        (1, 0.1, 0, False),  # crossing, new one dialed by the lower id: take it
        (0, 9.0, 1, False),  # crossing, but the existing one is old: the peer lost it
    ],
)
def test_tie_break(existing: int, age_s: float, new: int, keep: bool) -> None:
    for me, peer in ((0, 1), (1, 0)):  # both ends decide alike
        assert keep_existing(me, peer, existing, age_s, new, settle_s=5.0) is keep


# -- a transport over memory streams -----------------------------------------------------


@dataclass
class FakePeer:
    """A member driven by hand over a memory stream into member 0's Transport."""

    stream: trio.abc.Stream
    sealer: RecordCipher | None
    opener: RecordCipher | None
    seal: bool

    async def send_frames(self, *payloads: bytes) -> None:
        await self.stream.send_all(self.wire(*payloads))

    def wire(self, *payloads: bytes) -> bytes:
        frames = b"".join(encode_frame(p) for p in payloads)
        return self.sealer.seal(frames) if self.sealer else frames

    async def receive_messages(self, count: int) -> list[Any]:
        decoder = FrameDecoder(1 << 20)
        messages: list[Any] = []
        while len(messages) < count:
            decoder.feed(await self.stream.receive_some())
            for unit in decoder.frames():
                frames = split_record(self.opener.open(unit), MAX) if self.opener else [unit]
                messages += [unpack(f) for f in frames if f]
        return messages

    async def expect_closed(self) -> None:
        with trio.fail_after(1):  # well under keepalive_s and idle_timeout_s
            while await self.stream.receive_some():
                pass


async def connect_member(
    nursery: trio.Nursery, transport: Transport, member: int = 1, seal: bool = True
) -> FakePeer:
    """Authenticate `member` to member 0's transport over a fresh memory stream."""
    client, server = trio.testing.memory_stream_pair()
    members = {i: k.verify_key for i, k in enumerate(KEYS)}
    nursery.start_soon(transport.serve_connection, server)
    session = await initiate(
        client, Identity(member, KEYS[member], members, GENESIS, seal), 0, timeout_s=5
    )
    assert session.leftover == b""
    sealer = RecordCipher(session.send_key) if seal else None
    opener = RecordCipher(session.receive_key) if seal else None
    return FakePeer(client, sealer, opener, seal)


@asynccontextmanager
async def connected(
    config: TransportConfig | None = None, transport: Transport | None = None
) -> AsyncIterator[tuple[Transport, FakePeer]]:
    config = config or TransportConfig(max_frame_bytes=MAX)
    transport = transport or Transport(0, KEYS[0], PEERS, GENESIS, config)
    async with trio.open_nursery() as nursery:
        yield transport, await connect_member(nursery, transport, 1, config.seal)
        nursery.cancel_scope.cancel()


async def test_messages_split_across_reads_arrive_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connected() as (transport, peer):
        wire = peer.wire(pack({"a": 1}), pack([b"\x00" * 100, -5]), pack("three"))
        for i in range(len(wire)):
            await peer.stream.send_all(wire[i : i + 1])
        with trio.fail_after(1):
            got = [await transport.inbound.receive() for _ in range(3)]
        assert got == [(1, {"a": 1}), (1, [b"\x00" * 100, -5]), (1, "three")]
        assert transport.connected_peers() == {1}


async def test_exact_maximum_frame_is_delivered(autojump_clock: trio.testing.MockClock) -> None:
    largest = b"\xc5" + (MAX - 3).to_bytes(2, "big") + b"b" * (MAX - 3)  # bin16, MAX bytes
    assert len(largest) == MAX and unpack(largest) == b"b" * (MAX - 3)
    async with connected() as (transport, peer):
        await peer.send_frames(largest)
        with trio.fail_after(1):
            assert await transport.inbound.receive() == (1, b"b" * (MAX - 3))


async def test_zero_length_frames_are_keepalives(autojump_clock: trio.testing.MockClock) -> None:
    async with connected() as (transport, peer):
        await peer.send_frames(b"", b"", pack(7), b"")
        with trio.fail_after(1):
            assert await transport.inbound.receive() == (1, 7)
        assert transport.stats().peers[1].frames_in == 1
        assert transport.connected_peers() == {1}


def sealed_violations() -> list[tuple[str, Any, str]]:
    return [
        ("frame one over max", lambda p: p.wire(b"x" * (MAX + 1)), "record of 1045 bytes"),
        ("inner header over max", lambda p: p.sealer.seal(header(MAX + 1)), "frame of 1025"),
        ("record header huge", lambda p: b"\xff\xff\xff\xff", "record of 4294967295"),
        ("garbage record", lambda p: header(40) + bytes(40), "failed authentication"),
        ("record too short", lambda p: header(3) + b"abc", "shorter than its tag"),
        ("undecodable payload", lambda p: p.wire(b"\xc1"), "undecodable"),
        ("trailing garbage", lambda p: p.wire(b"\x01\x02"), "undecodable"),
        ("partial frame", lambda p: p.sealer.seal(encode_frame(b"abc")[:5]), "inside a frame"),
        ("replayed record", lambda p: 2 * p.wire(pack(1)), "failed authentication"),
    ]


async def drain(transport: Transport) -> None:
    async for _ in transport.inbound:
        pass


@pytest.mark.parametrize(("name", "make", "reason"), sealed_violations())
async def test_bad_input_disconnects_the_peer_and_is_logged(
    autojump_clock: trio.testing.MockClock, name: str, make: Any, reason: str
) -> None:
    with capture_logs() as logs:
        transport = Transport(0, KEYS[0], PEERS, GENESIS, TransportConfig(max_frame_bytes=MAX))
        async with connected(transport=transport) as (_, peer), trio.open_nursery() as node:
            # Payloads are decoded when the node takes them: someone must take them.
            node.start_soon(drain, transport)
            await peer.stream.send_all(make(peer))
            await peer.expect_closed()
            stats = transport.stats().peers[1]
            assert stats.protocol_errors == 1 and not stats.connected
            assert stats.penalties == 1 and not stats.banned
            node.cancel_scope.cancel()
    (line,) = [e for e in logs if e["event"] == "peer_disconnected"]
    assert line["log_level"] == "warning" and line["peer"] == 1
    assert "protocol violation" in line["reason"] and reason in line["reason"], line


async def test_truncated_frame_at_close_is_a_violation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connected() as (transport, peer):
        await peer.stream.send_all(peer.wire(pack("whole"))[:-3])
        await peer.stream.aclose()
        with trio.fail_after(1):
            while transport.stats().peers[1].disconnects == 0:
                await trio.sleep(0.01)
        assert transport.stats().peers[1].protocol_errors == 1


async def test_plain_sessions_check_frames_too(autojump_clock: trio.testing.MockClock) -> None:
    async with connected(TransportConfig(max_frame_bytes=MAX, seal=False)) as (transport, peer):
        await peer.send_frames(pack({"plain": True}))
        with trio.fail_after(1):
            assert await transport.inbound.receive() == (1, {"plain": True})
        await peer.stream.send_all(header(MAX + 1))
        await peer.expect_closed()
        assert transport.stats().peers[1].protocol_errors == 1


async def test_full_queue_drops_oldest_and_sends_the_rest_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = Transport(
        0, KEYS[0], PEERS, GENESIS, TransportConfig(max_frame_bytes=MAX, queue_frames=4)
    )
    accepted = [transport.send(1, {"seq": i}) for i in range(6)]
    assert accepted == [True, True, True, True, False, False]
    assert transport.queue_depth(1) == 4 and transport.stats().peers[1].drops == 2
    async with connected(transport=transport) as (_, peer):
        with trio.fail_after(1):
            assert await peer.receive_messages(4) == [{"seq": i} for i in range(2, 6)]
        assert transport.stats().peers[1].frames_out == 4


async def test_oversized_outbound_message_is_a_caller_bug() -> None:
    transport = Transport(0, KEYS[0], PEERS, GENESIS, TransportConfig(max_frame_bytes=MAX))
    with pytest.raises(ValueError, match="exceeds max_frame_bytes"):
        transport.send(1, b"x" * MAX)
    with pytest.raises(ValueError, match="exceeds max_frame_bytes"):
        transport.broadcast(b"x" * MAX)
    with pytest.raises(KeyError):
        transport.send(0, "to myself")
    assert transport.queue_depth(1) == transport.queue_depth(2) == 0


async def test_broadcast_queues_for_every_peer_but_me() -> None:
    transport = Transport(0, KEYS[0], PEERS, GENESIS)
    transport.broadcast({"hello": "all"})
    assert {i: transport.queue_depth(i) for i in (1, 2)} == {1: 1, 2: 1}


async def test_slow_consumer_blocks_the_reader_without_loss(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = MAX + ITEM_OVERHEAD_BYTES  # the least allowed: one largest message
    config = TransportConfig(max_frame_bytes=MAX, inbound_peer_bytes=budget)
    async with connected(config) as (transport, peer):
        await peer.send_frames(*(pack(i) for i in range(50)))
        await trio.sleep(1)  # nobody consumes; the reader fills the budget and waits
        waiting = len(transport.inbound)
        assert waiting == budget // item_cost(pack(0))
        assert transport.stats().peers[1].inbound_bytes == waiting * item_cost(pack(0))
        with trio.fail_after(1):
            got = [await transport.inbound.receive() for _ in range(50)]
        assert got == [(1, i) for i in range(50)]
        assert transport.connected_peers() == {1}
        assert transport.stats().inbound_bytes == 0


async def test_keepalives_flow_and_a_silent_peer_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = TransportConfig(max_frame_bytes=MAX, keepalive_s=1.0, idle_timeout_s=3.0)
    async with connected(config) as (transport, peer):
        start = trio.current_time()
        received = b""
        with trio.fail_after(10):
            while chunk := await peer.stream.receive_some():
                received += chunk
        # Keepalive records came first, then the idle timeout closed the connection.
        assert len(received) >= 2 * (4 + 4 + 16)
        assert trio.current_time() - start == pytest.approx(3.0)
        assert transport.stats().peers[1].protocol_errors == 0
        assert transport.stats().peers[1].disconnects == 1


def test_msgpack_ints_beyond_64_bits_are_refused_on_send() -> None:
    transport = Transport(0, KEYS[0], PEERS, GENESIS)
    with pytest.raises(OverflowError):
        transport.send(1, 2**64)
    assert msgpack.packb(2**64 - 1) is not None
