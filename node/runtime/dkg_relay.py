"""DKG relay: a member's dealing and complaints reach the log even when it does not lead.

A member's DKG entries ride in its own proposals (node/fairness/keying.py), so a member
that leads no block during a phase (leader reputation skips one that was down; a short
phase is unlucky) would be left out of the key, or unable to complain against a dealer
that spoiled its share. So a member with pending DKG entries also sends them to its
peers every `interval_s`, in relayed form (`"dr"`, payload tag 0x09: a Schnorr proof
under its DKG key bound to the run and the message, PROTOCOL.md §10.9), and every
member keeps those that prove out in a small pool and puts them into its own proposals
until the run has them. Whoever commits the entry, replicas judge the proof again at
execution, deterministically; a copy committed twice is a duplicate, not an
equivocation.

Bounded: the pool holds each member's latest offer (at most MAX_RELAYED_DKG entries),
and is emptied when the run changes; a peer's offers are judged at most once per
`interval_s / 2` (each entry costs a proof check), later ones dropped unread; we propose
one entry in at most MAX_PROPOSALS blocks. An offer whose sender is not the peer itself,
or whose proven message is no well-formed dealing or complaint of the run (a member can
prove any bytes its own; carried, they would get our proposals refused), is penalized;
a proof that fails is only dropped (we may be a run behind the peer), and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from itertools import islice, zip_longest
from typing import Final

import trio

from node.fairness.dkg import decode_message
from node.fairness.errors import FairnessError
from node.fairness.keying import (
    MAX_RELAYED_PER_BLOCK,
    RELAY_HEADER_BYTES,
    DkgRun,
    Keying,
    MemberKeying,
    open_relayed,
)
from node.net.messages import MAX_RELAYED_DKG, RelayedDkg
from node.seam import PeerNetwork

INTERVAL_S: Final = 1.0
MAX_PROPOSALS: Final = 3  # our proposals carrying one relayed entry, at most


class DkgRelay:
    def __init__(
        self,
        *,
        me: int,
        network: PeerNetwork,
        keying: Callable[[], Keying | None],
        member_keying: Callable[[], MemberKeying | None],
        counters: dict[str, int],
        interval_s: float = INTERVAL_S,
    ) -> None:
        """`me`: our 0-based index; `keying`/`member_keying`: the executor's current
        replicated keying state and our side of it (both change with a snapshot)."""
        self._me = me
        self._network = network
        self._keying = keying
        self._member_keying = member_keying
        self._counters = counters
        self._interval_s = interval_s
        self._session: bytes | None = None
        self._pool: dict[int, tuple[bytes, ...]] = {}  # sender (1-based) -> its entries
        # How often we proposed each pooled entry: one the run ignores (late, a duplicate
        # of what it has) is not proposed again after MAX_PROPOSALS of our blocks.
        self._proposed: dict[bytes, int] = {}
        self._last_offer: dict[int, float] = {}  # peer -> when we last judged one
        for name in ("dkg_relay_sent", "dkg_relay_kept", "dkg_relay_dropped"):
            counters.setdefault(name, 0)

    async def run(self) -> None:
        """Send our pending DKG entries to every peer, every `interval_s`, until they
        commit (MemberKeying drops them then)."""
        while True:
            await trio.sleep(self._interval_s)
            member = self._member_keying()
            entries = [] if member is None else member.relayed_entries()[:MAX_RELAYED_DKG]
            if entries:
                self._network.broadcast(["dr", entries])
                self._counters["dkg_relay_sent"] += 1

    def offer(self, peer: int, message: RelayedDkg) -> None:
        """A peer's `"dr"` (dispatcher): keep the entries that prove out for this run."""
        now = trio.current_time()
        if now - self._last_offer.get(peer, -self._interval_s) < self._interval_s / 2:
            self._counters["dkg_relay_dropped"] += 1
            return
        self._last_offer[peer] = now
        run = self._run()
        if run is None or not message.entries:
            return
        kept = []
        for entry in message.entries:
            if int.from_bytes(entry[1:3], "big") != peer + 1:
                self._network.penalize(peer, "relayed DKG entry of another member")
                return
            opened = open_relayed(run.config, entry)
            if opened is None:
                self._counters["dkg_relay_dropped"] += 1
                continue
            try:  # its own, proven: it must be a well-formed message of this run
                decode_message(run.config, opened[1])
            except FairnessError as error:
                self._network.penalize(peer, f"relayed DKG entry: {error.code}")
                return
            kept.append(entry)
        if kept:
            self._pool[peer + 1] = tuple(kept)
            self._counters["dkg_relay_kept"] += len(kept)

    def for_block(self, exclude: Collection[bytes]) -> list[bytes]:
        """Relayed entries for our next proposal: those the run does not have yet and no
        uncommitted ancestor carries (`exclude`), at most MAX_RELAYED_PER_BLOCK, a fair
        turn for each member."""
        run = self._run()
        if run is None or not self._pool:
            return []
        have = {(sender, message) for sender, message in run.kept}
        queues = [
            [
                e
                for e in entries
                if e not in exclude
                and (sender, e[RELAY_HEADER_BYTES:]) not in have
                and self._proposed.get(e, 0) < MAX_PROPOSALS
            ]
            for sender, entries in sorted(self._pool.items())
            if sender != self._me + 1
        ]
        # One of each member's in turn (round robin), then the next of each.
        turns = (e for group in zip_longest(*queues) for e in group if e is not None)
        out = list(islice(turns, MAX_RELAYED_PER_BLOCK))
        for entry in out:
            self._proposed[entry] = self._proposed.get(entry, 0) + 1
        return out

    def _run(self) -> DkgRun | None:
        """The running DKG run, if any; the pool follows it (emptied when it changes)."""
        keying = self._keying()
        run = None if keying is None else keying.run
        session = None if run is None else run.config.session
        if session != self._session:
            self._session = session
            self._pool.clear()
            self._proposed.clear()
        return run
