"""`seqnet bench catchup`: how fast a member that was away catches up by log sync.

Three members of a 4-member committee start from a committed log written beforehand
(`--empty` empty blocks, then `--blocks` blocks of `--entries` signed place orders from
funded accounts; every block and QC signed with the members' real Ed25519 keys). The
fourth starts empty and catches up from them over real loopback TCP, through the whole
runtime: the peer boundary's decoder, the QC check, the engine, the committed log on
SQLite. The serving members are `seqnet node run` processes, so the catching-up member,
alone in this process, is what is measured (on one core; the servers have the other).
With `--inline` all four run in this one process, on one core: the servers' reads and
sends are then counted against the catching-up member's rate (a floor).

Reported: `blocks_per_s` over the empty part, `entries_per_s` over the part with
entries, and, measured in the same run on the same entries, the engine's own replay rate
(`Engine.apply_block` on prebuilt entries, nothing else): `ratio_vs_engine` is the share
of the engine's speed that catch-up keeps, after decoding, ids, storage and the network.
The `*_cpu_s` figures are the same rates per second of CPU time (this process's, the
engine's in the same process): on a shared host they move less than wall-clock ones.

The log is built and served once, then caught up `--repeat` times (each time by a member
starting empty, beside a fresh measurement of the engine's replay): the top-level figures
are the medians (a ratio is the median of each run's own ratio), `runs` holds each run.
Timing starts at the first sync request, so the start-up (restoring nothing, dialling)
is not counted; the default log (40,000 empty blocks, then 200 blocks of 500 entries)
takes a second or more per part at the targets' rates.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import trio

from consensus.crypto import Ed25519Signer
from consensus.types import (
    Block,
    QuorumCert,
    block_signing_bytes,
    compute_block_id,
    genesis_block,
    genesis_qc,
)
from matching.engine import Engine
from node.genesis import ConsensusParams, NodeSetup, committee_init, load_node_setup
from node.intents import address_of_private_key, pack_intent, place_action, sign_intent
from node.payload import (
    NO_SIGNER,
    DepositRecord,
    deposit_engine_entry,
    deposit_entry,
    encode_committed,
    intent_entry,
    with_signers,
)
from node.procs import free_base_port, pid_alive, start_node, stop_pid
from node.runtime import Node, NodeOptions
from node.runtime.execution import ExecutedBlock
from node.store.storage import WriteBatch, open_storage

N = 4
SERVER_START_S = 120.0  # a serving member restores the whole log before its API answers
ETH, USDC = 0, 1
WEI_PER_GWEI = 10**9


@dataclass
class Chain:
    blocks: list[Block]
    child: Block  # the block above the root whose QC (`proof`) commits the root
    proof: QuorumCert
    engine_blocks: list[tuple[int, list[dict[str, Any]]]]  # the entry blocks, for the engine


def _qc(block: Block, signers: list[Ed25519Signer], chain_id: bytes) -> QuorumCert:
    vd = block.vote_data()
    message = vd.signing_bytes(chain_id)
    quorum = list(range(2 * (N // 3) + 1))
    return QuorumCert(vd, tuple(quorum), tuple(signers[i].sign(message) for i in quorum))


def build_chain(setups: list[NodeSetup], empty: int, blocks: int, entries: int) -> Chain:
    """The committed chain: a deposit block funding the traders, `empty` empty blocks,
    then `blocks` blocks of `entries` crossing place orders; and the QC that commits it."""
    genesis = setups[0].genesis
    chain_id = genesis.genesis_hash()
    domain = genesis.domain()
    signers = [Ed25519Signer(bytes(s.keys.identity)) for s in setups]
    accounts = max(2, min(entries, 500))
    keys = [(0xCA7C0000 + i).to_bytes(32, "big") for i in range(accounts)]
    addresses = [address_of_private_key(k) for k in keys]
    usdc_token = genesis.exchange.assets[USDC].token
    eth_token = genesis.exchange.assets[ETH].token
    deposits: list[bytes] = []
    for i, account in enumerate(addresses):
        for j, (token, asset, amount) in enumerate(
            ((usdc_token, USDC, 10**15), (eth_token, ETH, 10**12))
        ):
            unit = WEI_PER_GWEI if asset == ETH else 1
            record = DepositRecord(2 * i + j + 1, account, token, amount * unit, asset, amount)
            deposits.append(deposit_entry(record))
    start_ms = int(time.time() * 1000) - (empty + blocks + 10) * 10
    payloads: list[tuple[bytes, ...]] = [with_signers(deposits, [NO_SIGNER] * len(deposits))]
    engine_blocks: list[tuple[int, list[dict[str, Any]]]] = []
    payloads += [()] * empty
    nonce = start_ms
    for b in range(blocks):
        raws, who, engine_entries = [], [], []
        for e in range(entries):
            k = (b * entries + e) % accounts
            side = "buy" if e % 2 else "sell"
            action = place_action(0, side, 3_000_000 + 10 * (e % 20), 10**6)
            nonce += 1
            si = sign_intent(keys[k], addresses[k], nonce, action, domain)
            raws.append(intent_entry(pack_intent(si)))
            who.append(addresses[k])
            engine_entries.append(
                {"account": si.account, "signer": addresses[k], "nonce": si.nonce, "action": action}
            )
        payloads.append(with_signers(raws, who))
        engine_blocks.append((len(payloads), engine_entries))
    parent = genesis_block(chain_id)
    qc = genesis_qc(parent)
    out: list[Block] = []
    for height, payload in enumerate([*payloads, ()], start=1):
        author = height % N
        ts = start_ms + height * 10
        block_id = compute_block_id(height, height, ts, author, qc, payload)
        signature = signers[author].sign(block_signing_bytes(chain_id, block_id))
        block = Block(height, height, ts, author, qc, payload, signature)
        out.append(block)
        qc = _qc(block, signers, chain_id)
        parent = block
    child = out.pop()
    timestamps = {b.height: b.timestamp_ms for b in out}
    return Chain(out, child, qc, [(timestamps[h], e) for h, e in engine_blocks])


def write_log(setup: NodeSetup, chain: Chain) -> None:
    storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
    try:
        step = 1000
        for i in range(0, len(chain.blocks), step):
            part = chain.blocks[i : i + step]
            storage.write(WriteBatch(committed=[(b.height, encode_committed(b)) for b in part]))
        root = chain.blocks[-1]
        storage.write(
            WriteBatch(
                blocks=[
                    (
                        chain.child.id,
                        chain.child.round,
                        msgpack.packb(chain.child.to_wire(), use_bin_type=True),
                    )
                ],
                meta={
                    "root": msgpack.packb(
                        [root.to_wire(), chain.proof.to_wire()], use_bin_type=True
                    )
                },
            )
        )
    finally:
        storage.close()


def engine_replay_per_s(setup: NodeSetup, chain: Chain) -> tuple[float, float]:
    """The engine alone on the same entries (after the same deposits): entries per
    second of wall-clock time and per second of this process's CPU time."""
    engine = Engine(setup.genesis.exchange)
    first = chain.blocks[0]
    deposits = [deposit_engine_entry(_deposit(raw)) for raw in first.payload[:-1]]
    engine.apply_block(first.timestamp_ms, deposits)
    count = sum(len(e) for _, e in chain.engine_blocks)
    if not count:
        return 0.0, 0.0
    started, started_cpu = time.perf_counter(), time.process_time()
    for ts, entries in chain.engine_blocks:
        engine.apply_block(ts, entries)
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    return count / wall_s, count / max(cpu_s, 1e-6)


