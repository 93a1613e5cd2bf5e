"""The fault proxy's byte pump on trio memory streams (MockClock) and one loopback run
of ProxyNet: pass, delay with order kept, bandwidth cap, drop, partition and heal."""

from __future__ import annotations

import random

import trio
import trio.testing

from node.chaos.proxy import LinkFaults, ProxyNet, ProxyStats, pump, serve_listener


async def _pumped(
    faults: LinkFaults, chunks: list[bytes], gap_s: float = 0.0
) -> list[tuple[float, bytes]]:
    """Send chunks through a pump; return (arrival time, bytes) of each receive."""
    a_send, a_recv = trio.testing.memory_stream_one_way_pair()
    b_send, b_recv = trio.testing.memory_stream_one_way_pair()
    got: list[tuple[float, bytes]] = []
    total = sum(len(c) for c in chunks)

    async def source() -> None:
        for chunk in chunks:
            await a_send.send_all(chunk)
            await trio.sleep(gap_s)
        await a_send.aclose()

    async def sink() -> None:
        size = 0
        while size < total:
            data = await b_recv.receive_some()
            if not data:
                break
            got.append((trio.current_time(), bytes(data)))
            size += len(data)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, a_recv, b_send, lambda: faults, random.Random(1))
            nursery.start_soon(source)
            await sink()
            nursery.cancel_scope.cancel()
    return got


async def test_pass_forwards_bytes_unchanged() -> None:
    got = await _pumped(LinkFaults(), [b"hello ", b"world"])
    assert b"".join(d for _, d in got) == b"hello world"


async def test_delay_and_jitter_keep_order(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    start = trio.current_time()
    chunks = [bytes([i]) * 10 for i in range(20)]
    got = await _pumped(LinkFaults(delay_ms=100, jitter_ms=80), chunks, gap_s=0.01)
    assert b"".join(d for _, d in got) == b"".join(chunks)
    assert got[0][0] - start >= 0.1 - 0.08
    times = [t for t, _ in got]
    assert times == sorted(times)


async def test_bandwidth_cap_paces_bytes(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    start = trio.current_time()
    got = await _pumped(LinkFaults(bandwidth_bytes_per_s=10_000), [b"x" * 5000] * 10)
    assert sum(len(d) for _, d in got) == 50_000
    assert got[-1][0] - start >= 4.9  # 50 kB at 10 kB/s


async def test_reorder_holds_chunks_but_bytes_stay_in_order(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.autojump_threshold = 0
    chunks = [bytes([i]) * 3 for i in range(50)]
    got = await _pumped(LinkFaults(reorder_rate=0.5, reorder_window_ms=200), chunks, 0.001)
    assert b"".join(d for _, d in got) == b"".join(chunks)


async def test_drop_discards_everything() -> None:
    a_send, a_recv = trio.testing.memory_stream_one_way_pair()
    b_send, b_recv = trio.testing.memory_stream_one_way_pair()
    stats = ProxyStats()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            pump, a_recv, b_send, lambda: LinkFaults(drop=True), random.Random(1), stats
        )
        await a_send.send_all(b"lost" * 100)
        await a_send.aclose()
    assert stats.bytes_dropped == 400 and stats.bytes_forwarded == 0
    with trio.move_on_after(0.05):
        assert await b_recv.receive_some() == b""


async def _echo_server(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(echo, listeners)


async def test_loopback_partition_and_heal() -> None:
    net = ProxyNet(2, seed=3)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_echo_server)
            listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
            proxy_port = listener.socket.getsockname()[1]
            nursery.start_soon(serve_listener, net, listener, 1, ("127.0.0.1", port), 0)

            stream = await trio.open_tcp_stream("127.0.0.1", proxy_port)
            await stream.send_all(b"ping")
            assert await stream.receive_some() == b"ping"

            net.partition({0}, {1})  # cuts the live connection
            assert await stream.receive_some() == b""
            cut = await trio.open_tcp_stream("127.0.0.1", proxy_port)
            await cut.send_all(b"anyone?")
            with trio.move_on_after(0.3) as silent:
                await cut.receive_some()
            assert silent.cancelled_caught  # held silently, like a lost SYN/ACK

            net.heal()  # the held connection lost bytes: it is cut
            assert await cut.receive_some() == b""
            fresh = await trio.open_tcp_stream("127.0.0.1", proxy_port)
            await fresh.send_all(b"back")
            assert await fresh.receive_some() == b"back"
            assert net.stats.connections_cut >= 2
            nursery.cancel_scope.cancel()


async def test_faults_apply_per_direction() -> None:
    net = ProxyNet(2, seed=4)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_echo_server)
            listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
            proxy_port = listener.socket.getsockname()[1]
            nursery.start_soon(serve_listener, net, listener, 1, ("127.0.0.1", port), 0)
            net.set_faults(1, 0, LinkFaults(delay_ms=50))
            stream = await trio.open_tcp_stream("127.0.0.1", proxy_port)
            start = trio.current_time()
            await stream.send_all(b"slow echo")
            assert await stream.receive_some() == b"slow echo"
            assert trio.current_time() - start >= 0.05
            assert net.faults(0, 1).clean
            nursery.cancel_scope.cancel()
