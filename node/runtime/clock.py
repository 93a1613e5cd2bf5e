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

Two guards keep the measure honest over months. A leader's timestamp is its *corrected*
clock, so members that all corrected by what they measured would feed each other's
delivery delay back, a millisecond a block, until every one of them raised the alarm
(seen: -2 s after 1,800 blocks). So there is a dead band: a median within `alarm_ms / 2`
is no evidence that our clock is off, and the member uses its own clock as it is. Only a
member really off by more corrects, and the others, on their own clocks, never move
because of it. And a sample expires after `sample_ttl_ms`: a member that stopped
proposing (crashed, or cut off) no longer votes on our time.

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
        sample_ttl_ms: int = 60_000,
    ) -> None:
        self._local_ms = local_ms
        self._me = me
        self._quorum = quorum  # 2f + 1: samples needed before correcting
        self.alarm_ms = alarm_ms
        self._max_correction_ms = max_correction_ms
        self._dead_band_ms = alarm_ms // 2
        self._sample_ttl_ms = sample_ttl_ms
        # member -> (latest offset, our clock when it was taken), in ms
        self._samples: dict[int, tuple[int, int]] = {}
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
        local = self._local_ms()
        self._samples[member] = (timestamp_ms - local, local)
        expired = [m for m, (_, at) in self._samples.items() if local - at > self._sample_ttl_ms]
        for m in expired:
            del self._samples[m]
        if len(self._samples) + 1 < self._quorum:
            self.offset_ms = 0  # too few readings: our own clock
            return
        # Our own clock counts as one sample (offset 0): with 2f + 1 readings, the median
        # lies between honest ones whatever f of them say.
        median = int(statistics.median([0, *(o for o, _ in self._samples.values())]))
        if abs(median) <= self._dead_band_ms:
            self.offset_ms = 0
        else:
            bound = self._max_correction_ms
            self.offset_ms = max(-bound, min(bound, median))

    def skewed(self) -> bool:
        return abs(self.offset_ms) > self.alarm_ms