def _deposit(raw: bytes) -> DepositRecord:
    from node.payload import decode_deposit

    return decode_deposit(raw)


async def _catch_up(
    setups: list[NodeSetup], chain: Chain, options: NodeOptions, inline: bool
) -> dict[str, float]:
    """`inline`: the serving members run in this process too (their work counted
    against the catching-up member); else they are `seqnet node run` processes."""
    empty_top = 1 + sum(1 for b in chain.blocks if not b.payload)
    target = chain.blocks[-1].height
    served_by = setups if inline else setups[-1:]
    nodes = []
    for setup in served_by:
        storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
        nodes.append(Node(setup, storage, options))
    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}  # this process's CPU time at the same marks
    try:
        async with trio.open_nursery() as nursery:
            for node in nodes[:-1]:
                await nursery.start(node.run)
            late = nodes[-1]

            def at_block(executed: ExecutedBlock) -> None:
                # The boundary between the parts falls inside one sync reply (a reply
                # is bounded in bytes, not by kind of block), so it is marked when the
                # last empty block is executed, not when a poll sees the height pass it.
                if executed.height == empty_top:
                    marks["empty"] = time.perf_counter()
                    cpu["empty"] = time.process_time()

            late.add_block_listener(at_block)

            async def watch() -> None:
                while not late.sync.running:  # from the first request, not the dial
                    await trio.sleep(0.0005)
                marks["start"] = time.perf_counter()
                cpu["start"] = time.process_time()
                while late.exec_height < target:  # polled: after the last batch's write
                    await trio.sleep(0.0005)
                marks["end"] = time.perf_counter()
                cpu["end"] = time.process_time()

            nursery.start_soon(watch)
            await nursery.start(late.run)
            with trio.fail_after(600):
                while "end" not in marks:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    finally:
        for node in nodes:
            node.storage.close()
    first_block = marks.get("empty", marks["end"])
    first_block_cpu = cpu.get("empty", cpu["end"])
    return {
        "empty_s": first_block - marks["start"],
        "entries_s": marks["end"] - first_block,
        "empty_cpu_s": first_block_cpu - cpu["start"],
        "entries_cpu_s": cpu["end"] - first_block_cpu,
    }


