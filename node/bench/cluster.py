"""`seqnet bench cluster`: a local committee of real processes under signed-intent load.

Starts `--nodes N` members with `seqnet localnet` in a temporary folder; this process is
the load generator. Intents are signed before the clock starts (the load process must
not be the bottleneck it measures), then sent over HTTP with `wait=committed`, so the
latency is submission to commit as the submitting client sees it. Two phases:

- saturation: `--clients` concurrent clients, each sending batches of `--batch` intents
  to the nodes in turn, for `--duration` seconds: committed intents/s, latency p50/p99;
- light load: single intents at 200/s for `--light-duration` seconds: latency p50/p99.

The same run measures secp256k1 recoveries/s on one core; every node checks every
signature, so the committee cannot exceed cores × recoveries/s ÷ N, and the report gives
the ratio of the measured throughput to that limit.

Caveat recorded in docs/BENCHMARKS.md: accounts are not funded (deposits come with the
settlement loop), so the engine rejects the orders for lack of balance after ordering
them; ordering, signatures, storage and execution of the entry all happen.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import h11
import orjson
import trio

from node.config import usable_cores
from node.genesis import load_genesis
from node.intents import (
    Domain,
    address_of_private_key,
    intent_to_json,
    place_action,
    sign_intent,
    verify_rate,
)
from node.localnet import down, up


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sign_many(domain: Domain, count: int, accounts: int = 500) -> list[bytes]:
    """Pre-signed intents as JSON bytes, unique (signer, nonce) pairs, nonces near now."""
    keys = [(0x5EED0000 + i).to_bytes(32, "big") for i in range(accounts)]
    addresses = [address_of_private_key(k) for k in keys]
    base = time.time_ns() // 1_000_000
    out = []
    for i in range(count):
        k = i % accounts
        action = place_action(0, "buy" if i % 2 else "sell", 3_000_000 + 10 * (i % 50), 10**6)
        si = sign_intent(keys[k], addresses[k], base + i // accounts, action, domain)
        out.append(orjson.dumps(intent_to_json(si)))
    return out


class _Connection:
    """One keep-alive HTTP/1.1 connection driven by h11 directly. The load generator
    shares the 2 cores with the committee it measures: httpx (with anyio and httpcore
    under it) spent ~1.9 ms of CPU per request here, this ~0.2 ms."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self._stream = stream
        self._host = host
        self._h11 = h11.Connection(h11.CLIENT)

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        conn = self._h11
        headers = [
            ("Host", self._host),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]
        data = conn.send(h11.Request(method="POST", target=target, headers=headers)) or b""
        data += (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
        await self._stream.send_all(data)
        status, chunks = 0, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                received = await self._stream.receive_some(1 << 16)
                conn.receive_data(received)
                if not received:
                    raise ConnectionError("server closed the connection")
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        conn.start_next_cycle()
        return status, b"".join(chunks)


class _Client:
    """A pool of keep-alive connections to one node; a request takes an idle one or
    opens a new one (up to `size`)."""

    def __init__(self, url: str, size: int) -> None:
        address = url.removeprefix("http://")
        host, _, port = address.partition(":")
        self._host, self._port, self._address = host, int(port), address
        self._idle: list[_Connection] = []
        self._slots = trio.Semaphore(size)

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is not None:
                try:
                    result = await conn.post(target, body)
                except (ConnectionError, trio.BrokenResourceError, h11.RemoteProtocolError):
                    # The server closed it while idle (keep-alive timeout). Sending the
                    # batch again is safe: an intent resubmitted is answered, not doubled.
                    conn = None
            if conn is None:
                stream = await trio.open_tcp_stream(self._host, self._port)
                conn = _Connection(stream, self._address)
                result = await conn.post(target, body)
            self._idle.append(conn)  # only a connection that finished its answer
            return result


async def _post_batch(client: _Client, intents: list[bytes]) -> tuple[int, float]:
    body = b'{"intents":[' + b",".join(intents) + b"]}"
    start = time.perf_counter()
    status, answer = await client.post("/v1/intents?wait=committed&timeout_ms=30000", body)
    elapsed = time.perf_counter() - start
    results = orjson.loads(answer).get("results", []) if status == 200 else []
    committed = sum(1 for r in results if r.get("height") is not None)
    return committed, elapsed


async def _saturation(
    apis: list[str], intents: list[bytes], clients: int, batch: int, duration_s: float
) -> dict[str, Any]:
    pools = [_Client(api, clients) for api in apis]
    latencies: list[float] = []
    committed = 0
    cursor = 0
    deadline = time.perf_counter() + duration_s

    async def client_loop(index: int) -> None:
        nonlocal committed, cursor
        while time.perf_counter() < deadline and cursor < len(intents):
            chunk = intents[cursor : cursor + batch]
            cursor += batch
            done, elapsed = await _post_batch(pools[(index + cursor // batch) % len(pools)], chunk)
            committed += done
            latencies.extend([elapsed] * done)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client_loop, i)
    elapsed = time.perf_counter() - start
    return {
        "committed": committed,
        "elapsed_s": elapsed,
        "committed_per_s": committed / elapsed,
        "latency_ms_p50": 1000 * _percentile(latencies, 0.5),
        "latency_ms_p99": 1000 * _percentile(latencies, 0.99),
    }


async def _light(apis: list[str], intents: list[bytes], rate_per_s: float) -> dict[str, Any]:
    pools = [_Client(api, 64) for api in apis]
    latencies: list[float] = []

    async def one(i: int, intent: bytes) -> None:
        done, elapsed = await _post_batch(pools[i % len(pools)], [intent])
        if done:
            latencies.append(elapsed)

    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        for i, intent in enumerate(intents):
            await trio.sleep_until(start + i / rate_per_s)
            nursery.start_soon(one, i, intent)
    return {
        "light_committed": len(latencies),
        "light_latency_ms_p50": 1000 * _percentile(latencies, 0.5),
        "light_latency_ms_p99": 1000 * _percentile(latencies, 0.99),
        "light_latency_ms_mean": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
    }


def _drain(apis: list[str], timeout_s: float = 60.0) -> None:
    """Wait until every node's mempool is empty."""
    from node.localnet import node_status

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = [node_status(api) for api in apis]
        if all(s is not None and s.get("mempool") == 0 for s in statuses):
            return
        time.sleep(0.2)


def run(
    nodes: int, duration_s: float, light_s: float, clients: int, batch: int, base_port: int
) -> dict[str, Any]:
    # The limit is measured on a quiet machine, before the committee starts and after it
    # stopped, three times each; the median is used (one short sample here moves by
    # ±20 % between runs on a shared host, and the ratio with it).
    rates = [verify_rate(2000) for _ in range(3)]
    cores = usable_cores()
    sig_limit = cores * statistics.median(rates) / nodes
    with tempfile.TemporaryDirectory(prefix="seqnet-bench-") as tmp:
        net = up(Path(tmp) / "net", nodes, base_port, timeout_s=60)
        try:
            domain = load_genesis(Path(net.folder) / "genesis.toml").domain()
            apis = [n.api for n in net.nodes]
            expected = int(max(sig_limit, 1000) * duration_s * 1.2)
            saturation_intents = _sign_many(domain, expected)
            light_intents = _sign_many(domain, int(200 * light_s), accounts=200)
            sat = trio.run(_saturation, apis, saturation_intents, clients, batch, duration_s)
            _drain(apis)  # the light phase must not queue behind the saturation backlog
            light = trio.run(_light, apis, light_intents, 200.0)
        finally:
            down(net)
    rates += [verify_rate(2000) for _ in range(3)]
    recover_per_s = statistics.median(rates)
    sig_limit = cores * recover_per_s / nodes
    return {
        "nodes": nodes,
        "cores": cores,
        "duration_s": duration_s,
        "clients": clients,
        "batch": batch,
        **sat,
        **light,
        "recover_per_s": recover_per_s,
        "recover_per_s_min": min(rates),
        "recover_per_s_max": max(rates),
        "sig_limit_per_s": sig_limit,
        "ratio_vs_sig_limit": sat["committed_per_s"] / sig_limit,
    }


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0, help="saturation seconds")
    parser.add_argument("--light-duration", type=float, default=10.0, help="light-load seconds")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--base-port", type=int, default=27000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(
        args.nodes, args.duration, args.light_duration, args.clients, args.batch, args.base_port
    )
    if args.json:
        print(json.dumps(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"seqnet bench cluster --nodes {args.nodes}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
    Console().print(table)
    return 0
