"""One report for a sweep of simulator seeds, whichever simulator ran them (the pure
cores in cluster.py, or whole runtimes in runtime_sim.py): a line per seed when asked or
when it fails, the failure's plan and the command that replays it, a summary, and with
`--json` one object (a seed's run, or the sweep's summary with its digest)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar


class SeedResult(Protocol):
    @property
    def seed(self) -> int: ...
    @property
    def ok(self) -> bool: ...
    @property
    def digest(self) -> str: ...
    @property
    def plan(self) -> str: ...
    @property
    def repro(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=SeedResult)


def report(
    args: argparse.Namespace,
    results: Iterable[R],
    describe: Callable[[R], str],
    failure: Callable[[R], str],
) -> int:
    """Print the sweep; 1 if any seed failed. `describe` is a seed's one-line summary,
    `failure` what went wrong (it may span lines)."""
    started = time.perf_counter()
    failures = 0
    runs = 0
    failed: list[dict[str, object]] = []
    sweep_digest = hashlib.sha256()
    for result in results:
        runs += 1
        sweep_digest.update(bytes.fromhex(result.digest))
        if args.json:
            if args.seeds == 1:
                print(json.dumps(result.to_json(), sort_keys=True))
            elif not result.ok:
                failed.append(result.to_json())
        elif args.verbose or not result.ok or args.seeds == 1:
            verdict = "ok  " if result.ok else "FAIL"
            print(f"{verdict} seed={result.seed} {describe(result)}", flush=True)
        if not result.ok:
            failures += 1
            print(f"FAIL seed={result.seed}: {failure(result)}", file=sys.stderr)
            print(f"  plan: {result.plan}", file=sys.stderr)
            print(f"  reproduce with: {result.repro}", file=sys.stderr, flush=True)
            if not args.keep_going:
                break
    elapsed = time.perf_counter() - started
    if not args.json:
        per_seed = elapsed / max(runs, 1)
        print(f"{runs} seeds, {failures} failed, {elapsed:.1f}s ({per_seed:.2f}s per seed)")
    elif args.seeds > 1:
        summary = {
            "first_seed": args.seed,
            "seeds": runs,
            "failed": failures,
            "failures": failed,
            "sweep_digest": sweep_digest.hexdigest(),
            "elapsed_s": round(elapsed, 1),
        }
        print(json.dumps(summary, sort_keys=True))
    return 1 if failures else 0