def _start_servers(root: Path, setups: list[NodeSetup]) -> list[int]:
    """The serving members as `seqnet node run` processes; their PIDs once each one's
    API answers (its engine is restored and it listens to peers)."""
    pids = []
    try:
        for i in range(len(setups)):
            config = root / f"node{i}" / "config.toml"
            pids.append(start_node(config, root / f"node{i}.log"))
        for i, setup in enumerate(setups):
            api = setup.config.api_listen
            deadline = time.monotonic() + SERVER_START_S
            while True:
                try:
                    # 503 from the start-up probe until the engine is restored
                    status = httpx.get(f"http://{api.host}:{api.port}/v1/status", timeout=1.0)
                    if status.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or not pid_alive(pids[i]):
                    tail = (root / f"node{i}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"serving member {i} did not start:\n{tail}")
                time.sleep(0.05)
    except BaseException:
        for pid in pids:
            stop_pid(pid)
        raise
    return pids


def run(
    empty: int, blocks: int, entries: int, inline: bool = False, repeat: int = 1
) -> dict[str, Any]:
    """`repeat` catch-ups of the same log from the same serving members, each from an
    empty member (its data directory as `committee init` made it), each beside the
    engine's own replay of the same entries: the medians, and every run in `runs`."""
    with tempfile.TemporaryDirectory(prefix="seqnet-catchup-") as tmp:
        root = Path(tmp)
        committee_init(
            root, N, base_port=free_base_port(N), consensus=ConsensusParams(round_timeout_ms=2000)
        )
        setups = [load_node_setup(root / f"node{i}" / "config.toml") for i in range(N)]
        late_dir = setups[-1].config.data_dir
        pristine = root / "late-member-fresh"
        shutil.copytree(late_dir, pristine)
        chain = build_chain(setups, empty, blocks, entries)
        for setup in setups[:-1]:
            write_log(setup, chain)
        options = NodeOptions(snapshot_sync_gap_blocks=1 << 40)  # measure the log path
        pids = [] if inline else _start_servers(root, setups[:-1])
        runs = []
        try:
            for _ in range(repeat):
                shutil.rmtree(late_dir)
                shutil.copytree(pristine, late_dir)
                engine_rates = engine_replay_per_s(setups[0], chain)
                times = trio.run(_catch_up, setups, chain, options, inline)
                runs.append(_rates(empty, blocks * entries, times, engine_rates))
        finally:
            for pid in pids:
                stop_pid(pid)
    result: dict[str, Any] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    result.update(
        empty_blocks=empty,
        entry_blocks=blocks,
        entries_per_block=entries,
        repeat=repeat,
        servers="inline" if inline else "processes",
        runs=runs,
    )
    return result


def _rates(
    empty: int, total_entries: int, times: dict[str, float], engine: tuple[float, float]
) -> dict[str, float]:
    """One catch-up's rates, and the same-run ratios to the engine's own replay."""
    engine_rate, engine_cpu_rate = engine
    entries_per_s = total_entries / max(times["entries_s"], 1e-6) if total_entries else 0.0
    entries_per_cpu_s = total_entries / max(times["entries_cpu_s"], 1e-6) if total_entries else 0.0
    return {
        "blocks_per_s": empty / max(times["empty_s"], 1e-6) if empty else 0.0,
        "entries_per_s": entries_per_s,
        "engine_replay_entries_per_s": engine_rate,
        "ratio_vs_engine": entries_per_s / engine_rate if engine_rate else 0.0,
        "catch_up_s": times["empty_s"] + times["entries_s"],
        # The same rates per second of the catching-up process's CPU time: on a shared,
        # loaded machine these move less than the wall-clock ones.
        "blocks_per_cpu_s": empty / max(times["empty_cpu_s"], 1e-6) if empty else 0.0,
        "entries_per_cpu_s": entries_per_cpu_s,
        "engine_replay_entries_per_cpu_s": engine_cpu_rate,
        "ratio_vs_engine_cpu": entries_per_cpu_s / engine_cpu_rate if engine_cpu_rate else 0.0,
    }


def main(argv: list[str], prog: str = "seqnet bench catchup") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--empty", type=int, default=40_000, help="empty blocks to catch up")
    parser.add_argument("--blocks", type=int, default=200, help="blocks with entries")
    parser.add_argument("--entries", type=int, default=500, help="entries per such block")
    parser.add_argument(
        "--inline",
        action="store_true",
        help="run the serving members in this process (on the catching-up member's core)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="catch-ups of the same log (medians reported)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    result = run(args.empty, args.blocks, args.entries, args.inline, args.repeat)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    where = "in this process" if args.inline else "as processes"
    print(f"log catch-up of one member from {N - 1} serving members {where}, loopback TCP")
    print(f"median of {args.repeat} catch-ups of the same log")
    print(f"{'':<34}{'rate':>14}")
    print(f"{'empty blocks':<34}{result['blocks_per_s']:>12,.0f}/s")
    print(f"{'entries (in blocks of entries)':<34}{result['entries_per_s']:>12,.0f}/s")
    print(f"{'engine replay, same entries':<34}{result['engine_replay_entries_per_s']:>12,.0f}/s")
    print(f"ratio of catch-up to engine replay: {result['ratio_vs_engine']:.2f}")
    return 0
