"""Which committed blocks can be decrypted: pending blocks -> envelopes -> valid shares.

The runtime (node/runtime/decryption.py) tells this state object which envelopes of a
committed height need opening (`expect`: entry index -> R, only envelopes whose signer
the account authorized, PROTOCOL.md §10.5) and hands it every decryption share a peer
sends. A share counts only once its DLEQ proof against the member's verification key
holds; a forged share is refused and named, a duplicate costs nothing, and at most one
share per member and envelope is kept, so memory is bounded by the pending blocks'
envelopes times n. Shares for a height not expected yet (a peer committed first) wait in
a bounded buffer, with their sender, and are checked when their height is expected. A
height is `ready` when each of its envelopes has t valid shares; `take` hands them over
and forgets the height. Pure: no I/O, no clock.

Checking is lazy and may happen elsewhere: `triage` says, without any curve arithmetic,
whether a share still matters (its envelope has fewer than t valid shares and none from
that member); only those get their proof checked (`verify_share`, which the runtime runs
in a worker thread), and `add_checked` takes the verdict. `add` does all three in line.
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


@dataclass(frozen=True, slots=True)
class Unchecked:
    """A share that still counts once its proof is checked, with who sent it."""

    sender: int
    height: int
    entry: int
    share: DecryptionShare


@dataclass(slots=True)
class _Pending:
    points: dict[int, Point]  # entry index -> R
    keys: dict[int, ThresholdPublicKey]  # entry index -> its key, when not `public`
    shares: dict[int, dict[int, DecryptionShare]] = field(default_factory=dict)

    def complete(self, threshold: int) -> bool:
        return all(len(self.shares.get(i, ())) >= threshold for i in self.points)


class Decryptor:
    def __init__(self, public: ThresholdPublicKey) -> None:
        self.public = public
        self.threshold = public.threshold
        self._pending: dict[int, _Pending] = {}
        self._early: OrderedDict[int, list[Unchecked]] = OrderedDict()
        self._early_count = 0
        self._done_below = 1  # heights below this were taken: their shares are late
        self.invalid = 0  # shares refused for a bad proof (for metrics)

    def __len__(self) -> int:
        return len(self._pending)

    def expecting(self, height: int) -> bool:
        return height in self._pending

    @property
    def done_below(self) -> int:
        """Heights below this were taken or forgotten."""
        return self._done_below

    def expect(
        self,
        height: int,
        points: Mapping[int, Point],
        keys: Mapping[int, ThresholdPublicKey] | None = None,
    ) -> list[Unchecked]:
        """The envelopes of committed `height` that need opening (entry index -> R), and
        the key of those sealed to another key than `public` (the previous one, in a
        re-key's grace; same committee, so the same threshold). Returns the early shares
        for it that still count, unchecked: the caller checks each (`verify_share`) and
        hands the verdict to `add_checked`, so a forged one is blamed on the peer that
        sent it."""
        assert height >= self._done_below and height not in self._pending
        self._pending[height] = _Pending(dict(points), dict(keys or {}))
        todo: list[Unchecked] = []
        for item in self._early.pop(height, []):
            self._early_count -= 1
            if self.triage(item.sender, height, item.entry, item.share) is None:
                todo.append(item)
        return todo

    def point(self, height: int, entry: int) -> Point | None:
        """R of a pending envelope (what its shares are checked against)."""
        pending = self._pending.get(height)
        return None if pending is None else pending.points.get(entry)

    def key(self, height: int, entry: int) -> ThresholdPublicKey:
        """The key a pending envelope's shares are checked against."""
        pending = self._pending.get(height)
        return self.public if pending is None else pending.keys.get(entry, self.public)

    def shares_of(self, height: int, entry: int) -> Mapping[int, DecryptionShare]:
        """The valid shares held for one envelope (member -> share)."""
        pending = self._pending.get(height)
        return {} if pending is None else pending.shares.get(entry, {})

    def needs(self, height: int, entry: int, member: int) -> bool:
        """Whether a share of `member` for that envelope would still count."""
        pending = self._pending.get(height)
        if pending is None or entry not in pending.points:
            return False
        have = pending.shares.get(entry, {})
        return member not in have and len(have) < self.threshold

    def triage(self, sender: int, height: int, entry: int, share: DecryptionShare) -> Added | None:
        """What becomes of a share without checking its proof: None when it still counts
        and must be checked; EARLY when kept for a height not expected yet."""
        pending = self._pending.get(height)
        if pending is None:
            return self._keep_early(Unchecked(sender, height, entry, share))
        if entry not in pending.points:
            return Added.INVALID
        if not self.needs(height, entry, share.index):
            return Added.DUPLICATE
        return None

    def add_checked(self, height: int, entry: int, share: DecryptionShare, valid: bool) -> Added:
        """A share whose proof was checked against `point(height, entry)`: `valid` is
        the verdict. A failed proof is INVALID even if the height is done by now."""
        if not valid:
            self.invalid += 1
            return Added.INVALID
        if not self.needs(height, entry, share.index):
            return Added.DUPLICATE if height in self._pending else Added.DROPPED
        self._pending[height].shares.setdefault(entry, {})[share.index] = share
        return Added.ACCEPTED

    def add_own(self, height: int, entry: int, share: DecryptionShare) -> Added:
        """This member's own share, made here from its key share (checked against its
        verification share at start-up): counted without a proof check."""
        if not self.needs(height, entry, share.index):
            return Added.DUPLICATE
        self._pending[height].shares.setdefault(entry, {})[share.index] = share
        return Added.ACCEPTED

    def add(self, height: int, entry: int, share: DecryptionShare, sender: int = 0) -> Added:
        """`triage`, the proof check and `add_checked` in line."""
        triaged = self.triage(sender, height, entry, share)
        if triaged is not None:
            return triaged
        point = self._pending[height].points[entry]
        public = self.key(height, entry)
        return self.add_checked(height, entry, share, verify_share(public, point, share))

    def _keep_early(self, item: Unchecked) -> Added:
        if item.height < self._done_below:
            return Added.DROPPED
        bucket = self._early.get(item.height)
        if bucket is None:
            if len(self._early) >= MAX_EARLY_HEIGHTS:
                return Added.DROPPED
            bucket = self._early[item.height] = []
        if self._early_count >= MAX_EARLY_SHARES:
            return Added.DROPPED
        bucket.append(item)
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
