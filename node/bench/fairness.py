"""`seqnet bench fairness`: the cost of threshold encryption, per operation, on one core.

For committees of n = 4 (t = 2) and n = 7 (t = 3), with a dealt key (the dev chain's
dealer mode; the DKG makes keys of the same shape): a trader's encrypt (KEM + AEAD +
EIP-712 signature), intake's check of an envelope (decode, signature recovery, KEM
proof), a member's decryption share with its proof, the check of one share, the
combination of t checked shares, and the opening of the body. A whole DKG of n members
in one process is timed too. In the same run we measure this core's raw Ed25519
verifications per second (the consensus signature check, as `bench consensus` does), so
each rate is also reported as a ratio to it: `*_vs_ed25519` = operation rate / Ed25519
verify rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import coincurve
from nacl.bindings import (
    crypto_core_ed25519_is_valid_point,
    crypto_core_ed25519_scalar_reduce,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
)

from node.bench.consensus import raw_verify_per_s
from node.fairness.dkg import Broadcast, Completed, Dkg, DkgConfig, member_public_key
from node.fairness.envelope import decode_envelope, open_envelope, seal, verify_envelope
from node.fairness.group import hash_bytes, hash_to_nonzero_scalar
from node.fairness.threshold import (
    DEV_CHAIN_ID,
    combine,
    create_share,
    dealer_keygen,
    verify_share,
)
from node.intents import Domain, place_action, sign_intent

SHAPES = ((4, 2), (7, 3))
_KEY = bytes(31) + b"\x01"
_ACCOUNT = bytes.fromhex("7e5f4552091a69125d5dfcb7b8c2659029395bdf")


def _rate(operation: Callable[[int], object], count: int, rounds: int) -> float:
    """Median over `rounds` of operations per second (`operation(i)` for i < count)."""
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(count):
            operation(i)
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def run_dkg(n: int, t: int) -> float:
    """Seconds for a whole honest DKG of n members in this one process."""
    secrets = [hash_to_nonzero_scalar(b"bench-dkg", bytes([i])) for i in range(n)]
    config = DkgConfig(DEV_CHAIN_ID, 1, t, tuple(member_public_key(s) for s in secrets))
    started = time.perf_counter()
    members = [Dkg(config, i + 1, s) for i, s in enumerate(secrets)]
    queue = []
    for me, m in enumerate(members, start=1):
        for action in m.start(hash_bytes(b"bench-seed", bytes([me]))):
            assert isinstance(action, Broadcast)
            queue.append((me, action.data))
    for sender, data in queue:
        for m in members:
            assert m.receive(sender, data) == []
    for m in members:
        m.close_dealings()
        (done,) = m.finish()
        assert isinstance(done, Completed)
    return time.perf_counter() - started


def measure_shape(n: int, t: int, count: int, rounds: int) -> dict[str, float]:
    domain = Domain(DEV_CHAIN_ID, bytes(20))
    public, shares = dealer_keygen(n, t, bytes(32), chain_id=DEV_CHAIN_ID)
    action = place_action(0, "buy", 3_000_000, 2_000_000, cloid=42)
    intent = sign_intent(_KEY, _ACCOUNT, 1_700_000_000_000, action, domain)
    seeds = [hash_bytes(b"bench", i.to_bytes(4, "big")) for i in range(count)]
    envelopes = [seal(intent, public, 1, domain, _KEY, seeds[i]) for i in range(count)]
    decoded = [decode_envelope(e) for e in envelopes]
    points = [verify_envelope(e, domain)[1] for e in decoded]
    made = [[create_share(s, public, points[i]) for s in shares] for i in range(count)]
    keys = [combine(public, points[i], made[i][:t], verified=True).key for i in range(count)]
    member = shares[0]
    return {
        "encrypt_per_s": _rate(
            lambda i: seal(intent, public, 1, domain, _KEY, seeds[i]), count, rounds
        ),
        "envelope_check_per_s": _rate(
            lambda i: verify_envelope(decode_envelope(envelopes[i]), domain), count, rounds
        ),
        "share_create_per_s": _rate(
            lambda i: create_share(member, public, points[i]), count, rounds
        ),
        "share_verify_per_s": _rate(
            lambda i: verify_share(public, points[i], made[i][i % n]), count, rounds
        ),
        "combine_per_s": _rate(
            lambda i: combine(public, points[i], made[i][:t], verified=True), count, rounds
        ),
        "open_per_s": _rate(lambda i: open_envelope(decoded[i], keys[i]), count, rounds),
        "dkg_ms": statistics.median(run_dkg(n, t) for _ in range(rounds)) * 1000,
    }


def measure_groups(count: int, rounds: int) -> dict[str, float]:
    """The choice of group (docs/FAIRNESS.md): a variable-base scalar multiplication on
    secp256k1 (coincurve) against Ed25519 (PyNaCl's noclamp multiplication), and the
    point check each needs on input (parse; parse with the subgroup check)."""
    scalar = hash_bytes(b"bench-scalar")
    point = coincurve.PublicKey.from_secret(scalar)
    encoded = point.format()
    reduced = crypto_core_ed25519_scalar_reduce(scalar + scalar)
    ed_point = crypto_scalarmult_ed25519_base_noclamp(reduced)
    return {
        "secp256k1_mul_per_s": _rate(lambda _: point.multiply(scalar), count, rounds),
        "ed25519_mul_per_s": _rate(
            lambda _: crypto_scalarmult_ed25519_noclamp(reduced, ed_point), count, rounds
        ),
        "secp256k1_point_check_per_s": _rate(lambda _: coincurve.PublicKey(encoded), count, rounds),
        "ed25519_point_check_per_s": _rate(
            lambda _: crypto_core_ed25519_is_valid_point(ed_point), count, rounds
        ),
    }


def measure(count: int, rounds: int) -> dict[str, Any]:
    verify_before = raw_verify_per_s()
    shapes = {f"n{n}_t{t}": measure_shape(n, t, count, rounds) for n, t in SHAPES}
    shapes["groups"] = measure_groups(count, rounds)
    verify_per_s = statistics.mean([verify_before, raw_verify_per_s()])
    result: dict[str, Any] = {"ed25519_verify_per_s": round(verify_per_s), "count": count}
    for name, rates in shapes.items():
        out: dict[str, float] = {}
        for key, value in rates.items():
            if key.endswith("_per_s"):
                out[key] = round(value)
                out[key.removesuffix("_per_s") + "_vs_ed25519"] = round(value / verify_per_s, 3)
            else:
                out[key] = round(value, 2)
        result[name] = out
    return result


def main(argv: list[str], prog: str = "seqnet bench fairness") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--count", type=int, default=500, help="operations per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median is kept)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1:
        parser.error("--count and --rounds must be positive")
    result = measure(args.count, args.rounds)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"threshold encryption on one core; Ed25519 verify {result['ed25519_verify_per_s']}/s")
    for name in [*(f"n{n}_t{t}" for n, t in SHAPES), "groups"]:
        print(f"  {name}")
        rates = result[name]
        width = max(len(k) for k in rates)
        for key, value in rates.items():
            print(f"    {key:<{width}}  {value}")
    return 0
