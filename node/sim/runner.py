"""Run one seed, or a range of seeds, and report each verdict with its repro command."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

from node.sim.cluster import Knobs, SimStats, Simulation, Violation
from node.sim.plan import make_plan

DEFAULT_SIZES = (4, 7)


@dataclass(frozen=True, slots=True)
class SimResult:
    seed: int
    n: int
    ok: bool
    violation: str | None
    digest: str
    plan: str
    stats: SimStats
    wall_s: float
    repro: str

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["stats"] = asdict(self.stats)
        return out


def size_for(seed: int, nodes: int | None) -> int:
    """`--nodes` if given, else alternate the default sizes by seed."""
    return nodes if nodes is not None else DEFAULT_SIZES[seed % len(DEFAULT_SIZES)]


def repro_command(seed: int, n: int, knobs: Knobs, safety_ms: int | None) -> str:
    parts = ["seqnet sim", f"--seed {seed}", f"--nodes {n}"]
    if knobs.crypto != "fast":
        parts.append(f"--crypto {knobs.crypto}")
    if knobs.election != "reputation":
        parts.append(f"--election {knobs.election}")
    if safety_ms is not None:
        parts.append(f"--safety-ms {safety_ms}")
    if knobs.unsafe_skip_vote_rules:
        parts.append("--unsafe-skip-vote-rules")
    if knobs.unsafe_one_chain_commit:
        parts.append("--unsafe-one-chain-commit")
    if knobs.unsafe_amnesia:
        parts.append("--unsafe-amnesia")
    return " ".join(parts)


def run_seed(
    seed: int, nodes: int | None = None, knobs: Knobs | None = None, safety_ms: int | None = None
) -> SimResult:
    knobs = knobs or Knobs()
    n = size_for(seed, nodes)
    rng = random.Random(seed)
    plan = make_plan(rng, seed, n, safety_ms)
    sim = Simulation(plan, rng, knobs)
    started = time.perf_counter()
    violation = None
    try:
        sim.run()
    except Violation as exc:
        violation = str(exc)
    return SimResult(
        seed=seed,
        n=n,
        ok=violation is None,
        violation=violation,
        digest=sim.digest(),
        plan=plan.describe(),
        stats=sim.stats,
        wall_s=time.perf_counter() - started,
        repro=repro_command(seed, n, knobs, safety_ms),
    )


def run_seeds(
    first: int,
    count: int,
    nodes: int | None = None,
    knobs: Knobs | None = None,
    safety_ms: int | None = None,
    jobs: int = 1,
) -> Iterator[SimResult]:
    """Results in seed order; with jobs > 1 the seeds run in worker processes (each run
    depends on its seed alone, so the results are the same)."""
    seeds = range(first, first + count)
    if jobs <= 1:
        for seed in seeds:
            yield run_seed(seed, nodes, knobs, safety_ms)
        return
    one = functools.partial(run_seed, nodes=nodes, knobs=knobs, safety_ms=safety_ms)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        # Small enough chunks that the workers end together (50 seeds, 2 jobs: 6 each).
        yield from pool.map(one, seeds, chunksize=max(1, min(16, count // (jobs * 4))))
