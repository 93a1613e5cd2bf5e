"""Byte budgets of the transport: the inbound queue per peer and in total, the outbound
queue per peer. The queue alone first, then a Transport fed over memory streams by
members driven by hand, one of them flooding."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from node.net.framing import HEADER_BYTES, FrameError, encode_frame, pack
from node.net.inbound import ITEM_OVERHEAD_BYTES, InboundQueue, item_cost
from node.net.transport import RECEIVE_BYTES, Transport, TransportConfig
from tests.node.test_transport_framing import GENESIS, KEYS, MAX, PEERS, connect_member

BLOB = pack(b"x" * (MAX - 3))  # bin16 of MAX - 3 bytes: a payload of exactly MAX bytes
BLOB_COST = item_cost(BLOB)


def never_undecodable(peer: int, error: FrameError) -> None:
    raise AssertionError(f"peer {peer}: {error}")


# -- the queue alone ---------------------------------------------------------------------


def test_a_peer_over_its_budget_is_refused_while_others_still_fit() -> None:
    queue = InboundQueue(2 * BLOB_COST, 5 * BLOB_COST, never_undecodable)
    assert queue.put_nowait(1, BLOB) and queue.put_nowait(1, BLOB)
    assert not queue.put_nowait(1, BLOB)  # peer 1 is at its budget
    assert queue.put_nowait(2, BLOB) and queue.put_nowait(2, BLOB)
    assert queue.put_nowait(3, BLOB)
    assert not queue.put_nowait(4, BLOB)  # the total is spent, though peer 4 has nothing
    assert queue.buffered_bytes() == 5 * BLOB_COST == queue.buffered_bytes(1) * 5 / 2
    assert queue.receive_nowait() == (1, b"x" * (MAX - 3))  # taking one releases its bytes
    assert queue.buffered_bytes(1) == BLOB_COST
    assert queue.put_nowait(1, BLOB)
    assert not queue.put_nowait(4, BLOB)


def test_every_item_costs_its_overhead_so_tiny_frames_are_bounded_too() -> None:
    queue = InboundQueue(10 * ITEM_OVERHEAD_BYTES, 10 * ITEM_OVERHEAD_BYTES, never_undecodable)
    tiny = pack(None)
    accepted = 0
    while queue.put_nowait(1, tiny):
        accepted += 1
    assert accepted == 10 * ITEM_OVERHEAD_BYTES // item_cost(tiny) == 9


async def test_a_blocked_put_resumes_when_the_consumer_takes_a_message() -> None:
    queue = InboundQueue(BLOB_COST, BLOB_COST, never_undecodable)
    queue.put_nowait(1, BLOB)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.put, 1, pack("second"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(queue) == 1  # the put waits for budget
        assert (await queue.receive())[0] == 1
        await trio.testing.wait_all_tasks_blocked()
        assert len(queue) == 1 and queue.receive_nowait() == (1, "second")


async def test_undecodable_payloads_are_reported_and_skipped() -> None:
    reported: list[tuple[int, str]] = []
    queue = InboundQueue(1 << 16, 1 << 16, lambda peer, e: reported.append((peer, str(e))))
    queue.put_nowait(1, b"\xc1")
    queue.put_nowait(2, pack("fine"))
    assert queue.receive_nowait() == (2, "fine")
    assert [peer for peer, _ in reported] == [1] and "undecodable" in reported[0][1]
    assert queue.buffered_bytes() == 0
    with pytest.raises(trio.WouldBlock):
        queue.receive_nowait()


async def test_discard_drops_one_peers_messages_and_close_ends_the_iteration() -> None:
    queue = InboundQueue(1 << 16, 1 << 16, never_undecodable)
    for i in range(3):
        queue.put_nowait(1, pack(i))
        queue.put_nowait(2, pack(i))
    assert queue.discard(1) == 3 and queue.buffered_bytes(1) == 0
    assert queue.discard(1) == 0
    queue.close()
    with pytest.raises(trio.ClosedResourceError):
        queue.put_nowait(2, pack("late"))
    assert [item async for item in queue] == [(2, 0), (2, 1), (2, 2)]
    assert queue.buffered_bytes() == 0


def test_budgets_must_hold_one_largest_message() -> None:
    with pytest.raises(ValueError, match="inbound_peer_bytes must hold one message"):
        TransportConfig(max_frame_bytes=MAX, inbound_peer_bytes=MAX)
    with pytest.raises(ValueError, match="inbound_bytes must be at least"):
        TransportConfig(max_frame_bytes=MAX, inbound_peer_bytes=1 << 20, inbound_bytes=1 << 19)
    with pytest.raises(ValueError, match="queue_bytes must hold one frame"):
        TransportConfig(max_frame_bytes=MAX, queue_bytes=MAX)


# -- a transport with a flooding peer ------------------------------------------------------


async def test_a_flooding_peer_is_held_to_its_budget_while_another_peer_gets_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer_budget = 4 * BLOB_COST
    config = TransportConfig(
        max_frame_bytes=MAX, inbound_peer_bytes=peer_budget, inbound_bytes=3 * peer_budget
    )
    transport = Transport(0, KEYS[0], PEERS, GENESIS, config)
    flood = 200
    async with trio.open_nursery() as nursery:
        flooder = await connect_member(nursery, transport, 1)
        honest = await connect_member(nursery, transport, 2)
        # One record per message, all written at once: the memory stream buffers without
        # bound, so only the transport's own reading can hold them back.
        await flooder.stream.send_all(b"".join(flooder.wire(BLOB) for _ in range(flood)))
        await trio.sleep(1)  # nobody consumes yet
        flooded = transport.stats().peers[1]
        assert transport.inbound.buffered_bytes(1) == peer_budget
        # The reader stopped reading its socket: at most one read beyond what it queued.
        assert flooded.bytes_in <= peer_budget + RECEIVE_BYTES
        assert flooded.frames_in < flood / 10

        await honest.send_frames(pack(["vote", 1]), pack(["vote", 2]), pack(["vote", 3]))
        await trio.sleep(1)
        assert len(transport.inbound) == 4 + 3  # peer 1's budget's worth, and peer 2's

        got: list[tuple[int, Any]] = []
        with trio.fail_after(10):
            while len(got) < flood + 3:
                got.append(await transport.inbound.receive())
                assert transport.inbound.buffered_bytes(1) <= peer_budget
        assert [i for i, (peer, _) in enumerate(got) if peer == 2] == [4, 5, 6]
        assert [message for peer, message in got if peer == 2] == [["vote", i] for i in (1, 2, 3)]
        assert sum(peer == 1 for peer, _ in got) == flood  # pushed back, never dropped
        assert transport.connected_peers() == {1, 2}
        nursery.cancel_scope.cancel()


async def test_the_total_budget_binds_when_several_peers_flood(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer_budget = 4 * BLOB_COST
    total = 6 * BLOB_COST
    config = TransportConfig(
        max_frame_bytes=MAX, inbound_peer_bytes=peer_budget, inbound_bytes=total
    )
    transport = Transport(0, KEYS[0], PEERS, GENESIS, config)
    flood = 60
    async with trio.open_nursery() as nursery:
        for member in (1, 2):
            peer = await connect_member(nursery, transport, member)
            await peer.stream.send_all(b"".join(peer.wire(BLOB) for _ in range(flood)))
        await trio.sleep(1)
        assert transport.inbound.buffered_bytes() == total
        counts = {1: 0, 2: 0}
        with trio.fail_after(10):
            for _ in range(2 * flood):
                peer_id, _ = await transport.inbound.receive()
                counts[peer_id] += 1
                assert transport.inbound.buffered_bytes() <= total
                await trio.sleep(0)  # let the readers refill what was released
        assert counts == {1: flood, 2: flood}
        nursery.cancel_scope.cancel()


# -- outbound ----------------------------------------------------------------------------


def test_outbound_queue_is_bounded_in_bytes_and_drops_the_oldest() -> None:
    frame_bytes = len(encode_frame(BLOB))
    assert frame_bytes == MAX + HEADER_BYTES
    config = TransportConfig(max_frame_bytes=MAX, queue_bytes=3 * frame_bytes + 10)
    transport = Transport(0, KEYS[0], PEERS, GENESIS, config)
    accepted = [transport.send(1, b"x" * (MAX - 3)) for _ in range(3)]
    assert accepted == [True, True, True]
    small = [transport.send(1, i) for i in range(10)]  # 5 bytes each: 10 bytes of room
    # The first two small frames fit the slack; the third evicts the oldest large frame.
    assert small == [True, True] + [False] + [True] * 7
    stats = transport.stats().peers[1]
    assert stats.drops == 1 and stats.queue_depth == 12
    assert stats.queue_bytes == 2 * frame_bytes + 10 * len(encode_frame(pack(0)))
    assert stats.queue_bytes <= config.queue_bytes
    assert not transport.send(1, b"x" * (MAX - 3))  # one more large frame evicts many
    stats = transport.stats().peers[1]
    assert stats.queue_bytes <= config.queue_bytes and stats.drops > 1


async def test_the_newest_frames_go_out_in_order_after_byte_drops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    message_bytes = len(encode_frame(pack({"seq": 0, "pad": b"p" * 200})))
    config = TransportConfig(max_frame_bytes=MAX, queue_bytes=max(MAX + 4, 5 * message_bytes))
    transport = Transport(0, KEYS[0], PEERS, GENESIS, config)
    for i in range(12):
        transport.send(1, {"seq": i, "pad": b"p" * 200})
    kept = transport.queue_depth(1)
    assert kept == config.queue_bytes // message_bytes
    async with trio.open_nursery() as nursery:
        peer = await connect_member(nursery, transport, 1)
        with trio.fail_after(1):
            got = await peer.receive_messages(kept)
        assert [m["seq"] for m in got] == list(range(12 - kept, 12))
        assert transport.stats().peers[1].queue_bytes == 0
        nursery.cancel_scope.cancel()
