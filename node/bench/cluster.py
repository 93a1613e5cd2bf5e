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

With `--crash K` (K ≤ f) the two phases run twice in one committee: healthy, then with
the last K members stopped by SIGKILL. After the kill the survivors must commit again
and `--settle` seconds pass before the second load; the clients then talk only to the
survivors. The report gives every figure for both, and the same-run ratios
`ratio_one_down` (committed/s one down ÷ healthy) and `light_latency_p50_ratio_one_down`
(light p50 one down ÷ healthy). It measures whatever leader election the members run.

With `--encrypted` the healthy committee is measured a second time, in the same run,
with every intent sealed to the committee key (docs/PROTOCOL.md §10; sealed before the
clock starts, like the signatures): committed/s and latency p50/p99 at saturation, and
p50/p99 at a light load of ENCRYPTED_LIGHT_RATE_PER_S for encrypted intents and again
for plain ones at that rate; `ratio_encrypted_vs_plain` (encrypted committed/s ÷ plain)
and `light_latency_ms_p50_added_encrypted` (encrypted light p50 − plain light p50 at the
same rate: the decryption-share round trip and the opening).

The encrypted figures come with their physical limit, measured in the same process
after the committee stopped (`seqnet bench fairness`'s operations, for this n and t =
f + 1): per envelope each member checks it at intake, makes its share with a proof,
checks t − 1 peers' shares, combines t and opens the body; the inner intent's signature
is a plain intent's cost too. So the committee's CPU per envelope is at least its CPU
per plain intent (cores ÷ plain committed/s) plus n × that curve work:
`encrypted_bound_per_s` = cores ÷ (cores ÷ plain/s + n × `encrypted_extra_ms_per_member`),
and `ratio_encrypted_bound_vs_plain` is the highest `ratio_encrypted_vs_plain` this
scheme can reach on this machine with these members sharing its cores (nothing but the
curve work added); `ratio_encrypted_vs_bound` says how much of it the runtime reaches.

Caveat recorded in docs/BENCHMARKS.md: accounts are not funded (deposits come with the
settlement loop), so the engine rejects the orders for lack of balance after ordering
them; ordering, signatures, storage and execution of the entry all happen.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import orjson
import trio

from node.config import usable_cores
from node.fairness.threshold import ThresholdPublicKey
from node.genesis import load_genesis
from node.intents import (
    Domain,
    address_of_private_key,
    intent_to_json,
    place_action,
    sign_intent,
    verify_rate,
)
from node.localnet import Localnet, NodeProcess, down, node_status, up
from node.procs import free_base_port, pid_alive
from seqnet_sdk.encrypted import encrypt_intent

LIGHT_RATE_PER_S = 200.0
# Light load for the encrypted comparison: well under the encrypted saturation rate (a
# 2-core host commits ~150 envelopes/s), so latency is not queueing; plain intents are
# measured again at the same rate, in the same run, for the added latency.
ENCRYPTED_LIGHT_RATE_PER_S = 20.0
# Connections per node in the light phase. Latency is timed from before a connection is
# taken, so the pool must never be what makes an intent wait: with a member down a round
# can take a whole round timeout, and ~rate × timeout intents are then in flight at once.
LIGHT_POOL_SIZE = 256
SETTLE_TIMEOUT_S = 60.0
SETTLE_BLOCKS = 3  # commits the survivors must make after a crash before load resumes


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


