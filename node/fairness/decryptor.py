"""Which committed blocks can be decrypted: pending blocks -> envelopes -> valid shares.

The runtime (node/runtime/decryption.py) tells this state object which envelopes of a
committed height need opening (`expect`: entry index -> R, only envelopes whose signer
the account authorized, PROTOCOL.md §10.5) and hands it every decryption share a peer
sends (`add`). Each share is checked against the member's verification key (DLEQ) before
it counts; a forged share is refused and named, a duplicate costs nothing, and at most
one share per member and envelope is kept, so memory is bounded by the pending blocks'
envelopes times n. Shares for a height not expected yet (a peer committed first) wait in
a bounded buffer and are checked when their height is expected. A height is `ready`
when each of its envelopes has t valid shares; `take` hands them over and forgets the
height. Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import msgpack

from node.fairness.group import Point
from node.fairness.threshold import DecryptionShare, ThresholdPublicKey, verify_share

MAX_EARLY_SHARES: Final = 65_536  # shares kept for heights not expected yet (~8 MB)
MAX_EARLY_HEIGHTS: Final = 64  # distinct such heights


class Added(enum.Enum):
    ACCEPTED = "accepted"  # valid, and it counts
    DUPLICATE = "duplicate"  # that member's share for that envelope is known (or not needed)
    INVALID = "invalid"  # fails its proof, or names no envelope of the height: the sender's fault
    EARLY = "early"  # height not expected yet: kept until it is (bounded)
    DROPPED = "dropped"  # height not wanted (done, or too far ahead with the buffer full)


@dataclass(slots=True)
class _Pending:
    points: dict[int, Point]  # entry index -> R
    shares: dict[int, dict[int, DecryptionShare]] = field(default_factory=dict)

    def complete(self, threshold: int) -> bool:
        return all(len(self.shares.get(i, ())) >= threshold for i in self.points)


class Decryptor:
    def __init__(self, public: ThresholdPublicKey) -> None:
        self.public = public
        self.threshold = public.threshold
        self._pending: dict[int, _Pending] = {}
        self._early: OrderedDict[int, list[tuple[int, DecryptionShare]]] = OrderedDict()
        self._early_count = 0
        self._done_below = 1  # heights below this were taken: their shares are late
        self.invalid = 0  # shares refused for a bad proof (for metrics)

    def __len__(self) -> int:
        return len(self._pending)

    def expect(self, height: int, points: Mapping[int, Point]) -> list[tuple[int, int]]:
        """The envelopes of committed `height` that need opening (entry index -> R).
        Early shares for it are checked now; returns (entry index, member) of those that
        failed, so the caller can blame whoever sent them."""
        assert height >= self._done_below and height not in self._pending
        self._pending[height] = _Pending(dict(points))
        failed: list[tuple[int, int]] = []
        for entry, share in self._early.pop(height, []):
            self._early_count -= 1
            if self.add(height, entry, share) is Added.INVALID:
                failed.append((entry, share.index))
        return failed

    def add(self, height: int, entry: int, share: DecryptionShare) -> Added:
        pending = self._pending.get(height)
        if pending is None:
            return self._keep_early(height, entry, share)
        point = pending.points.get(entry)
        if point is None:
            return Added.INVALID
        have = pending.shares.setdefault(entry, {})
        if share.index in have or len(have) >= self.threshold:
            return Added.DUPLICATE
        if not verify_share(self.public, point, share):
            self.invalid += 1
            return Added.INVALID
        have[share.index] = share
        return Added.ACCEPTED

    def _keep_early(self, height: int, entry: int, share: DecryptionShare) -> Added:
        if height < self._done_below:
            return Added.DROPPED
        bucket = self._early.get(height)
        if bucket is None:
            if len(self._early) >= MAX_EARLY_HEIGHTS:
                return Added.DROPPED
            bucket = self._early[height] = []
        if self._early_count >= MAX_EARLY_SHARES:
            return Added.DROPPED
        bucket.append((entry, share))
        self._early_count += 1
        return Added.EARLY

    def ready(self, height: int) -> bool:
        pending = self._pending.get(height)
        return pending is not None and pending.complete(self.threshold)

    def missing(self, height: int) -> int:
        """Shares still needed at `height` (0 when ready or not pending)."""
        pending = self._pending.get(height)
        if pending is None:
            return 0
        return sum(max(0, self.threshold - len(pending.shares.get(i, ()))) for i in pending.points)

    def shares(self, height: int) -> dict[int, tuple[DecryptionShare, ...]]:
        """The valid shares held for `height` (entry index -> shares), without taking them."""
        pending = self._pending.get(height)
        if pending is None:
            return {}
        return {i: tuple(s.values()) for i, s in pending.shares.items()}

    def take(self, height: int) -> dict[int, tuple[DecryptionShare, ...]]:
        """A ready height's t valid shares per envelope; the height is forgotten, and
        so is every early share at or below it."""
        assert self.ready(height)
        pending = self._pending.pop(height)
        self._done_below = max(self._done_below, height + 1)
        for h in [h for h in self._early if h <= height]:
            self._early_count -= len(self._early.pop(h))
        return {i: tuple(pending.shares[i].values()) for i in pending.points}

    def forget_below(self, height: int) -> None:
        """Drop everything below `height` (a snapshot was installed above it)."""
        for h in [h for h in self._pending if h < height]:
            del self._pending[h]
        for h in [h for h in self._early if h < height]:
            self._early_count -= len(self._early.pop(h))
        self._done_below = max(self._done_below, height)


# ---------------------------------------------------------------------------------------
# The share record stored beside a committed block (PROTOCOL.md §10.8)


def encode_share_record(shares: Mapping[int, tuple[DecryptionShare, ...]]) -> bytes:
    """msgpack [[entry index, [share bytes, …]], …], by entry index: canonical."""
    body = [
        [i, [s.encode() for s in sorted(shares[i], key=lambda s: s.index)]] for i in sorted(shares)
    ]
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def decode_share_record(data: bytes) -> dict[int, tuple[DecryptionShare, ...]]:
    """A record `encode_share_record` wrote (our own store: checksummed, still checked
    for shape; the shares' proofs are the caller's to check or trust)."""
    raw = msgpack.unpackb(data, raw=False)
    if not isinstance(raw, list):
        raise ValueError("share record: not a list")
    out: dict[int, tuple[DecryptionShare, ...]] = {}
    for item in raw:
        entry, shares = item
        if type(entry) is not int or not isinstance(shares, list):
            raise ValueError("share record: malformed item")
        out[entry] = tuple(DecryptionShare.decode(s) for s in shares)
    return out
