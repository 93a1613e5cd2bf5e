"""Decryption shares between members: make ours, collect theirs, until a block opens.

Encrypted intents (docs/PROTOCOL.md §10) are ordered sealed. When a committed block with
envelopes reaches the head of execution (node/runtime/execution.py), the executor asks
`open` for the shares of the envelopes that §10.5 lets it open; this room makes this
member's share of each (one scalar multiplication and a DLEQ proof), sends them all to
every peer in ONE `"ds"` message, and waits until the pure `Decryptor`
(node/fairness/decryptor.py) holds t valid shares for each. Peers' shares arrive through
the dispatcher (`on_shares`): each is checked against its member's verification key
before it counts; a message with a forged share is refused and penalizes its sender
(a withheld share costs nothing: any t valid ones give the same key).

A member that misses shares (it was offline, or caught up by sync after the others moved
on) asks again every `retry_s` with `"dq"`; a peer answers from the share record it
stored beside that block (or, still waiting itself, with the valid shares it holds), so
no block waits on one particular member. What is stored is what opened the block, so a
restart replays it without asking anyone.

This room is node I/O: it keeps out of the consensus core, which orders ciphertexts and
never waits for a share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import trio

from node.fairness.committee import FairnessGenesis
from node.fairness.decryptor import Added, Decryptor, decode_share_record
from node.fairness.group import Point
from node.fairness.threshold import DecryptionShare, KeyShare, create_share
from node.net.messages import MAX_SHARE_ITEMS, DecryptionShares, PeerProtocolError
from node.runtime.logger import log
from node.seam import NodeStorage, PeerNetwork

RETRY_S = 1.0  # ask peers again for a block's shares this often while it waits


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
        self._forge = forge
        self._changed = trio.Event()
        for name in ("decryption_shares_sent", "decryption_shares_invalid", "decryption_waits"):
            counters.setdefault(name, 0)

    async def open(
        self, height: int, wanted: Mapping[int, Point]
    ) -> dict[int, tuple[DecryptionShare, ...]]:
        """t valid shares for each envelope of committed `height` in `wanted` (entry
        index -> R, envelopes §10.5 lets us open). Our own go to every peer first."""
        invalid = self.decryptor.expect(height, wanted)
        self._counters["decryption_shares_invalid"] += len(invalid)
        own = []
        if self._share is not None:
            for entry, point in wanted.items():
                share = create_share(self._share, self.public, point)
                self.decryptor.add(height, entry, share)
                own.append((entry, share))
        if own and not self._withhold:
            self._send(None, height, own)
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
        return self.decryptor.take(height)

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

    def on_shares(self, peer: int, message: DecryptionShares) -> None:
        """Shares a peer sent (its own, or ones it relays: each proves itself). A forged
        one makes the whole message the sender's fault, after the valid ones counted."""
        invalid = 0
        accepted = False
        for entry, raw in message.shares:
            added = self.decryptor.add(message.height, entry, DecryptionShare.decode(raw))
            if added is Added.INVALID:
                invalid += 1
            accepted = accepted or added is Added.ACCEPTED
        if accepted:
            self._changed.set()
        if invalid:
            self._counters["decryption_shares_invalid"] += invalid
            raise PeerProtocolError(f"{invalid} invalid decryption shares for {message.height}")

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
