"""`seqnet chaos`: run fault scenarios against a committee of real node processes.

    seqnet chaos --list
    seqnet chaos --scenario kill-leader --seed 7 --duration 20 [--json]
    seqnet chaos --all [--duration 20] [--seed 1] [--json]

Exit status 1 on any violation (a lost acknowledged intent, diverging logs, a duplicate,
an equivocation, no progress after healing); each failure names its seed. Measured
figures (throughput and latency per phase, capacity, restart times) are printed beside
the verdict, never judged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from node.chaos.harness import RunResult
from node.chaos.scenarios import CATALOGUE, run_scenario


def _print_row(r: RunResult) -> None:
    if r.skipped:
        print(f"{r.scenario:<20} SKIPPED  {r.skipped}")
        return
    verdict = "ok" if not r.violations else "VIOLATION"
    recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.2f}s"
    print(
        f"{r.scenario:<20} {verdict:<9} seed={r.seed} acked={r.intents_acknowledged} "
        f"lost={r.intents_lost} during-fault={r.acknowledged_during_fault} "
        f"recovery={recovery} heights={r.heights}"
    )
    for fault in r.faults:
        print(f"    fault: {fault}")
    for note in r.notes:
        print(f"    note: {note}")
    for name, value in r.figures.items():
        print(f"    figure: {name} = {json.dumps(value)}")
    for v in r.violations:
        print(f"    VIOLATION: {v}")
    if r.violations:
        print(f"    reproduce: seqnet chaos --scenario {r.scenario} --seed {r.seed}")
        print(f"    run folder: {r.folder}")


def main(argv: list[str], prog: str = "seqnet chaos") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--scenario", choices=sorted(CATALOGUE), help="one scenario")
    what.add_argument("--all", action="store_true", help="the whole catalogue")
    what.add_argument("--list", action="store_true", help="print the catalogue")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per run")
    parser.add_argument("--dir", type=Path, default=None, help="keep run folders here")
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    args = parser.parse_args(argv)
    if args.list:
        for s in CATALOGUE.values():
            print(f"{s.name:<20} {s.injects}" + (f"  [skipped: {s.skip}]" if s.skip else ""))
        return 0
    if not 5.0 <= args.duration <= 3600.0:
        parser.error("--duration must be in 5..3600 seconds")
    names = list(CATALOGUE) if args.all else [args.scenario]
    failed = False
    for name in names:
        result = trio.run(run_scenario, CATALOGUE[name], args.seed, args.duration, args.dir)
        failed |= bool(result.violations)
        if args.json:
            print(json.dumps(result.to_json()), flush=True)
        else:
            _print_row(result)
            sys.stdout.flush()
    return 1 if failed else 0
