"""`seqnet bench api`: signed-intent intake through the client API of one node.

The server is the real app (node/api/app.py on hypercorn's trio worker) over `LocalFacade`,
which does the node's real intake work per intent (EIP-712 digest, secp256k1 recovery,
mempool admission) with a timer standing in for consensus. It runs in a child process,
so the load generator in this process has the other core. Measured:

- intents/s accepted through HTTP batches (`--batch` per POST, `--http-concurrency`
  requests in flight) and through the WebSocket intake (JSON text and msgpack binary
  frames, `--ws-batch` intents per message, `--ws-inflight` messages pipelined);
- round-trip p50/p99 of a single-order HTTP submit, one at a time;
- the same core's signature checks/s (`node.intents.verify_rate`), the physical limit of
  a node that verifies on one core, reported as the ratio beside each rate; and the
  API's own per-intent cost before the node (JSON parse + intent decode), as a rate.

The server's CPU use in each phase (share of one core, from /proc) says whether the
server or the client was the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

import httpx
import msgpack
import orjson
import structlog
import trio
from trio_websocket import open_websocket_url

from node.api.app import ApiLimits, create_app, serve_api
from node.api.intake import decode_http_body
from node.api.local import LocalFacade
from node.intents import (
    Domain,
    SignedIntent,
    address_of_private_key,
    intent_to_json,
    pack_intent,
    place_action,
    sign_intent,
    verify_rate,
)
from node.mempool import MempoolLimits

DOMAIN: Final = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
ACCOUNTS: Final = 64
BLOCK_INTERVAL_S: Final = 0.005
LATENCY_WARMUP: Final = 50
PLACE: Final = place_action(0, "buy", 3_000_000, 2_000_000)
BENCH_LIMITS: Final = ApiLimits(
    ip_limit=None, account_limit=None, max_body_bytes=4 * 1024 * 1024, ws_max_inflight_messages=64
)


# ---------------------------------------------------------------------------------------
# Server (child process)


def _serve_child(conn: Connection) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    facade = LocalFacade(DOMAIN, MempoolLimits(max_items=2_000_000, max_per_account=1_000_000))

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_api, create_app(facade, BENCH_LIMITS), "127.0.0.1", 0)
            nursery.start_soon(facade.run, BLOCK_INTERVAL_S)
            conn.send(port)

    trio.run(run)


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------
# Load


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    intents: int
    elapsed_s: float
    server_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.intents / self.elapsed_s

    @property
    def server_core_share(self) -> float:
        return self.server_cpu_s / self.elapsed_s


def _sign(count: int) -> list[SignedIntent]:
    keys = [(i + 1).to_bytes(32, "big") for i in range(ACCOUNTS)]
    accounts = [address_of_private_key(key) for key in keys]
    nonce = int(time.time() * 1000)
    return [
        sign_intent(keys[i % ACCOUNTS], accounts[i % ACCOUNTS], nonce + i, PLACE, DOMAIN)
        for i in range(count)
    ]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _accepted(results: list[dict[str, Any]]) -> int:
    bad = [r for r in results if r["status"] != "accepted"]
    assert not bad, f"intents refused: {bad[:3]}"
    return len(results)


async def _http_batches(
    url: str, pid: int, intents: list[SignedIntent], batch: int, concurrency: int
) -> Phase:
    bodies = [
        orjson.dumps({"intents": [intent_to_json(i) for i in chunk]})
        for chunk in _chunks(intents, batch)
    ]
    queue = iter(bodies)
    done = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal done
        for body in queue:
            response = await http.post(
                "/v1/intents", content=body, headers={"content-type": "application/json"}
            )
            done += _accepted(response.json()["results"])

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        cpu_0, start = _cpu_s(pid), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker, http)
        elapsed, cpu = time.perf_counter() - start, _cpu_s(pid) - cpu_0
    return Phase("http batches", done, elapsed, cpu)


async def _ws_pipelined(
    url: str, pid: int, intents: list[SignedIntent], batch: int, inflight: int, binary: bool
) -> Phase:
    if binary:
        frames: list[str | bytes] = [
            msgpack.packb({"id": n, "intents": [pack_intent(i) for i in chunk]})
            for n, chunk in enumerate(_chunks(intents, batch))
        ]
    else:
        frames = [
            orjson.dumps({"id": n, "intents": [intent_to_json(i) for i in chunk]}).decode()
            for n, chunk in enumerate(_chunks(intents, batch))
        ]
    slots = trio.Semaphore(inflight)
    done = 0
    ws_url = url.replace("http://", "ws://") + "/v1/ws"
    async with open_websocket_url(ws_url, max_message_size=64 * 1024 * 1024) as ws:
        cpu_0, start = _cpu_s(pid), time.perf_counter()

        async def send_all() -> None:
            for frame in frames:
                await slots.acquire()
                await ws.send_message(frame)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            for _ in frames:
                message = await ws.get_message()
                answer = msgpack.unpackb(message) if binary else orjson.loads(message)
                done += _accepted(answer["results"])
                slots.release()
        elapsed, cpu = time.perf_counter() - start, _cpu_s(pid) - cpu_0
    return Phase("ws msgpack" if binary else "ws json", done, elapsed, cpu)


async def _single_latency_ms(url: str, intents: list[SignedIntent]) -> list[float]:
    bodies = [orjson.dumps(intent_to_json(i)) for i in intents]
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=url) as http:
        for n, body in enumerate(bodies):
            start = time.perf_counter()
            response = await http.post(
                "/v1/intents", content=body, headers={"content-type": "application/json"}
            )
            elapsed_ms = (time.perf_counter() - start) * 1000
            _accepted(response.json()["results"])
            if n >= LATENCY_WARMUP:
                samples.append(elapsed_ms)
    return samples


def _parse_per_s(intents: list[SignedIntent]) -> float:
    """The API's own work per intent before the node: JSON parse and intent decode."""
    body = orjson.dumps({"intents": [intent_to_json(i) for i in intents[:1000]]})
    limits = ApiLimits(max_body_bytes=len(body) + 1, max_batch_intents=1000)
    rounds = 5
    start = time.perf_counter()
    for _ in range(rounds):
        decode_http_body(body, limits)
    return rounds * min(1000, len(intents)) / (time.perf_counter() - start)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------------------