def _seal_many(
    domain: Domain, key: ThresholdPublicKey, epoch: int, count: int, accounts: int = 500
) -> list[bytes]:
    """Pre-sealed envelopes of the same orders as `_sign_many`, as JSON hex strings."""
    keys = [(0x5EA10000 + i).to_bytes(32, "big") for i in range(accounts)]
    addresses = [address_of_private_key(k) for k in keys]
    base = time.time_ns() // 1_000_000
    out = []
    for i in range(count):
        k = i % accounts
        action = place_action(0, "buy" if i % 2 else "sell", 3_000_000 + 10 * (i % 50), 10**6)
        si = sign_intent(keys[k], addresses[k], base + i // accounts, action, domain)
        envelope = encrypt_intent(si, key, epoch, domain, keys[k])
        out.append(b'"0x' + envelope.hex().encode() + b'"')
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


async def _post_batch(
    client: _Client, intents: list[bytes], encrypted: bool = False
) -> tuple[int, float]:
    if encrypted:
        body = b'{"envelopes":[' + b",".join(intents) + b"]}"
        target = "/v1/intents/encrypted?wait=committed&timeout_ms=30000"
    else:
        body = b'{"intents":[' + b",".join(intents) + b"]}"
        target = "/v1/intents?wait=committed&timeout_ms=30000"
    start = time.perf_counter()
    status, answer = await client.post(target, body)
    elapsed = time.perf_counter() - start
    results = orjson.loads(answer).get("results", []) if status == 200 else []
    committed = sum(1 for r in results if r.get("height") is not None)
    return committed, elapsed


async def _saturation(
    apis: list[str],
    intents: list[bytes],
    clients: int,
    batch: int,
    duration_s: float,
    encrypted: bool = False,
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
            pool = pools[(index + cursor // batch) % len(pools)]
            done, elapsed = await _post_batch(pool, chunk, encrypted)
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


async def _light(
    apis: list[str], intents: list[bytes], rate_per_s: float, encrypted: bool = False
) -> dict[str, Any]:
    pools = [_Client(api, LIGHT_POOL_SIZE) for api in apis]
    latencies: list[float] = []

    async def one(i: int, intent: bytes) -> None:
        done, elapsed = await _post_batch(pools[i % len(pools)], [intent], encrypted)
        if done:
            latencies.append(elapsed)

    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        for i, intent in enumerate(intents):
            await trio.sleep_until(start + i / rate_per_s)
            nursery.start_soon(one, i, intent)
    return {
        "light_sent": len(intents),
        "light_committed": len(latencies),
        "light_latency_ms_p50": 1000 * _percentile(latencies, 0.5),
        "light_latency_ms_p99": 1000 * _percentile(latencies, 0.99),
        "light_latency_ms_mean": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
    }


def _drain(apis: list[str], timeout_s: float = 60.0) -> None:
    """Wait until every node's mempool is empty."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = [node_status(api) for api in apis]
        if all(s is not None and s.get("mempool") == 0 for s in statuses):
            return
        time.sleep(0.2)


@dataclass(frozen=True, slots=True)
class _Load:
    """Intents for one saturation phase and one light phase, signed before the clock."""

    saturation: list[bytes]
    light: list[bytes]


def _sign_load(domain: Domain, sig_limit: float, duration_s: float, light_s: float) -> _Load:
    expected = int(max(sig_limit, 1000) * duration_s * 1.2)
    return _Load(
        _sign_many(domain, expected),
        _sign_many(domain, int(LIGHT_RATE_PER_S * light_s), accounts=200),
    )


def _seal_load(
    domain: Domain, key: ThresholdPublicKey, epoch: int, expected_per_s: float, phases: Any
) -> _Load:
    duration_s, light_s = phases
    light = int(ENCRYPTED_LIGHT_RATE_PER_S * light_s)
    return _Load(
        _seal_many(domain, key, epoch, int(max(expected_per_s, 200) * duration_s * 1.2)),
        _seal_many(domain, key, epoch, light, accounts=200),
    )


def _encrypted_phase(
    apis: list[str], genesis: Any, plain_per_s: float, phase: tuple[int, int, float, float]
) -> dict[str, Any]:
    """Encrypted saturation and light load, and plain light load at the same low rate."""
    clients, batch, duration_s, light_s = phase
    fairness = genesis.fairness
    assert fairness is not None, "committee init made no committee key"
    domain = genesis.domain()
    # Sealed for half what plain intents reached: the phase ends early if the committee
    # is faster than that, which `committed_per_s` still measures.
    load = _seal_load(domain, fairness.key, fairness.epoch, plain_per_s / 2, (duration_s, light_s))
    sat = trio.run(_saturation, apis, load.saturation, clients, batch, duration_s, True)
    _drain(apis)
    rate = ENCRYPTED_LIGHT_RATE_PER_S
    light = trio.run(_light, apis, load.light, rate, True)
    _drain(apis)
    plain = _sign_many(domain, len(load.light), accounts=200)
    plain_light = trio.run(_light, apis, plain, rate)
    _drain(apis)
    return {
        **{f"{k}_encrypted": v for k, v in (sat | light).items()},
        "encrypted_light_rate_per_s": rate,
        **{f"{k}_plain_same_rate": v for k, v in plain_light.items()},
    }


def _measure(
    apis: list[str],
    load: _Load,
    clients: int,
    batch: int,
    duration_s: float,
    encrypted: bool = False,
) -> dict[str, Any]:
    """Saturation, then light load once the backlog is committed."""
    sat = trio.run(_saturation, apis, load.saturation, clients, batch, duration_s, encrypted)
    _drain(apis)  # the light phase must not queue behind the saturation backlog
    light = trio.run(_light, apis, load.light, LIGHT_RATE_PER_S, encrypted)
    _drain(apis)
    return {**sat, **light}


def _heights(apis: list[str]) -> list[int]:
    statuses = [node_status(api) for api in apis]
    return [int(s.get("committed_height", 0)) if s else -1 for s in statuses]


def _kill(victims: list[NodeProcess], timeout_s: float = 10.0) -> None:
    """SIGKILL, as a crash: no chance to close connections or flush anything."""
    for node in victims:
        os.kill(node.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(n.pid) for n in victims):  # pid_alive reaps our children
        if time.monotonic() > deadline:
            raise SystemExit(f"members {[n.name for n in victims]} survived SIGKILL")
        time.sleep(0.05)


def _settle(apis: list[str], from_height: int, until: float) -> None:
    """Wait until `until` (monotonic) and until every survivor has committed
    SETTLE_BLOCKS blocks past `from_height`: load resumes on a committee that works."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        heights = _heights(apis)
        if time.monotonic() >= until and min(heights) >= from_height + SETTLE_BLOCKS:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the survivors did not commit after the crash: heights {heights}")
        time.sleep(0.2)


def _one_down(
    survivors: list[NodeProcess],
    victims: list[NodeProcess],
    domain: Domain,
    settle_s: float,
    sig_limit: float,
    phase: tuple[int, int, float, float],
) -> dict[str, Any]:
    """Kill the victims, sign the second load while the survivors settle, then measure
    against the survivors only."""
    clients, batch, duration_s, light_s = phase
    apis = [n.api for n in survivors]
    _kill(victims)
    killed_at = time.monotonic()
    from_height = max(_heights(apis))
    load = _sign_load(domain, sig_limit, duration_s, light_s)
    _settle(apis, from_height, killed_at + settle_s)
    settled_s = time.monotonic() - killed_at
    figures = _measure(apis, load, clients, batch, duration_s)
    return {
        "crashed": [n.name for n in victims],
        "settle_s": settled_s,
        **{f"{key}_one_down": value for key, value in figures.items()},
    }


def _encrypted_bound(nodes: int, cores: int, plain_per_s: float) -> dict[str, float]:
    """The curve work an envelope adds per member, and the throughput bound it sets
    (module docstring)."""
    from node.bench.fairness import measure_shape

    t = (nodes - 1) // 3 + 1
    rates = measure_shape(nodes, t, count=300, rounds=3)
    extra_s = (
        1 / rates["envelope_check_per_s"]
        + 1 / rates["share_create_per_s"]
        + (t - 1) / rates["share_verify_per_s"]
        + 1 / rates["combine_per_s"]
        + 1 / rates["open_per_s"]
    )
    bound = cores / (cores / plain_per_s + nodes * extra_s)
    return {
        "encrypted_extra_ms_per_member": 1000 * extra_s,
        "encrypted_bound_per_s": bound,
        "ratio_encrypted_bound_vs_plain": bound / plain_per_s,
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def run(
    nodes: int,
    duration_s: float,
    light_s: float,
    clients: int,
    batch: int,
    base_port: int | None,
    crash: int = 0,
    settle_s: float = 5.0,
    encrypted: bool = False,
) -> dict[str, Any]:
    assert 0 <= crash <= (nodes - 1) // 3, "at most f = (n - 1) // 3 members may be stopped"
    # The limit is measured on a quiet machine, before the committee starts and after it
    # stopped, three times each; the median is used (one short sample here moves by
    # ±20 % between runs on a shared host, and the ratio with it).
    rates = [verify_rate(2000) for _ in range(3)]
    cores = usable_cores()
    sig_limit = cores * statistics.median(rates) / nodes
    port = free_base_port(nodes) if base_port is None else base_port
    one_down: dict[str, Any] = {}
    sealed: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="seqnet-bench-") as tmp:
        net = up(Path(tmp) / "net", nodes, port, timeout_s=60)
        running = net.nodes
        try:
            genesis = load_genesis(Path(net.folder) / "genesis.toml")
            domain = genesis.domain()
            load = _sign_load(domain, sig_limit, duration_s, light_s)
            healthy = _measure([n.api for n in net.nodes], load, clients, batch, duration_s)
            del load  # tens of MB of signed intents, not needed any more
            if encrypted:
                apis = [n.api for n in net.nodes]
                phase = (clients, batch, duration_s, light_s)
                sealed = _encrypted_phase(apis, genesis, healthy["committed_per_s"], phase)
            if crash:
                # The last members go: the load generator talks to the others. From here
                # `down` must not signal the killed PIDs: they were reaped, and the kernel
                # may give those numbers to someone else's process.
                running, victims = net.nodes[: nodes - crash], net.nodes[nodes - crash :]
                phase = (clients, batch, duration_s, light_s)
                one_down = _one_down(running, victims, domain, settle_s, sig_limit, phase)
        finally:
            down(Localnet(net.folder, running))
    rates += [verify_rate(2000) for _ in range(3)]
    recover_per_s = statistics.median(rates)
    sig_limit = cores * recover_per_s / nodes
    result: dict[str, Any] = {
        "nodes": nodes,
        "cores": cores,
        "duration_s": duration_s,
        "clients": clients,
        "batch": batch,
        **healthy,
        "recover_per_s": recover_per_s,
        "recover_per_s_min": min(rates),
        "recover_per_s_max": max(rates),
        "sig_limit_per_s": sig_limit,
        "ratio_vs_sig_limit": healthy["committed_per_s"] / sig_limit,
    }
    if encrypted:
        bound = _encrypted_bound(nodes, cores, healthy["committed_per_s"])
        result |= {
            **sealed,
            **bound,
            "ratio_encrypted_vs_bound": _ratio(
                sealed["committed_per_s_encrypted"], bound["encrypted_bound_per_s"]
            ),
            "ratio_encrypted_vs_plain": _ratio(
                sealed["committed_per_s_encrypted"], healthy["committed_per_s"]
            ),
            "light_latency_ms_p50_added_encrypted": sealed["light_latency_ms_p50_encrypted"]
            - sealed["light_latency_ms_p50_plain_same_rate"],
            "light_latency_ms_p99_added_encrypted": sealed["light_latency_ms_p99_encrypted"]
            - sealed["light_latency_ms_p99_plain_same_rate"],
        }
    if crash:
        # Fewer members share the same cores, so the survivors' own limit is higher.
        sig_limit_down = cores * recover_per_s / (nodes - crash)
        result |= {
            "crash": crash,
            **one_down,
            "sig_limit_per_s_one_down": sig_limit_down,
            "ratio_vs_sig_limit_one_down": one_down["committed_per_s_one_down"] / sig_limit_down,
            "ratio_one_down": _ratio(
                one_down["committed_per_s_one_down"], healthy["committed_per_s"]
            ),
            "light_latency_p50_ratio_one_down": _ratio(
                one_down["light_latency_ms_p50_one_down"], healthy["light_latency_ms_p50"]
            ),
        }
    return result


# The measured figures of one phase, shown side by side in --crash mode.
_PHASE_KEYS = (
    "committed_per_s",
    "latency_ms_p50",
    "latency_ms_p99",
    "light_latency_ms_p50",
    "light_latency_ms_p99",
    "light_latency_ms_mean",
    "light_committed",
)


def _print_table(result: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def cell(value: Any) -> str:
        return f"{value:,.2f}" if isinstance(value, float) else str(value)

    console = Console()
    if "crash" in result:
        both = Table(
            title=f"{title}: healthy, then {result['crash']} down ({', '.join(result['crashed'])})",
            caption="targets (issue 12): committed/s ratio ≥ 0.7, light p50 ratio ≤ 2",
        )
        for column in ("metric", "healthy", "one down", "one down ÷ healthy"):
            both.add_column(column, justify="left" if column == "metric" else "right")
        for key in _PHASE_KEYS:
            healthy, down_ = result[key], result[f"{key}_one_down"]
            both.add_row(key, cell(healthy), cell(down_), cell(_ratio(down_, healthy)))
        console.print(both)
    # In --crash mode the side-by-side table above already shows these.
    shown: set[str] = set()
    if "crash" in result:
        shown = set(_PHASE_KEYS) | {f"{k}_one_down" for k in _PHASE_KEYS}
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key not in shown:
            table.add_row(key, cell(value) if not isinstance(value, list) else ", ".join(value))
    console.print(table)


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0, help="saturation seconds")
    parser.add_argument("--light-duration", type=float, default=10.0, help="light-load seconds")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument(
        "--base-port", type=int, default=None, help="first port (default: a free range)"
    )
    parser.add_argument(
        "--crash",
        type=int,
        default=0,
        help="after the healthy phases, SIGKILL this many members (at most f) and measure again",
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds between the crash and the next load"
    )
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="measure encrypted intents too, in the same committee (PROTOCOL.md §10)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 <= args.crash <= (args.nodes - 1) // 3:
        parser.error(
            f"--crash must be between 0 and f = {(args.nodes - 1) // 3} for {args.nodes} nodes"
        )
    result = run(
        args.nodes,
        args.duration,
        args.light_duration,
        args.clients,
        args.batch,
        args.base_port,
        crash=args.crash,
        settle_s=args.settle,
        encrypted=args.encrypted,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    _print_table(result, f"seqnet bench cluster --nodes {args.nodes}")
    return 0
