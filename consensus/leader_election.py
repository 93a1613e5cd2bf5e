"""Who proposes in a round: a pure function of the round, behind an interface.

Every node must compute the same leader for a round without talking to anyone, so an
implementation may depend only on the round and on committed, agreed data. Round-robin
is the first one; a reputation scheme that skips leaders that recently failed (Diem's
`LeaderReputation`) would implement the same interface from committed blocks.
"""

from __future__ import annotations

from typing import Protocol


class LeaderElection(Protocol):
    def leader(self, round_: int) -> int: ...


class RoundRobin:
    __slots__ = ("_n",)

    def __init__(self, n: int) -> None:
        assert n >= 1
        self._n = n

    def leader(self, round_: int) -> int:
        return round_ % self._n
