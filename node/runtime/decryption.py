"""Decryption shares between members: make ours, collect theirs, until a block opens.

Encrypted intents (docs/PROTOCOL.md §10) are ordered sealed. This room makes this
member's share of each envelope a committed block may open (one scalar multiplication
and a DLEQ proof), sends them all to every peer in ONE `"ds"` message, and collects
peers' shares until the pure `Decryptor` (node/fairness/decryptor.py) holds t valid
shares for each; the executor (node/runtime/execution.py) waits in `open` for the block
at the head of execution.

When the shares go out: §10.5 decides which envelopes get a share on the state after
the previous block, but only for an envelope signed by an agent does that state matter
(an envelope its own account signed, sealed to this epoch, always gets one). So a block
whose envelopes are all signed by their accounts is `release`d at commit, while earlier
blocks still execute: its shares are made and exchanged in the pipeline, and the block
usually finds them in when it reaches the head. A block with an agent-signed envelope
waits for the head, as the rule requires.

Where the curve work runs: share creation and proof checks run in worker threads
(libsecp256k1 releases the GIL), never in the dispatcher or the consensus task, so a
block of thousands of envelopes does not hold up votes. Peers' shares arrive through the
dispatcher (`on_shares`), which only sorts them (`Decryptor.triage`, no arithmetic) into
a bounded queue; the checker verifies lazily, only shares that still count (t valid per
envelope: further ones are checked only when one fails), and a forged share is refused
and penalizes its sender (a withheld share costs nothing: any t valid ones give the same
key). Our own shares count without a check: they are made here from the key share that
start-up checked against our verification share.

A member that misses shares (it was offline, or caught up by sync after the others moved
on) asks again every `retry_s` with `"dq"`; a peer answers from the share record it
stored beside that block (or, still waiting itself, with the valid shares it holds), so
no block waits on one particular member. What is stored is what opened the block, so a
restart replays it without asking anyone.

This room is node I/O: it keeps out of the consensus core, which orders ciphertexts and
never waits for a share.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar

import trio

from node.fairness.committee import FairnessGenesis
from node.fairness.decryptor import Added, Decryptor, Unchecked, decode_share_record
from node.fairness.group import Point, base_mul, encode_point
from node.fairness.threshold import (
    DecryptionShare,
    KeyShare,
    ThresholdPublicKey,
    create_share,
    verify_share,
)
from node.net.messages import MAX_SHARE_ITEMS, DecryptionShares, PeerProtocolError
from node.runtime.logger import log
from node.seam import NodeStorage, PeerNetwork

T = TypeVar("T")

RETRY_S = 1.0  # ask peers again for a block's shares this often while it waits
# Peers' shares waiting for their proof check, at most; beyond, they are dropped (the
# block asks again with "dq"). 65,536 shares ≈ 10 MB with their objects.
MAX_UNCHECKED: Final = 65_536
# Shares checked per worker-thread call: large enough to pay for the hand-off, small
# enough that a block's first shares count before a whole backlog is checked.
CHECK_BATCH: Final = 1_024
# Below this many shares to make or check, the work runs in line: a hand-off to a worker
# thread (and back, through the GIL) costs more than a few scalar multiplications, and
# light load, one envelope per block, is where latency counts.
INLINE_MAX: Final = 8
# Committed blocks released early whose own shares are still to make (the executor's
# queue bound, MAX_QUEUED_BLOCKS, keeps it far below this).
MAX_RELEASES: Final = 4_096


async def off_loop(size: int, fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in a worker thread when `size` (shares or envelopes) is above
    INLINE_MAX, else in line."""
    if size <= INLINE_MAX:
        result = fn(*args)
        await trio.lowlevel.checkpoint()  # still a scheduling point, as the thread is
        return result
    return await trio.to_thread.run_sync(fn, *args)


def make_shares(
    share: KeyShare, public: ThresholdPublicKey, points: Sequence[Point]
) -> list[DecryptionShare]:
    """Our share of each R (pure; runs in a worker thread)."""
    return [create_share(share, public, point) for point in points]


