"""The pacemaker: which round we are in, and when to give up on it (Aptos `round_state.rs`).

Rounds advance only on a certificate: a QC or a TC of round r moves us to r + 1, from
wherever we were (a node that sees a higher certificate jumps to it). Hence no node is
ever in a round that no quorum made possible, and a partitioned minority cannot race
ahead.

Each round has a local timeout. Its length grows by 3/2 per round without a commit,
from `base_timeout_ms`, up to `max_backoff_exponent` steps: in the steady state the
commit trails the current round by 2, so the backoff starts with the first round that
fails. Integers only: each step multiplies by 3 and floor-divides by 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.types import TimeoutCert

STEADY_STATE_COMMIT_LAG = 2


@dataclass(frozen=True, slots=True)
class NewRound:
    round: int
    deadline_ms: int


class Pacemaker:
    def __init__(self, base_timeout_ms: int, max_backoff_exponent: int, start_round: int) -> None:
        assert base_timeout_ms > 0 and max_backoff_exponent >= 0 and start_round >= 1
        self._base_timeout_ms = base_timeout_ms
        self._max_exponent = max_backoff_exponent
        self.round = start_round
        self.timed_out = False  # we signed a timeout in the current round
        self.high_tc: TimeoutCert | None = None

    def timeout_ms(self, round_: int, committed_round: int) -> int:
        lag = round_ - committed_round - STEADY_STATE_COMMIT_LAG - 1
        timeout_ms = self._base_timeout_ms
        for _ in range(min(max(0, lag), self._max_exponent)):
            timeout_ms = timeout_ms * 3 // 2
        return timeout_ms

    def enter(self, round_: int, now_ms: int, committed_round: int) -> NewRound | None:
        """Move to `round_` if it is ahead of us (called with cert round + 1)."""
        if round_ <= self.round:
            return None
        self.round = round_
        self.timed_out = False
        return NewRound(round_, now_ms + self.timeout_ms(round_, committed_round))

    def restart_timer(self, now_ms: int, committed_round: int) -> NewRound:
        """The current round's deadline again (at start, and after a local timeout)."""
        return NewRound(self.round, now_ms + self.timeout_ms(self.round, committed_round))

    def observe_tc(self, tc: TimeoutCert) -> bool:
        """Remember the highest TC (a leader entering by timeout carries it). True if new."""
        if self.high_tc is None or tc.round > self.high_tc.round:
            self.high_tc = tc
            return True
        return False
