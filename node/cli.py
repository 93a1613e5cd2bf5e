"""The `seqnet` command line: a thin dispatcher.

Each command lives in its own module with a `main(argv) -> int`; this file only maps
command words to modules, so that a command imports only what it needs (web3 alone
takes a second to import) and so that commands can be added without touching others.
"""

from __future__ import annotations

import importlib
import os
import sys

# Fast keccak for eth-hash (web3, eth-account); must be set before eth_hash is imported.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

# (command words) -> (module, one-line help). Longest match wins.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("node.demo", "run the matching engine on a sample stream; print book and fills"),
    ("replay",): ("node.replay", "re-execute a JSONL block log; print events and state root"),
    ("node",): ("node.node_cli", "run a committee member (`node run --config`), `node status`"),
    ("localnet",): ("node.localnet", "local committee on 127.0.0.1: `up`, `status`, `down`"),
    ("sim",): ("node.sim.cli", "deterministic consensus cluster simulator"),
    ("chaos",): ("node.chaos.cli", "fault scenarios on real node processes (--scenario/--all)"),
    ("bench", "matching"): ("node.bench.matching", "matching engine throughput vs pyorderbook"),
    ("bench", "consensus"): ("node.bench.consensus", "consensus protocol cost vs Ed25519 verify"),
    ("bench", "api"): ("node.bench.api", "client API intake rate and latency vs signature checks"),
    ("bench", "transport"): (
        "node.bench.transport",
        "peer transport frames/s, batched vs 1 per send",
    ),
    ("contracts", "build"): (
        "contracts.artifacts",
        "recompile contracts/src into contracts/build (--check: verify only)",
    ),
    ("bench", "settlement"): (
        "node.bench.settlement",
        "settlement contract gas: checkpoints, claim, deposit, exit",
    ),
    ("bench", "cluster"): ("node.bench.cluster", "local committee of processes under signed load"),
    ("bench", "catchup"): ("node.bench.catchup", "log catch-up of a member: blocks/s, entries/s"),
    ("bench", "fairness"): ("node.bench.fairness", "threshold encryption ops/s vs Ed25519 verify"),
    ("trade",): ("node.trade_cli", "trade with the SDK: place, cancel, orders, balances, book, …"),
    ("keys", "generate"): ("node.keys", "generate a node's Ed25519 identity and settlement keys"),
    ("committee", "init"): ("node.genesis", "create keys, genesis.toml and node configs"),
    ("admin",): ("node.admin_cli", "`admin list-series sign|submit`: list an option series"),
}


def _usage() -> str:
    lines = ["usage: seqnet COMMAND [ARGS...]", "", "commands:"]
    for words, (_, help_text) in sorted(COMMANDS.items()):
        lines.append(f"  {' '.join(words):<20} {help_text}")
    lines.append("")
    lines.append("Run `seqnet COMMAND --help` for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for length in (2, 1):
        words = tuple(args[:length])
        if words in COMMANDS:
            module = importlib.import_module(COMMANDS[words][0])
            prog = "seqnet " + " ".join(words)
            result: int = module.main(args[length:], prog=prog)
            return result
    print(_usage(), file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout)
    return 0 if args[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())
