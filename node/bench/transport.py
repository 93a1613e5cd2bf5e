"""`seqnet bench transport`: peer transport throughput over loopback.

Two `Transport`s in one process (one core does both ends) on 127.0.0.1 with real TCP,
the handshake and everything after it. A producer keeps member 0's queue for member 1
topped up; member 1's consumer counts what arrives. Each mode runs for `--duration`
seconds after a warm-up, `--rounds` times interleaved; the median round is reported.
The same run measures one send_all per frame (`max_batch_frames=1`), the limit that
batching is meant to lift, and unsealed records, the price of the AEAD; both are
reported as ratios beside the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any, Final

import structlog
import trio
from nacl.signing import SigningKey

from node.net.framing import HEADER_BYTES, pack
from node.net.transport import Peer, Transport, TransportConfig

GENESIS_HASH: Final = bytes(32)
BURST_FRAMES: Final = 64
QUEUE_FRAMES: Final = 8192


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    seal: bool
    batch_frames: int


MODES: Final = (
    Mode("batched, sealed", True, 256),
    Mode("batched, plain", False, 256),
    Mode("1 per send, sealed", True, 1),
    Mode("1 per send, plain", False, 1),
)


@dataclass(frozen=True, slots=True)
class Result:
    mode: str
    payload_bytes: int
    frames_per_s: float
    payload_mb_per_s: float
    wire_mb_per_s: float
    frames_per_send: float
    drops: int


def _message(payload_bytes: int) -> dict[str, Any]:
    """A message whose msgpack encoding is `payload_bytes` long (or the least possible)."""
    filler = max(0, payload_bytes - len(pack({"t": "bench", "d": b""})))
    while filler and len(pack({"t": "bench", "d": b"Z" * filler})) > payload_bytes:
        filler -= 1
    return {"t": "bench", "d": b"Z" * filler}


async def _measure(mode: Mode, payload_bytes: int, duration_s: float, warmup_s: float) -> Result:
    keys = [SigningKey.generate() for _ in range(2)]
    listeners = [await trio.open_tcp_listeners(0, host="127.0.0.1") for _ in range(2)]
    peers = {
        i: Peer("127.0.0.1", listeners[i][0].socket.getsockname()[1], bytes(keys[i].verify_key))
        for i in range(2)
    }
    message = _message(payload_bytes)
    encoded_bytes = len(pack(message))
    # The producer keeps the queue under QUEUE_FRAMES; the byte bound must not bind first.
    queue_bytes = max(TransportConfig().queue_bytes, QUEUE_FRAMES * (encoded_bytes + HEADER_BYTES))
    config = TransportConfig(
        seal=mode.seal,
        max_batch_frames=mode.batch_frames,
        queue_frames=QUEUE_FRAMES,
        queue_bytes=queue_bytes,
    )
    sender, receiver = (
        Transport(i, keys[i], peers, GENESIS_HASH, config, listeners=listeners[i]) for i in range(2)
    )
    received = 0

    async def produce() -> None:
        while True:
            if sender.queue_depth(1) < QUEUE_FRAMES - BURST_FRAMES:
                for _ in range(BURST_FRAMES):
                    sender.send(1, message)
            await trio.sleep(0)

    async def consume() -> None:
        # As a node's event loop should: drain what is there, block only when empty.
        nonlocal received
        inbound = receiver.inbound
        while True:
            try:
                inbound.receive_nowait()
            except trio.WouldBlock:
                await inbound.receive()
            received += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        await nursery.start(receiver.run)
        while len(sender.connected_peers()) < 1 or len(receiver.connected_peers()) < 1:
            await trio.sleep(0.01)
        nursery.start_soon(consume)
        nursery.start_soon(produce)
        await trio.sleep(warmup_s)
        frames_0, stats_0, time_0 = received, sender.stats().peers[1], trio.current_time()
        await trio.sleep(duration_s)
        frames_1, stats_1, time_1 = received, sender.stats().peers[1], trio.current_time()
        nursery.cancel_scope.cancel()
    elapsed_s = time_1 - time_0
    frames = frames_1 - frames_0
    sends = max(1, stats_1.batches_out - stats_0.batches_out)
    return Result(
        mode=mode.name,
        payload_bytes=encoded_bytes,
        frames_per_s=frames / elapsed_s,
        payload_mb_per_s=frames * encoded_bytes / elapsed_s / 1e6,
        wire_mb_per_s=(stats_1.bytes_out - stats_0.bytes_out) / elapsed_s / 1e6,
        frames_per_send=(stats_1.frames_out - stats_0.frames_out) / sends,
        drops=stats_1.drops,
    )


async def _run_all(
    sizes: list[int], duration_s: float, warmup_s: float, rounds: int
) -> list[Result]:
    """Every mode once per round, interleaved so that a noisy neighbour hits them alike;
    each mode reports its median round."""
    runs: dict[tuple[int, str], list[Result]] = {}
    for _ in range(rounds):
        for size in sizes:
            for mode in MODES:
                result = await _measure(mode, size, duration_s, warmup_s)
                runs.setdefault((size, mode.name), []).append(result)
    return [
        sorted(results, key=lambda r: r.frames_per_s)[len(results) // 2]
        for results in runs.values()
    ]


def _summary(results: list[Result], sizes: list[int]) -> dict[str, Any]:
    def rate(size: int, mode: Mode) -> float:
        (row,) = [r for r in results if r.mode == mode.name and r.payload_bytes == size]
        return row.frames_per_s

    small = sizes[0]
    batched, plain, single = (rate(small, MODES[i]) for i in range(3))
    head = next(r for r in results if r.mode == MODES[0].name and r.payload_bytes == small)
    return {
        "payload_bytes": small,
        "frames_per_s": round(batched),
        "mb_per_s": round(head.payload_mb_per_s, 2),
        "single_send_frames_per_s": round(single),
        "ratio_vs_single_send": round(batched / single, 2),
        "plain_frames_per_s": round(plain),
        "sealed_vs_plain": round(batched / plain, 3),
        "rows": [asdict(r) for r in results],
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _table(results: list[Result]) -> str:
    lines = [
        f"{'mode':<20} {'payload B':>9} {'frames/s':>10} {'MB/s':>8} {'wire MB/s':>9} "
        f"{'frames/send':>11} {'drops':>6}"
    ]
    for r in results:
        lines.append(
            f"{r.mode:<20} {r.payload_bytes:>9} {r.frames_per_s:>10,.0f} "
            f"{r.payload_mb_per_s:>8.2f} {r.wire_mb_per_s:>9.2f} {r.frames_per_send:>11.1f} "
            f"{r.drops:>6}"
        )
    return "\n".join(lines)


def main(argv: list[str], prog: str = "seqnet bench transport") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=0.5, help="seconds per mode")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode (median)")
    parser.add_argument("--warmup", type=float, default=0.2, help="seconds before measuring")
    parser.add_argument(
        "--sizes", default="128,4096", help="message sizes in bytes (msgpack), comma separated"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    # Connection logs would drown the table; the bench only wants warnings.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    results = trio.run(_run_all, sizes, args.duration, args.warmup, args.rounds)
    summary = _summary(results, [r.payload_bytes for r in results[:: len(MODES)]])
    if args.json:
        print(json.dumps(summary))
        return 0
    print(_table(results))
    print()
    print(
        f"batched vs one send per frame: {summary['ratio_vs_single_send']}x; "
        f"sealed vs plain (batched): {summary['sealed_vs_plain']}x "
        f"({summary['payload_bytes']} B messages, both ends on one core)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