def check_shares(
    items: Sequence[tuple[ThresholdPublicKey, Point, DecryptionShare]],
) -> list[bool]:
    """The proof verdict of each (key, R, share) (pure; runs in a worker thread)."""
    return [verify_share(public, point, share) for public, point, share in items]


class Decryption:
    def __init__(
        self,
        *,
        fairness: FairnessGenesis,
        share: KeyShare | None,
        network: PeerNetwork,
        storage: NodeStorage,
        executed_height: Callable[[], int],
        counters: dict[str, int],
        retry_s: float = RETRY_S,
        withhold: bool = False,
        forge: bool = False,
    ) -> None:
        """`withhold` and `forge`: test-only faults (dev chain): send no shares, or
        send shares with broken proofs."""
        self.fairness = fairness
        self.public = fairness.key
        self.decryptor = Decryptor(fairness.key)
        self._share = share
        self._network = network
        self._storage = storage
        self._executed_height = executed_height
        self._counters = counters
        self._retry_s = retry_s
        self._withhold = withhold
        # Other epochs' keys this room also opens, with our share of each: the previous
        # key, which opens envelopes during a re-key's grace (PROTOCOL.md §10.9).
        self._other_keys: dict[int, tuple[ThresholdPublicKey, KeyShare | None]] = {}
        self._forge = forge
        self._changed = trio.Event()
        # Peers' shares to check, oldest first; and the heights whose own shares are
        # made or being made (set when done), so no share is made twice.
        self._unchecked: deque[Unchecked] = deque()
        self._unchecked_ready = trio.Event()
        self._releases: deque[tuple[int, dict[int, Point]]] = deque()
        self._releases_ready = trio.Event()
        self._own: dict[int, trio.Event] = {}
        for name in (
            "decryption_shares_sent",
            "decryption_shares_invalid",
            "decryption_shares_checked",
            "decryption_shares_unchecked_dropped",
            "decryption_waits",
            "decryption_released_at_commit",
        ):
            counters.setdefault(name, 0)

    def use_share(self, share: KeyShare) -> None:
        """Our share, recovered after this room was built without one (share recovery):
        blocks from now on get our shares too."""
        expected = self.public.verification_shares[share.index - 1]
        assert encode_point(base_mul(share.secret)) == expected, "not our share of this key"
        self._share = share

    def add_key(self, epoch: int, public: ThresholdPublicKey, share: KeyShare | None) -> None:
        """Also open envelopes sealed to `epoch`'s key (the previous one, during a
        re-key's grace), with our share of it (None: we make none for it)."""
        assert epoch != self.fairness.epoch and public.threshold == self.public.threshold
        self._other_keys[epoch] = (public, share)

    def _key_of(self, epoch: int | None) -> tuple[ThresholdPublicKey, KeyShare | None]:
        if epoch is None or epoch == self.fairness.epoch:
            return self.public, self._share
        assert epoch in self._other_keys, f"no key of epoch {epoch} in this room"
        return self._other_keys[epoch]

    def _own_share_for(self, public: ThresholdPublicKey) -> KeyShare | None:
        if public is self.public:
            return self._share
        for key, share in self._other_keys.values():
            if key is public:
                return share
        return None

    async def run(self) -> None:
        """The checker and the early releaser (the executor runs this beside its queue)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._check_loop)
            nursery.start_soon(self._release_loop)

    # ------------------------------------------------------------ our shares

    def release(self, height: int, wanted: Mapping[int, Point]) -> None:
        """Committed `height` opens exactly `wanted` whatever the state before it (every
        envelope signed by its account): expect its shares and make ours now."""
        if not wanted or len(self._releases) >= MAX_RELEASES:
            return  # nothing to open, or the block makes its shares at the head
        if not self.decryptor.expecting(height):
            self._queue_unchecked(self.decryptor.expect(height, wanted))
        self._releases.append((height, dict(wanted)))
        self._releases_ready.set()
        self._counters["decryption_released_at_commit"] += 1

    async def _release_loop(self) -> None:
        while True:
            while not self._releases:
                self._releases_ready = trio.Event()
                await self._releases_ready.wait()
            height, wanted = self._releases.popleft()
            if self.decryptor.expecting(height):
                await self._own_shares(height, wanted)

    async def _own_shares(
        self, height: int, wanted: Mapping[int, Point], epochs: Mapping[int, int] | None = None
    ) -> None:
        """Make (in a worker thread), count and send our shares for `height`, once;
        `epochs`: entry -> the epoch it is sealed to (None: all to this room's)."""
        done = self._own.get(height)
        if done is not None:
            await done.wait()
            return
        done = self._own[height] = trio.Event()
        try:
            made: list[tuple[int, DecryptionShare]] = []
            for epoch, entries in _by_epoch(wanted, epochs).items():
                public, key_share = self._key_of(epoch)
                if key_share is None:
                    continue
                points = [wanted[i] for i in entries]
                shares = await off_loop(len(points), make_shares, key_share, public, points)
                made += zip(entries, shares, strict=True)
            if not made or not self.decryptor.expecting(height):
                return  # no share of ours, or taken from peers' shares meanwhile
            for entry, share in made:
                self.decryptor.add_own(height, entry, share)
            self._changed.set()
            self._unchecked_ready.set()  # shares set aside for ours may be moot now
            if not self._withhold:
                self._send(None, height, made)
        finally:
            done.set()

    async def open(
        self, height: int, wanted: Mapping[int, Point], epochs: Mapping[int, int] | None = None
    ) -> dict[int, tuple[DecryptionShare, ...]]:
        """t valid shares for each envelope of committed `height` in `wanted` (entry
        index -> R, envelopes §10.5 lets us open; `epochs`: entry -> the epoch it is
        sealed to, when not all this room's key's). Our own go to every peer first
        (unless `release` sent them already)."""
        if not self.decryptor.expecting(height):
            keys = {
                entry: self._key_of(epoch)[0]
                for entry, epoch in (epochs or {}).items()
                if epoch != self.fairness.epoch
            }
            self._queue_unchecked(self.decryptor.expect(height, wanted, keys))
        await self._own_shares(height, wanted, epochs)
        waits = 0
        while not self.decryptor.ready(height):
            self._changed = trio.Event()
            with trio.move_on_after(self._retry_s):
                await self._changed.wait()
                continue
            waits += 1
            self._counters["decryption_waits"] += 1
            if waits == 1 or waits % 10 == 0:
                log.info(
                    "waiting for decryption shares",
                    height=height,
                    missing=self.decryptor.missing(height),
                )
            self._network.broadcast(["dq", height])
        taken = self.decryptor.take(height)
        for h in [h for h in self._own if h < self.decryptor.done_below]:
            del self._own[h]
        return taken

    def _send(
        self, peer: int | None, height: int, shares: list[tuple[int, DecryptionShare]]
    ) -> None:
        """To `peer` (None: everyone), in as few messages as the size bound allows (one
        for any block of up to MAX_SHARE_ITEMS envelopes)."""
        items = [[entry, self._wire(share)] for entry, share in shares]
        for start in range(0, len(items), MAX_SHARE_ITEMS):
            message = ["ds", height, items[start : start + MAX_SHARE_ITEMS]]
            if peer is None:
                self._network.broadcast(message)
            else:
                self._network.send(peer, message)
        self._counters["decryption_shares_sent"] += len(items)

    def _wire(self, share: DecryptionShare) -> bytes:
        data = share.encode()
        if self._forge:  # test-only: a share whose proof cannot verify
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    # ------------------------------------------------------------ peers' shares

    def on_shares(self, peer: int, message: DecryptionShares) -> None:
        """Shares a peer sent (its own, or ones it relays: each proves itself), sorted
        without arithmetic: those that still count queue for the checker, which blames
        the sender of a forged one. A share for an envelope the height does not have
        makes the message the sender's fault at once."""
        invalid = 0
        for entry, raw in message.shares:
            share = DecryptionShare.decode(raw)
            triaged = self.decryptor.triage(peer, message.height, entry, share)
            if triaged is None:
                self._queue_unchecked([Unchecked(peer, message.height, entry, share)])
            elif triaged is Added.INVALID:
                invalid += 1
        if invalid:
            self._counters["decryption_shares_invalid"] += invalid
            height = message.height
            raise PeerProtocolError(f"{invalid} decryption shares for no envelope of {height}")

    def _queue_unchecked(self, items: list[Unchecked]) -> None:
        room = MAX_UNCHECKED - len(self._unchecked)
        if len(items) > room:
            self._counters["decryption_shares_unchecked_dropped"] += len(items) - max(room, 0)
            items = items[: max(room, 0)]
        if items:
            self._unchecked.extend(items)
            self._unchecked_ready.set()

    def _next_batch(self) -> list[tuple[Unchecked, Point]]:
        """Up to CHECK_BATCH queued shares that still count, no more per envelope than
        it lacks besides our own share (lazy: a further share is checked only if one of
        these fails); those set aside go back to the front, and are dropped next time if
        no longer needed."""
        batch: list[tuple[Unchecked, Point]] = []
        lacking: dict[tuple[int, int], int] = {}
        aside: list[Unchecked] = []
        decryptor = self.decryptor
        while self._unchecked and len(batch) < CHECK_BATCH:
            item = self._unchecked.popleft()
            point = decryptor.point(item.height, item.entry)
            if point is None or not decryptor.needs(item.height, item.entry, item.share.index):
                continue
            key = (item.height, item.entry)
            if key not in lacking:
                have = decryptor.shares_of(*key)
                # Our own share counts for every expected height, made or being made.
                mine = self._own_share_for(decryptor.key(*key))
                own = mine is not None and mine.index not in have
                lacking[key] = decryptor.threshold - len(have) - own
            if lacking[key] <= 0:
                aside.append(item)
                continue
            lacking[key] -= 1
            batch.append((item, point))
        self._unchecked.extendleft(reversed(aside))
        return batch

    async def _check_loop(self) -> None:
        while True:
            while not self._unchecked:
                self._unchecked_ready = trio.Event()
                await self._unchecked_ready.wait()
            batch = self._next_batch()
            if not batch:
                # All set aside until our own share lands (or new shares come, or a
                # height is taken): wait for that rather than spin.
                self._unchecked_ready = trio.Event()
                await self._unchecked_ready.wait()
                continue
            items = [
                (self.decryptor.key(item.height, item.entry), point, item.share)
                for item, point in batch
            ]
            verdicts = await off_loop(len(items), check_shares, items)
            self._counters["decryption_shares_checked"] += len(batch)
            forged: Counter[int] = Counter()
            accepted = False
            for (item, _), valid in zip(batch, verdicts, strict=True):
                added = self.decryptor.add_checked(item.height, item.entry, item.share, valid)
                if added is Added.INVALID:
                    forged[item.sender] += 1
                accepted = accepted or added is Added.ACCEPTED
            if accepted:
                self._changed.set()
            for sender, count in forged.items():
                self._counters["decryption_shares_invalid"] += count
                self._network.penalize(sender, f"{count} forged decryption shares")
                log.warning("forged decryption shares", peer=sender, count=count)

    def on_request(self, peer: int, height: int) -> None:
        """A peer misses shares of `height`: the record we stored, or the valid shares
        we hold while we wait ourselves. Nothing for a height we know nothing of."""
        if self._withhold:
            return
        if height <= self._executed_height():
            record = self._storage.load_shares(height)
            if record is None:
                return
            held = decode_share_record(record)
        else:
            held = self.decryptor.shares(height)
        shares = [(entry, s) for entry in sorted(held) for s in held[entry]]
        if shares:
            self._send(peer, height, shares)


def _by_epoch(
    wanted: Mapping[int, Point], epochs: Mapping[int, int] | None
) -> dict[int | None, list[int]]:
    """The entries of `wanted` grouped by the epoch they are sealed to (None: the room's)."""
    groups: dict[int | None, list[int]] = {}
    for entry in wanted:
        groups.setdefault(None if epochs is None else epochs.get(entry), []).append(entry)
    return groups
