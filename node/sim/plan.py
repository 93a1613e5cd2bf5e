"""One seed -> one fault plan: committee size, Byzantine keys, network and crash mix.

Everything random in a simulation comes from one `random.Random(seed)`: this plan is
drawn from it first, then the same generator drives every network and crash decision,
so a seed (with the same command-line options) replays the same run exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FaultPlan:
    seed: int
    n: int
    twins: tuple[int, ...]  # keys run by two instances that equivocate
    silent: tuple[int, ...]  # keys that never speak
    crash_gap_ms: int  # mean time between crashes of honest nodes; 0 = none
    down_ms: tuple[int, int]  # how long a crashed node stays down
    mid_list_crash: bool  # crashes may cut a node's action list in two
    drop_permille: int
    dup_permille: int
    delay_ms: tuple[int, int]  # usual delay, uniform
    tail_permille: int  # share of messages with a long delay
    tail_ms: int  # the long delay's upper bound
    partition_gap_ms: int  # mean time between partition changes; 0 = none
    skew_ms: int  # each node's clock is off by up to this much
    safety_ms: int  # length of the faulty phase before the network heals
    base_timeout_ms: int
    payload_delay_ms: int  # the runtime's batching delay before answering NeedPayload

    @classmethod
    def calm(cls, n: int, seed: int = 0, **changes: Any) -> FaultPlan:
        """No faults at all (short delays, no drops, crashes, partitions or skew), for
        scripted runs and benchmarks; `changes` set any field."""
        fields: dict[str, Any] = {
            "seed": seed,
            "n": n,
            "twins": (),
            "silent": (),
            "crash_gap_ms": 0,
            "down_ms": (0, 0),
            "mid_list_crash": False,
            "drop_permille": 0,
            "dup_permille": 0,
            "delay_ms": (1, 5),
            "tail_permille": 0,
            "tail_ms": 5,
            "partition_gap_ms": 0,
            "skew_ms": 0,
            "safety_ms": 0,
            "base_timeout_ms": 100,
            "payload_delay_ms": 1,
        }
        return cls(**(fields | changes))

    def describe(self) -> str:
        lo, hi = self.delay_ms
        parts = [
            f"n={self.n}",
            f"twins={list(self.twins)}",
            f"silent={list(self.silent)}",
            f"crash_gap={self.crash_gap_ms}ms",
            f"drop={self.drop_permille}‰",
            f"dup={self.dup_permille}‰",
            f"delay={lo}-{hi}ms(+{self.tail_permille}‰ to {self.tail_ms}ms)",
            f"partition_gap={self.partition_gap_ms}ms",
            f"skew={self.skew_ms}ms",
            f"safety_phase={self.safety_ms}ms",
        ]
        return " ".join(parts)


def make_plan(rng: random.Random, seed: int, n: int, safety_ms: int | None = None) -> FaultPlan:
    f = (n - 1) // 3
    keys = list(range(n))
    rng.shuffle(keys)
    byzantine = rng.randint(0, f)
    n_twins = rng.randint(0, byzantine)
    twins = tuple(sorted(keys[:n_twins]))
    silent = tuple(sorted(keys[n_twins:byzantine]))
    hi = rng.choice((2, 5, 10, 20, 40))
    lo = rng.randint(0, hi // 2)
    tail_ms = rng.choice((hi, 4 * hi, 10 * hi))
    base_timeout_ms = max(50, 5 * hi)
    return FaultPlan(
        seed=seed,
        n=n,
        twins=twins,
        silent=silent,
        crash_gap_ms=rng.choice((0, 0, 300, 1000)),
        down_ms=(50, rng.choice((100, 500, 1500))),
        mid_list_crash=rng.random() < 0.5,
        drop_permille=rng.choice((0, 0, 10, 50, 200)),
        dup_permille=rng.choice((0, 20, 100)),
        delay_ms=(lo, hi),
        tail_permille=rng.choice((0, 10, 100)),
        tail_ms=tail_ms,
        partition_gap_ms=rng.choice((0, 0, 200, 700)),
        skew_ms=rng.choice((0, 5, 50)),
        safety_ms=safety_ms if safety_ms is not None else rng.randint(500, 2000),
        base_timeout_ms=base_timeout_ms,
        payload_delay_ms=rng.choice((0, 1, 5)),
    )
