"""Handshake admission (node/net/admission.py): slots per source address, back-off of
sources whose handshakes keep failing, refusals counted and logged once per interval.
The gate alone, then over memory streams on a MockClock, then on real loopback sockets
with a second source address (127.0.0.2)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from node.net.admission import BUSY, SOURCE_BACKOFF, SOURCE_BUSY, SourceGate, source_of
from node.net.transport import Transport, TransportConfig
from tests.node.test_transport import GENESIS, KEYS, bind, committee, port_of, wait_until
from tests.node.test_transport_framing import MAX, PEERS, connect_member

GARBAGE = b"\xff\xff\xff\xff"  # a handshake frame header far over 512 bytes


def gate(**overrides: float) -> SourceGate:
    settings: dict[str, float] = {
        "max_total": 6,
        "max_per_source": 2,
        "failures_free": 2,
        "backoff_initial_s": 1.0,
        "backoff_max_s": 8.0,
        "max_sources": 16,
    }
    settings.update(overrides)
    return SourceGate(**settings)  # type: ignore[arg-type]


# -- the gate alone ----------------------------------------------------------------------


def test_slots_per_source_inside_the_global_cap() -> None:
    g = gate()
    assert [g.try_acquire("10.0.0.1", 0.0) for _ in range(3)] == [None, None, SOURCE_BUSY]
    assert g.try_acquire("10.0.0.2", 0.0) is None  # another source is not affected
    assert g.try_acquire("10.0.0.2", 0.0) is None
    assert g.try_acquire("10.0.0.3", 0.0) is None
    assert g.try_acquire("10.0.0.3", 0.0) is None
    assert g.try_acquire("10.0.0.4", 0.0) == BUSY  # all six slots held
    g.release("10.0.0.1")
    assert g.pending() == 5 and g.pending("10.0.0.1") == 1
    assert g.try_acquire("10.0.0.4", 0.0) is None


def test_a_failing_source_is_backed_off_for_a_doubling_period() -> None:
    g = gate()
    source = "10.0.0.9"
    assert [g.failed(source, t) for t in (0.0, 0.1)] == [None, None]  # the free failures
    assert g.failed(source, 0.2) == 1.0
    assert g.try_acquire(source, 1.1) == SOURCE_BACKOFF
    assert g.try_acquire("10.0.0.8", 1.1) is None
    assert g.try_acquire(source, 1.2) is None  # the back-off is over: one more try
    g.release(source)
    assert g.failed(source, 1.3) == 2.0
    assert g.failed(source, 3.4) == 4.0
    assert g.failed(source, 7.5) == 8.0
    assert g.failed(source, 15.6) == 8.0  # capped at backoff_max_s
    assert g.backed_off(16.0) == 1
    g.succeeded(source)  # one good handshake forgives the lot
    assert g.try_acquire(source, 16.0) is None
    assert [g.failed(source, t) for t in (16.1, 16.2, 16.3)] == [None, None, 1.0]


def test_failures_far_apart_are_not_consecutive() -> None:
    g = gate()
    source = "10.0.0.9"
    # An honest member that fails now and then (a restart mid-handshake) is never refused.
    assert [g.failed(source, 100.0 * i) for i in range(10)] == [None] * 10


def test_the_table_of_failing_sources_is_bounded() -> None:
    g = gate(max_sources=2, failures_free=0)
    assert g.failed("a", 0.0) == 1.0
    assert g.failed("b", 0.0) == 1.0
    assert g.failed("c", 0.0) == 1.0  # evicts "a", the one that failed longest ago
    assert g.try_acquire("a", 0.5) is None
    assert g.try_acquire("c", 0.5) == SOURCE_BACKOFF


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same /64: the same source
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("memory", "memory"),
    ],
)
def test_source_of(host: str, source: str) -> None:
    assert source_of(host) == source


# -- over memory streams (all of one source) -----------------------------------------------


async def garbage_handshake(transport: Transport) -> bytes:
    """Connect, send a bad handshake frame, return what came back before the close."""
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.serve_connection, server)
        await client.send_all(GARBAGE)
        received = b""
        while chunk := await client.receive_some():
            received += chunk
    return received


async def test_failing_handshakes_back_the_source_off_then_a_good_one_forgives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = TransportConfig(
        max_frame_bytes=MAX,
        source_failures_free=2,
        source_backoff_initial_s=1.0,
        source_backoff_max_s=8.0,
        log_interval_s=100.0,
    )
    transport = Transport(0, KEYS[0], PEERS, GENESIS, config)
    with capture_logs() as logs:
        for _ in range(3):
            await garbage_handshake(transport)
        stats = transport.stats()
        assert stats.handshakes_rejected == 3 and stats.source_backoffs == 1
        assert stats.sources_backed_off == 1

        # Refused at once: no handshake, nothing read.
        for _ in range(5):
            await garbage_handshake(transport)
        stats = transport.stats()
        assert stats.handshakes_rejected == 3
        assert stats.refusals[SOURCE_BACKOFF] == 5 and stats.connections_refused == 5

        await trio.sleep(1.0)
        await garbage_handshake(transport)  # one more try, one more failure: 2 s now
        assert transport.stats().handshakes_rejected == 4
        await trio.sleep(1.5)
        await garbage_handshake(transport)
        assert transport.stats().refusals[SOURCE_BACKOFF] == 6

        await trio.sleep(0.5)
        async with trio.open_nursery() as nursery:
            await connect_member(nursery, transport, 1)  # a member gets in and forgives
            nursery.cancel_scope.cancel()
        for _ in range(2):
            await garbage_handshake(transport)
        assert transport.stats().sources_backed_off == 0

    def events(name: str) -> list[dict[str, object]]:
        return [e for e in logs if e["event"] == name]

    # Once per source and event within the interval, whatever the count.
    assert [e["suppressed"] for e in events("handshake_rejected")] == [0]
    assert [e["suppressed"] for e in events("connection_refused")] == [0]
    assert [e["backoff_s"] for e in events("source_backed_off")] == [1.0]


async def test_probes_and_silent_connections_never_back_the_source_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = TransportConfig(max_frame_bytes=MAX, source_failures_free=0, handshake_timeout_s=1)
    transport = Transport(0, KEYS[0], PEERS, GENESIS, config)
    async with trio.open_nursery() as nursery:
        for _ in range(5):  # connect and close without a byte (a port probe)
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(transport.serve_connection, server)
            await client.aclose()
            await trio.testing.wait_all_tasks_blocked()  # one at a time: 4 slots per source
        silent = []
        for _ in range(3):  # connect and say nothing (or a dial a partition swallowed)
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(transport.serve_connection, server)
            silent.append(client)
        await trio.sleep(config.handshake_timeout_s)
    stats = transport.stats()
    assert stats.handshakes_rejected == 8
    assert stats.source_backoffs == 0 and stats.connections_refused == 0
    await garbage_handshake(transport)  # a bad frame is a failure: no free ones here
    assert transport.stats().source_backoffs == 1


# -- real sockets, two source addresses ------------------------------------------------------

SLOW_HANDSHAKES = TransportConfig(
    handshake_timeout_s=60.0,  # the squatters hold their slots for the whole test
    backoff_initial_s=0.01,
    backoff_max_s=0.2,
    max_handshakes_per_source=4,
    log_interval_s=60.0,
)


async def test_one_source_holding_its_slots_does_not_block_a_member_from_another() -> None:
    listeners = await bind(2)
    ports = [port_of(ls) for ls in listeners]
    peers = committee(ports)
    target = Transport(0, KEYS[0], peers, GENESIS, SLOW_HANDSHAKES, listeners=listeners[0])
    # Member 1 dials from 127.0.0.1; the squatter connects from 127.0.0.2.
    member = Transport(1, KEYS[1], peers, GENESIS, SLOW_HANDSHAKES, listeners=listeners[1])
    squatters: list[trio.SocketStream] = []
    with capture_logs() as logs, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(target.run)
            for _ in range(4):
                squatters.append(
                    await trio.open_tcp_stream("127.0.0.1", ports[0], local_address="127.0.0.2")
                )
            await wait_until(lambda: target.stats().handshakes_pending == 4)

            for _ in range(10):  # the squatter's fifth and later connections: refused at once
                extra = await trio.open_tcp_stream("127.0.0.1", ports[0], local_address="127.0.0.2")
                assert await extra.receive_some() == b""
                await extra.aclose()
            assert target.stats().refusals[SOURCE_BUSY] == 10

            await nursery.start(member.run)
            await wait_until(lambda: target.connected_peers() == {1})
            stats = target.stats()
            assert stats.handshakes_pending == 4  # the squatter still holds its slots
            assert stats.refusals[SOURCE_BUSY] == 10 and stats.handshakes_rejected == 0
            member.broadcast("through")
            assert await target.inbound.receive() == (1, "through")
            nursery.cancel_scope.cancel()
    for stream in squatters:
        await stream.aclose()
    refused = [e for e in logs if e["event"] == "connection_refused" and e["me"] == 0]
    assert [(e["source"], e["reason"], e["suppressed"]) for e in refused] == [
        ("127.0.0.2", SOURCE_BUSY, 0)
    ]