# Report


def _run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.intents
    print(f"signing {3 * n + args.latency_samples + LATENCY_WARMUP} intents…", file=sys.stderr)
    intents = _sign(3 * n + args.latency_samples + LATENCY_WARMUP)
    http_set, ws_json_set, ws_pack_set = intents[:n], intents[n : 2 * n], intents[2 * n : 3 * n]
    latency_set = intents[3 * n :]
    verify_per_s = verify_rate(4000)
    parse_per_s = _parse_per_s(intents)

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_serve_child, args=(child,), daemon=True)
    server.start()
    try:
        port = parent.recv()
        url = f"http://127.0.0.1:{port}"
        pid = server.pid
        assert pid is not None

        async def load() -> tuple[list[Phase], list[float]]:
            phases = [
                await _http_batches(url, pid, http_set, args.batch, args.http_concurrency),
                await _ws_pipelined(url, pid, ws_json_set, args.ws_batch, args.ws_inflight, False),
                await _ws_pipelined(url, pid, ws_pack_set, args.ws_batch, args.ws_inflight, True),
            ]
            return phases, await _single_latency_ms(url, latency_set)

        phases, latencies_ms = trio.run(load)
    finally:
        server.terminate()
        server.join(5)
    http, ws_json, ws_pack = phases
    return {
        "http_intents_per_s": round(http.per_s),
        "ws_json_intents_per_s": round(ws_json.per_s),
        "ws_msgpack_intents_per_s": round(ws_pack.per_s),
        "submit_latency_ms_p50": round(statistics.median(latencies_ms), 3),
        "submit_latency_ms_p99": round(_percentile(latencies_ms, 0.99), 3),
        "verify_per_s": round(verify_per_s),
        "ratio_http_vs_verify": round(http.per_s / verify_per_s, 3),
        "ratio_ws_json_vs_verify": round(ws_json.per_s / verify_per_s, 3),
        "ratio_ws_msgpack_vs_verify": round(ws_pack.per_s / verify_per_s, 3),
        "parse_per_s": round(parse_per_s),
        "ratio_parse_vs_verify": round(parse_per_s / verify_per_s, 2),
        "server_core_share": {p.name: round(p.server_core_share, 2) for p in phases},
        "intents_per_phase": n,
        "http_batch": args.batch,
        "http_concurrency": args.http_concurrency,
        "ws_batch": args.ws_batch,
        "ws_inflight": args.ws_inflight,
        "latency_samples": len(latencies_ms),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _table(r: dict[str, Any]) -> str:
    verify = r["verify_per_s"]
    share = r["server_core_share"]
    rows = [
        ("HTTP batches", r["http_intents_per_s"], share["http batches"]),
        ("WebSocket JSON", r["ws_json_intents_per_s"], share["ws json"]),
        ("WebSocket msgpack", r["ws_msgpack_intents_per_s"], share["ws msgpack"]),
    ]
    lines = [f"{'intake':<20} {'intents/s':>10} {'vs verify':>10} {'server core':>12}"]
    for name, rate, core in rows:
        lines.append(f"{name:<20} {rate:>10,} {rate / verify:>9.2f}x {core:>11.0%}")
    lines += [
        "",
        f"single-order HTTP submit: p50 {r['submit_latency_ms_p50']:.2f} ms, "
        f"p99 {r['submit_latency_ms_p99']:.2f} ms ({r['latency_samples']} sequential requests)",
        f"signature checks on one core: {verify:,}/s; API decode alone: "
        f"{r['parse_per_s']:,} intents/s ({r['ratio_parse_vs_verify']}x verify)",
    ]
    return "\n".join(lines)


def main(argv: list[str], prog: str = "seqnet bench api") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=20_000, help="intents per phase")
    parser.add_argument("--batch", type=int, default=500, help="intents per HTTP request")
    parser.add_argument("--http-concurrency", type=int, default=4, help="HTTP requests in flight")
    parser.add_argument("--ws-batch", type=int, default=100, help="intents per WS message")
    parser.add_argument("--ws-inflight", type=int, default=16, help="WS messages in flight")
    parser.add_argument("--latency-samples", type=int, default=1000, help="single submits")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    result = _run(args)
    print(json.dumps(result) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
