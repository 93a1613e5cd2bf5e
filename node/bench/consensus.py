"""`seqnet bench consensus`: what the consensus protocol costs beyond its signatures.

Four replicas run in this one process on the simulator's network with zero delay, the
leader always has a full batch, and every signature is real Ed25519: each replica
verifies every proposal, every QC (2f+1 signatures; once per QC thanks to the
verifier's cache) and, as next leader, every vote. In the same run we measure this
machine's raw Ed25519 verifications per second, so the result is also a ratio:

    overhead_ratio = wall time per committed block
                     / (Ed25519 verifications per block / raw verify_per_s)

1.0 would mean the protocol costs nothing but its signature checks; 2.0 means half the
time goes to signature checks and half to everything else (hashing, msgpack, the state
machine, the simulated runtime). All four replicas share one core here, so
`blocks_per_s` is the whole committee's work on one core; with a core per replica the
rate would be up to n times higher (`blocks_per_s_core_per_replica`).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from consensus.crypto import Ed25519Scheme, Ed25519Signer
from node.sim.cluster import Knobs, Simulation
from node.sim.plan import FaultPlan

N = 4


def raw_verify_per_s(samples: int = 3, count: int = 2000) -> float:
    signer = Ed25519Signer(bytes(32))
    scheme = Ed25519Scheme()
    message = bytes(100)
    signature = signer.sign(message)
    rates = []
    for _ in range(samples):
        started = time.perf_counter()
        for _ in range(count):
            scheme.verify(signer.public_key, message, signature)
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def _plan() -> FaultPlan:
    # Never time out (measure the happy path); no network delay; the batching delay is
    # simulated time only and keeps block timestamps near the clock.
    return FaultPlan.calm(N, delay_ms=(0, 0), tail_ms=0, base_timeout_ms=60_000)


def run_protocol(blocks: int, batch: int, entry_bytes: int) -> dict[str, float]:
    entries = tuple(bytes([i % 256]) * entry_bytes for i in range(batch))
    sim = Simulation(_plan(), random.Random(0), Knobs(crypto="ed25519"), lambda _n, _r: entries)
    started = time.perf_counter()
    sim.run_until_height(blocks)
    wall_s = time.perf_counter() - started
    committed = min(len(i.disk.log) for i in sim.instances)
    checks = sum(i.verifier.signature_checks for i in sim.instances if i.verifier is not None)
    return {
        "blocks": committed,
        "wall_s": wall_s,
        "verifications_per_block": checks / committed,
    }


def measure(blocks: int, batch: int, entry_bytes: int) -> dict[str, float | int]:
    verify_before = raw_verify_per_s()
    proto = run_protocol(blocks, batch, entry_bytes)
    verify_per_s = statistics.mean([verify_before, raw_verify_per_s()])
    blocks_per_s = proto["blocks"] / proto["wall_s"]
    per_block_s = 1 / blocks_per_s
    verify_floor_s = proto["verifications_per_block"] / verify_per_s
    return {
        "replicas": N,
        "batch": batch,
        "entry_bytes": entry_bytes,
        "blocks": int(proto["blocks"]),
        "wall_s": round(proto["wall_s"], 3),
        "blocks_per_s": round(blocks_per_s, 1),
        "entries_per_s": round(blocks_per_s * batch),
        "blocks_per_s_core_per_replica": round(blocks_per_s * N, 1),
        "verifications_per_block": round(proto["verifications_per_block"], 2),
        "verify_per_s": round(verify_per_s),
        "verify_bound_blocks_per_s": round(1 / verify_floor_s, 1),
        "overhead_ratio": round(per_block_s / verify_floor_s, 2),
    }


def main(argv: list[str], prog: str = "seqnet bench consensus") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--blocks", type=int, default=1000, help="blocks to commit")
    parser.add_argument("--batch", type=int, default=1000, help="entries per block")
    parser.add_argument("--entry-bytes", type=int, default=100, help="bytes per entry")
    args = parser.parse_args(argv)
    result = measure(args.blocks, args.batch, args.entry_bytes)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    width = max(len(k) for k in result)
    print(f"consensus protocol cost, {N} replicas on one core, zero-delay network")
    for key, value in result.items():
        print(f"  {key:<{width}}  {value}")
    return 0
