"""`seqnet sim`: run the deterministic consensus simulator over one or many seeds.

    seqnet sim --seeds 300               # seeds 0..299, n alternating 4 and 7
    seqnet sim --seed 1234 --nodes 7     # one seed, as printed by a failure
    seqnet sim --seeds 100000 --jobs 2   # the soak
    seqnet sim --runtime --byzantine --seeds 200   # the real runtime (node/sim/runtime_sim.py)
Exit status 1 on any violation; each failure prints its seed and repro command.
"""

from __future__ import annotations

import argparse

from node.sim.cluster import Knobs
from node.sim.runner import SimResult, run_seeds
from node.sim.sweep import report


def main(argv: list[str], prog: str = "seqnet sim") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    parser.add_argument("--nodes", type=int, default=None, help="committee size (default 4/7)")
    parser.add_argument("--crypto", choices=("fast", "ed25519"), default="fast")
    parser.add_argument(
        "--election",
        choices=("reputation", "round-robin"),
        default="reputation",
        help="leader election (default: reputation from committed blocks)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for a sweep")
    parser.add_argument("--safety-ms", type=int, default=None, help="faulty phase length")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object: the run, or a sweep summary"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="a line per seed")
    parser.add_argument("--keep-going", action="store_true", help="do not stop at a failure")
    parser.add_argument("--unsafe-skip-vote-rules", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unsafe-one-chain-commit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unsafe-amnesia", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--runtime", action="store_true", help="run node.runtime.Node members, not bare cores"
    )
    parser.add_argument(
        "--byzantine", action="store_true", help="with --runtime: one member is a Byzantine actor"
    )
    parser.add_argument("--unsafe-trust-sync", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.nodes is not None and args.nodes < 1):
        parser.error("--seeds and --nodes must be positive")
    if args.runtime:
        from node.sim.runtime_sim import cli_run

        return cli_run(args)
    knobs = Knobs(
        args.crypto,
        args.unsafe_skip_vote_rules,
        args.unsafe_one_chain_commit,
        args.unsafe_amnesia,
        args.election,
    )
    results = run_seeds(args.seed, args.seeds, args.nodes, knobs, args.safety_ms, args.jobs)
    return report(args, results, _describe, lambda r: str(r.violation))


def _describe(result: SimResult) -> str:
    stats = result.stats
    return (
        f"n={result.n} height={stats.min_honest_height} rounds={stats.max_round} "
        f"crashes={stats.crashes} liveness_rounds={stats.liveness_rounds} "
        f"digest={result.digest[:16]} ({result.wall_s:.2f}s)"
    )
