"""The committee's clock, as this member sees it: its own wall clock corrected by the
offset the other members' signed timestamps show.

Block timestamps, intent nonces and round deadlines are all wall-clock milliseconds, so a
member whose clock is off by seconds silently stops taking part: 5 s slow, it refuses to
vote for every proposal "from the future"; days fast, it refuses every intent's nonce.
Instead it measures. Each proposal a leader signs carries that leader's clock reading
(`timestamp_ms`, unless the parent's timestamp forced it higher); the member keeps the
latest offset `timestamp - local now` per member and uses the median of those, once
2f + 1 members' samples are in (so f Byzantine leaders cannot move it past the honest
ones, and with fewer it trusts its own clock). Network delay makes an offset look a few
milliseconds smaller than it is; the skew alarm is in seconds.

A member whose offset passes `alarm_ms` says so: a warning in the log, the
`clock_offset_ms` gauge, and `/readyz` 503 `clock_skew` until it is fixed. It keeps
voting on the committee's time meanwhile, within `max_correction_ms`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


class CommitteeClock:
    def __init__(
        self,
        local_ms: Callable[[], int],
        *,
        me: int,
        quorum: int,
        alarm_ms: int,
        max_correction_ms: int,
    ) -> None:
        self._local_ms = local_ms
        self._me = me
        self._quorum = quorum  # 2f + 1: samples needed before correcting
        self.alarm_ms = alarm_ms
        self._max_correction_ms = max_correction_ms
        self._samples: dict[int, int] = {}  # member -> latest offset (ms)
        self.offset_ms = 0

    def now_ms(self) -> int:
        return self._local_ms() + self.offset_ms

    def local_ms(self) -> int:
        return self._local_ms()

    def observe(self, member: int, timestamp_ms: int, parent_timestamp_ms: int | None) -> None:
        """A verified proposal by `member`. A timestamp of exactly parent + 1 was forced
        by the parent (the leader's clock was behind it): no reading of that clock."""
        if member == self._me:
            return
        if parent_timestamp_ms is not None and timestamp_ms <= parent_timestamp_ms + 1:
            return
        self._samples[member] = timestamp_ms - self._local_ms()
        if len(self._samples) + 1 >= self._quorum:
            # Our own clock counts as one sample (offset 0): with 2f + 1 readings, the
            # median lies between honest ones whatever f of them say.
            median = int(statistics.median([0, *self._samples.values()]))
            bound = self._max_correction_ms
            self.offset_ms = max(-bound, min(bound, median))

    def skewed(self) -> bool:
        return abs(self.offset_ms) > self.alarm_ms
