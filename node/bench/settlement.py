"""`seqnet bench settlement`: gas of the settlement contract's operations on a local chain.

Gas is deterministic (fixed keys, so fixed signatures and calldata bytes), so the peer
beside each figure is not a same-run measurement but the issue's reference verifier
(a straightforward ecrecover loop: 89,927 gas at k=3, 539,807 at k=67, first submit) and
the issue's targets. Checkpoints are measured on their first submit (the reference's
condition) and in steady state; claims with a depth-10 proof (a 1,024-leaf withdrawals
tree), first in a fresh claimed-bitmap word (the worst case) and then in a used one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from contracts.chain import Chain, local_chain
from contracts.settlement import ETH, Erc20, Settlement, TokenConfig, deploy
from contracts.signing import Checkpoint, address_of, sign
from matching.merkle import MerkleTree, balance_leaf, keccak, withdrawal_leaf

ETH_UNIT = 10**9
TOKEN_UNIT = 10**12
TREE_LEAVES = 1024
ESCAPE_DELAY_S = 3600
REFERENCE = {"gas_checkpoint_k3_n4": 89_927, "gas_checkpoint_k67_n100": 539_807}
TARGETS = {"gas_checkpoint_k3_n4": 90_000, "gas_checkpoint_k67_n100": 550_000, "gas_claim": 80_000}


def _keys(n: int) -> list[bytes]:
    return sorted((keccak(b"bench member %d" % i) for i in range(n)), key=address_of)


def _deploy(
    chain: Chain, n: int, k: int, tokens: list[TokenConfig]
) -> tuple[Settlement, list[bytes]]:
    keys = _keys(n)
    members = [address_of(x) for x in keys]
    s = Settlement.deploy(chain.w3, chain.keys[0], members, k, tokens, ESCAPE_DELAY_S)
    return s, keys


def _checkpoint(chain: Chain, s: Settlement, keys: list[bytes], k: int, cp: Checkpoint) -> int:
    digest = s.checkpoint_digest(cp)
    sigs = {address_of(x): sign(x, digest) for x in keys[:k]}
    members = [address_of(x) for x in keys]
    return s.submit_checkpoint(chain.keys[0], cp, members, sigs).gas_used


def measure_checkpoints(chain: Chain, n: int, k: int) -> tuple[int, int]:
    """(first submit, steady state) gas of a checkpoint with withdrawals, signed by k of n."""
    s, keys = _deploy(chain, n, k, [TokenConfig(ETH, ETH_UNIT)])
    s.deposit_eth(chain.keys[1], ETH_UNIT)
    gas = []
    for seq in (1, 2):
        cp = Checkpoint(0, seq, keccak(b"state %d" % seq), keccak(b"withdrawals %d" % seq), 1)
        gas.append(_checkpoint(chain, s, keys, k, cp))
    return gas[0], gas[1]


def measure_flows(chain: Chain) -> dict[str, int]:
    """Deposits, claims, freeze, exit and reclaim on a committee of 4 (k = 3)."""
    deployer, user = chain.keys[0], chain.keys[1]
    account = address_of(user)
    token = deploy(chain.w3, deployer, "TestToken", "Bench USD", "BUSD", 18)
    Erc20(chain.w3, token).mint(deployer, account, 10**30)
    s, keys = _deploy(chain, 4, 3, [TokenConfig(ETH, ETH_UNIT), TokenConfig(token, TOKEN_UNIT)])
    out: dict[str, int] = {}
    out["gas_deposit"] = s.deposit_eth(user, 10**18).gas_used
    s.deposit_eth(user, 10**18)
    s.deposit_token(user, token, 10**21)
    out["gas_deposit_token"] = s.deposit_token(user, token, 10**21).gas_used

    # Withdrawals 1..1024 alternate ETH / token, all to `account`.
    withdrawals = [(i, account, ETH if i % 2 else token, 10**9) for i in range(1, TREE_LEAVES + 1)]
    wtree = MerkleTree([withdrawal_leaf(*w) for w in withdrawals])
    others = [balance_leaf(keccak(b"acct %d" % i)[:20], ETH, 1) for i in range(TREE_LEAVES - 1)]
    state = MerkleTree([balance_leaf(account, ETH, 10**18), *others])
    _checkpoint(chain, s, keys, 3, Checkpoint(0, 1, state.root(), wtree.root(), 4))

    def claim(index: int) -> int:
        return s.claim_withdrawal(deployer, 1, *withdrawals[index], wtree.proof(index)).gas_used

    out["gas_claim"] = claim(0)  # ETH, first bit in its bitmap word: pays the 20k store
    out["gas_claim_warm"] = claim(2)  # ETH, same word
    out["gas_claim_token"] = claim(1)  # ERC-20, same word
    last = s.deposit_eth(user, 10**18).event("Deposit").args["depositId"]
    chain.advance_time(ESCAPE_DELAY_S)
    out["gas_freeze"] = s.freeze(deployer).gas_used
    out["gas_exit"] = s.exit(deployer, account, ETH, 10**18, state.proof(0)).gas_used
    out["gas_reclaim"] = s.reclaim_deposit(deployer, last).gas_used
    return out


def run(kind: str) -> dict[str, Any]:
    with local_chain(kind) as chain:
        k3 = measure_checkpoints(chain, 4, 3)
        k67 = measure_checkpoints(chain, 100, 67)
        flows = measure_flows(chain)
    result: dict[str, Any] = {
        "chain": kind,
        "gas_checkpoint_k3_n4": k3[0],
        "gas_checkpoint_k67_n100": k67[0],
        "gas_checkpoint_k3_n4_steady": k3[1],
        "gas_checkpoint_k67_n100_steady": k67[1],
        "gas_per_extra_signer": (k67[0] - k3[0]) // 64,
        **flows,
        "withdrawals_tree_leaves": TREE_LEAVES,
    }
    for key, ref in REFERENCE.items():
        result[f"reference_{key}"] = ref
        result[f"ratio_{key}"] = round(result[key] / ref, 3)
    for key, target in TARGETS.items():
        result[f"target_{key}"] = target
    return result


def _table(r: dict[str, Any]) -> str:
    rows = [
        ("checkpoint n=4 k=3 (first submit)", "gas_checkpoint_k3_n4"),
        ("checkpoint n=4 k=3 (steady)", "gas_checkpoint_k3_n4_steady"),
        ("checkpoint n=100 k=67 (first submit)", "gas_checkpoint_k67_n100"),
        ("checkpoint n=100 k=67 (steady)", "gas_checkpoint_k67_n100_steady"),
        ("  per extra signer", "gas_per_extra_signer"),
        ("claim ETH, depth 10, new bitmap word", "gas_claim"),
        ("claim ETH, depth 10, used word", "gas_claim_warm"),
        ("claim ERC-20, depth 10, used word", "gas_claim_token"),
        ("deposit ETH", "gas_deposit"),
        ("deposit ERC-20 (after approve)", "gas_deposit_token"),
        ("freeze", "gas_freeze"),
        ("exit ETH, depth 10", "gas_exit"),
        ("reclaim deposit", "gas_reclaim"),
    ]
    lines = [f"settlement gas on {r['chain']}", ""]
    lines.append(f"{'operation':<40} {'gas':>9} {'target':>9} {'reference':>10} {'ratio':>6}")
    for label, key in rows:
        target = TARGETS.get(key)
        ref = REFERENCE.get(key)
        lines.append(
            f"{label:<40} {r[key]:>9,} {f'{target:,}' if target else '':>9} "
            f"{f'{ref:,}' if ref else '':>10} {r.get(f'ratio_{key}', ''):>6}"
        )
    return "\n".join(lines)


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--anvil", action="store_true", help="measure on anvil instead of in-process py-evm"
    )
    args = parser.parse_args(argv)
    result = run("anvil" if args.anvil else "py-evm")
    print(json.dumps(result) if args.json else _table(result))
    failed = [k for k, t in TARGETS.items() if result[k] > t]
    if failed:
        print(f"over target: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], "python -m node.bench.settlement"))
