"""Transports on real sockets (127.0.0.1, ephemeral ports): a full mesh, a member killed
and restarted, and hostile connections that must not disturb the others."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio
from nacl.signing import SigningKey
from structlog.testing import capture_logs

from node.net.framing import header
from node.net.handshake import Identity, initiate
from node.net.transport import Peer, Transport, TransportConfig

GENESIS = b"\x47" * 32
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
HOST = "127.0.0.1"
CONFIG = TransportConfig(handshake_timeout_s=2.0, backoff_initial_s=0.01, backoff_max_s=0.2)
DEADLINE_S = 10


async def bind(count: int) -> list[list[trio.SocketListener]]:
    return [await trio.open_tcp_listeners(0, host=HOST) for _ in range(count)]


def port_of(listeners: Sequence[trio.SocketListener]) -> int:
    port: int = listeners[0].socket.getsockname()[1]
    return port


def committee(ports: Sequence[int]) -> dict[int, Peer]:
    return {i: Peer(HOST, port, bytes(KEYS[i].verify_key)) for i, port in enumerate(ports)}


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        await trio.sleep(0.01)


def meshed(transports: Sequence[Transport]) -> Callable[[], bool]:
    ids = {t_id for t_id in range(len(transports))}
    return lambda: all(t.connected_peers() == ids - {i} for i, t in enumerate(transports))


async def receive(transport: Transport, count: int) -> list[tuple[int, Any]]:
    return [await transport.inbound.receive() for _ in range(count)]


async def test_full_mesh_delivers_broadcasts_once_and_unicasts() -> None:
    listeners = await bind(4)
    peers = committee([port_of(ls) for ls in listeners])
    transports = [
        Transport(i, KEYS[i], peers, GENESIS, CONFIG, listeners=listeners[i]) for i in range(4)
    ]
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            for transport in transports:
                await nursery.start(transport.run)
            await wait_until(meshed(transports))
            for i, transport in enumerate(transports):
                transport.broadcast({"from": i, "blob": bytes([i]) * 10})
            for i, transport in enumerate(transports):
                got = await receive(transport, 3)
                assert sorted(got) == [
                    (j, {"from": j, "blob": bytes([j]) * 10}) for j in range(4) if j != i
                ]
            # Nothing was duplicated: the next message on each link is the next one sent.
            transports[0].send(3, "direct")
            transports[2].send(3, ["second", 2])
            assert sorted(await receive(transports[3], 2)) == [(0, "direct"), (2, ["second", 2])]
            for transport in transports:
                for stats in transport.stats().peers.values():
                    assert stats.connected and stats.protocol_errors == 0
                    assert stats.connects >= 1 and stats.queue_depth == 0
            nursery.cancel_scope.cancel()


async def run_killable(
    transport: Transport, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            task_status.started(scope)


async def test_killed_member_is_redialed_with_backoff_and_rejoins() -> None:
    listeners = await bind(4)
    ports = [port_of(ls) for ls in listeners]
    peers = committee(ports)
    transports = [
        Transport(i, KEYS[i], peers, GENESIS, CONFIG, listeners=listeners[i]) for i in range(4)
    ]
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            for transport in transports[:3]:
                await nursery.start(transport.run)
            victim: trio.CancelScope = await nursery.start(run_killable, transports[3])
            await wait_until(meshed(transports))

            victim.cancel()
            survivors = transports[:3]
            await wait_until(lambda: all(3 not in t.connected_peers() for t in survivors))
            # Everyone keeps trying (and failing) to reach member 3, backing off.
            await wait_until(lambda: all(t.stats().peers[3].dial_failures >= 2 for t in survivors))
            assert transports[0].connected_peers() == {1, 2}
            for survivor in survivors:  # frames for the dead member wait in its queue
                survivor.send(3, "while you were out")

            reborn = Transport(
                3,
                KEYS[3],
                peers,
                GENESIS,
                CONFIG,
                listeners=await trio.open_tcp_listeners(ports[3], host=HOST),
            )
            await nursery.start(reborn.run)
            transports[3] = reborn
            await wait_until(meshed(transports))
            assert sorted(await receive(reborn, 3)) == [(i, "while you were out") for i in range(3)]
            reborn.broadcast("back")
            for survivor in survivors:
                assert await survivor.inbound.receive() == (3, "back")
                assert survivor.stats().peers[3].connects >= 2
            nursery.cancel_scope.cancel()


async def expect_closed(stream: trio.abc.Stream) -> None:
    while await stream.receive_some():
        pass


async def test_hostile_connections_are_dropped_and_the_others_keep_working() -> None:
    listeners = await bind(4)
    ports = [port_of(ls) for ls in listeners]
    for listener in listeners[3]:  # member 3 is only ever the test's hand-driven client
        await listener.aclose()
    peers = committee(ports)
    members = {i: k.verify_key for i, k in enumerate(KEYS)}
    with capture_logs() as logs, trio.fail_after(DEADLINE_S):
        transports = [
            Transport(i, KEYS[i], peers, GENESIS, CONFIG, listeners=listeners[i]) for i in range(3)
        ]
        target = transports[0]
        async with trio.open_nursery() as nursery:
            for transport in transports:
                await nursery.start(transport.run)
            await wait_until(lambda: all(len(t.connected_peers()) == 2 for t in transports))

            # Unauthenticated garbage: refused in the handshake.
            for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff\xff\xff\xff", b"\x00"):
                stream = await trio.open_tcp_stream(HOST, ports[0])
                await stream.send_all(garbage)
                if garbage == b"\x00":
                    await stream.send_eof()
                await expect_closed(stream)
                await stream.aclose()

            # An authenticated member that then sends an oversized frame, or a garbage record.
            for bad in (header(2**32 - 1), header(64) + bytes(64)):
                stream = await trio.open_tcp_stream(HOST, ports[0])
                identity = Identity(3, KEYS[3], members, GENESIS)
                await initiate(stream, identity, 0, timeout_s=2.0)
                await stream.send_all(bad)
                await expect_closed(stream)
                await stream.aclose()
            await wait_until(lambda: target.stats().peers[3].protocol_errors == 2)

            stats = target.stats()
            assert stats.handshakes_rejected == 3
            # Two violations count against member 3, far from a ban.
            assert stats.peers[3].penalties == 2 and not stats.peers[3].banned
            assert stats.peers[3].connects == 2 and not stats.peers[3].connected
            # The committee did not notice.
            assert target.connected_peers() == {1, 2}
            assert all(stats.peers[i].connects == 1 for i in (1, 2))
            transports[1].broadcast("still here")
            for i in (0, 2):
                assert await transports[i].inbound.receive() == (1, "still here")
            nursery.cancel_scope.cancel()

    # One line per source and per peer within the log interval; the counters have the rest.
    rejected = [e for e in logs if e["event"] == "handshake_rejected" and e["me"] == 0]
    assert [(e["direction"], e["suppressed"]) for e in rejected] == [("inbound", 0)]
    assert "bad handshake frame" in rejected[0]["reason"]
    violations = [
        e for e in logs if e["event"] == "peer_disconnected" and e["me"] == 0 and e["peer"] == 3
    ]
    assert len(violations) == 1 and violations[0]["log_level"] == "warning"
    assert "record of 4294967295 bytes exceeds" in violations[0]["reason"]


async def test_run_binds_my_own_address_and_closes_inbound_when_stopped() -> None:
    peers = committee([0, 1])  # port 0: any free port; member 1 is never reached
    transport = Transport(0, KEYS[0], peers, GENESIS, CONFIG)
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(transport.run)
            assert [host for host, _ in addresses] == [HOST]
            assert all(port > 0 for _, port in addresses)
            nursery.cancel_scope.cancel()
    assert [message async for message in transport.inbound] == []
