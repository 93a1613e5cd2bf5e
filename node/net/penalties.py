"""Misbehaviour scores of authenticated peers, and bans with doubling back-off.

Every fault a member commits (a message the node's boundary refused, a protocol
violation that cost it its connection) adds `points` to its score; the score leaks away
at `decay_per_s`, in whole points, so ten faults in a burst are ten faults' worth
whatever microseconds passed between them. Reaching `ban_score` bans the member: the
transport cuts its connections and refuses new ones, both ways, for `ban_initial_s`,
doubling with each further ban up to `ban_max_s`. With the defaults (10 points, ban at
100, decay 1/s) one bad message now and then never bans an honest member (it would take
more than one every ten seconds, sustained), while a member that sends nothing but
garbage is banned after ten messages. A member that stays clean for twice `ban_max_s`
after a ban ends starts again from the first back-off.

The ledger holds one entry per committee member (the transport only scores members), so
it needs no bound of its own. Pure bookkeeping over a `now` in seconds (trio's clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

_MAX_DOUBLINGS: Final = 32


@dataclass(slots=True)
class _Record:
    score: int = 0
    scored_at_s: float = 0.0  # the score is exact as of then; later leaks are pending
    bans: int = 0  # bans in the current streak (sets the next back-off)
    banned_until_s: float = -math.inf


@dataclass(frozen=True, slots=True)
class Ban:
    duration_s: float
    streak: int  # 1 for the first ban of a streak, 2 for the next, …


class PenaltyLedger:
    __slots__ = (
        "_ban_initial_s",
        "_ban_max_s",
        "_ban_score",
        "_decay_per_s",
        "_points",
        "_records",
    )

    def __init__(
        self,
        *,
        points: int,
        ban_score: float,
        decay_per_s: float,
        ban_initial_s: float,
        ban_max_s: float,
    ) -> None:
        assert points > 0 and ban_score > 0 and decay_per_s >= 0
        assert 0 < ban_initial_s <= ban_max_s
        self._points = points
        self._ban_score = ban_score
        self._decay_per_s = decay_per_s
        self._ban_initial_s = ban_initial_s
        self._ban_max_s = ban_max_s
        self._records: dict[int, _Record] = {}

    def penalize(self, peer: int, now: float) -> Ban | None:
        """Count one fault; the ban it triggers, if any. Faults while banned add nothing:
        the peer is already out, and its score starts from zero when it returns."""
        record = self._records.setdefault(peer, _Record(scored_at_s=now))
        if now < record.banned_until_s:
            return None
        self._leak(record, now)
        record.score += self._points
        if record.score < self._ban_score:
            return None
        if now - record.banned_until_s > 2 * self._ban_max_s:
            record.bans = 0  # a long clean stretch forgives earlier bans
        duration_s = min(
            self._ban_max_s, self._ban_initial_s * (1 << min(record.bans, _MAX_DOUBLINGS))
        )
        record.bans += 1
        record.banned_until_s = now + duration_s
        record.score = 0
        return Ban(duration_s, record.bans)

    def banned_until(self, peer: int) -> float:
        """When the peer's ban ends (in the past, or -inf, if it is not banned)."""
        record = self._records.get(peer)
        return -math.inf if record is None else record.banned_until_s

    def is_banned(self, peer: int, now: float) -> bool:
        return now < self.banned_until(peer)

    def score(self, peer: int, now: float) -> int:
        record = self._records.get(peer)
        return 0 if record is None else max(0, record.score - self._leaked(record, now))

    def _leaked(self, record: _Record, now: float) -> int:
        return int((now - record.scored_at_s) * self._decay_per_s)

    def _leak(self, record: _Record, now: float) -> None:
        """Apply the whole points leaked since `scored_at_s`; the fraction of a point
        still leaking carries over, so the rate holds however often we look."""
        leaked = self._leaked(record, now)
        if leaked >= record.score:
            record.score, record.scored_at_s = 0, now
        elif leaked:
            record.score -= leaked
            record.scored_at_s += leaked / self._decay_per_s
